"""Trivial baselines: what a policy that does nothing clever scores on each game, with n and a 95% interval.

A success rate means little alone: on `matrix-v0`, always answering "2" wins about half of the episodes. Every
figure should therefore stand next to three reference policies, each played through the public game API only
(`make(id, parser="raw", **options)`, `reset(seed)`, `step(answer)`, `legal_actions()`, `info["success"]`):

- "random": a uniformly random legal action (`legal_actions()`); where the answer is open-ended (a Spy
  description) a fixed generic sentence that never names the player's word.
- "constant": the best single answer, given every turn. Candidates are the legal actions of the first turn, or
  for math the most common gold answers on separate calibration seeds; the best candidate is reported. Spy's
  constant policy gives the generic description and always votes "I vote for Player k".
- "perfect": the best possible player where one exists — the Matrix label (`info["labels"]`), TicTacToe minimax,
  the gold math answer. For Spy there is none; "oracle" votes for the spy (or, as the spy, for a civilian).

Matrix values are exact (averaged over the game's finite episode distribution) when its options are ones this
module knows; everything else is simulated over episode seeds `seed, seed+1, …` with a Wilson interval. Episodes
whose opponent failed are excluded, as in evaluation.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from gift.evaluation.stats import Estimate, binomial_ci
from gift.games.registry import make
from gift.games.registry import spec as game_spec

POLICIES = ("random", "constant", "perfect")
MATH_CANDIDATES = 3
"""Most common gold answers (on calibration seeds) tried as the constant math answer."""
_CALIBRATION_OFFSET = 1_000_003
"""Calibration seeds start this far from the evaluation seeds, so the chosen constant is not fitted to them."""
_UNSIMULABLE_OPPONENTS = ("self", "openai", "model")
_MATRIX_EXACT_OPTIONS = frozenset({"label_rule", "games", "negate", "offsets", "role", "parser", "max_turns"})

Policy = Callable[[str, Mapping[str, Any], "list[str] | None", random.Random], str]
"""(observation, info, legal actions or None, rng) -> the answer text."""


@dataclass(frozen=True)
class BaselineRow:
    """One trivial policy's success on one game."""

    game: str
    policy: str
    """"random", "constant", "perfect" or "oracle"."""
    estimate: Estimate
    """Success rate; an exact value has low == high == value and n = the number of equally likely episode types."""
    method: str
    """"exact" or "simulated"."""
    answer: str | None = None
    """The constant policy's answer."""
    excluded: int = 0
    """Simulated episodes left out because an opponent failed."""

    @property
    def success(self) -> float:
        return self.estimate.value

    @property
    def n(self) -> int:
        return self.estimate.n

    @property
    def label(self) -> str:
        """A short human name, e.g. "best constant '2'"."""
        if self.policy == "constant":
            return f"best constant {self.answer!r}" if self.answer is not None else "best constant"
        return {"random": "random legal move", "perfect": "perfect player"}.get(self.policy, self.policy)

    def format(self) -> str:
        if self.method == "exact":
            return f"{100 * self.estimate.value:.1f} (exact)"
        return self.estimate.format()

    def as_dict(self) -> dict[str, Any]:
        return {
            "game": self.game, "policy": self.policy, "label": self.label, "answer": self.answer,
            "method": self.method, "excluded": self.excluded, **self.estimate.as_dict(),
        }  # fmt: skip


# ---------------------------------------------------------------------------------------------- playing
def play_policy(
    game_id: str, options: Mapping[str, Any] | None, policy: Policy, seeds: Iterable[int]
) -> list[bool | None]:
    """Play one episode per seed with `policy`; per episode its success, or None when an opponent failed."""
    game = make(game_id, **{**dict(options or {}), "parser": "raw"})
    results: list[bool | None] = []
    for seed in seeds:
        rng = random.Random(f"baseline:{game_id}:{seed}")
        obs, info = game.reset(seed=int(seed))
        done = False
        while not done:
            obs, _, terminated, truncated, info = game.step(policy(obs, info, game.legal_actions(), rng))
            done = terminated or truncated
        results.append(None if info.get("opponent_failed") else bool(info.get("success", False)))
    return results


def _rate(results: Sequence[bool | None]) -> tuple[Estimate, int]:
    scored = [r for r in results if r is not None]
    return binomial_ci(sum(scored), len(scored)), len(results) - len(scored)


def _simulated(game_id: str, options: Any, name: str, policy: Policy, seeds: Sequence[int],
               answer: str | None = None) -> BaselineRow:  # fmt: skip
    estimate, excluded = _rate(play_policy(game_id, options, policy, seeds))
    return BaselineRow(game_id, name, estimate, "simulated", answer, excluded)


# ---------------------------------------------------------------------------------------------- policies
def _game_class(info_or_id: Mapping[str, Any] | str) -> Any:
    game_id = info_or_id if isinstance(info_or_id, str) else str(info_or_id.get("game"))
    return game_spec(game_id).load()


def generic_description(info: Mapping[str, Any]) -> str:
    """The game's own trivial answer for a turn without listed answers (Spy: a description naming no word)."""
    return _game_class(info).open_answer(dict(info)) or ""


def random_policy(obs: str, info: Mapping[str, Any], legal: list[str] | None, rng: random.Random) -> str:
    """A uniformly random legal action; the game's trivial answer where answers are open-ended."""
    return rng.choice(legal) if legal else generic_description(info)


def constant_policy(answer: str) -> Policy:
    """Always `answer` (turns without listed answers still get the game's trivial answer)."""

    def policy(obs: str, info: Mapping[str, Any], legal: list[str] | None, rng: random.Random) -> str:
        if not legal and _game_class(info).open_answer(dict(info)) is not None:
            return generic_description(info)
        return answer

    return policy


def perfect_policy(obs: str, info: Mapping[str, Any], legal: list[str] | None, rng: random.Random) -> str:
    """The game's perfect (or oracle) player, `TextGame.oracle_answer`."""
    answer = _game_class(info).oracle_answer(dict(info), legal, rng)
    assert answer is not None, f"{info.get('game')} has no perfect player"
    return answer


# ---------------------------------------------------------------------------------------------- constants
def constant_candidates(game_id: str, options: Mapping[str, Any] | None, seeds: Sequence[int]) -> list[str]:
    """Answers worth trying as a constant: first-turn legal actions, else the commonest gold answers."""
    fixed = game_spec(game_id).load().constant_answers()
    if fixed is not None:
        return list(fixed)
    game = make(game_id, **{**dict(options or {}), "parser": "raw"})
    legal: dict[str, None] = {}
    golds: Counter[str] = Counter()
    for seed in seeds:
        _, info = game.reset(seed=_CALIBRATION_OFFSET + int(seed))
        legal.update(dict.fromkeys(game.legal_actions() or []))
        if info.get("gold_answer") is not None:
            golds[str(info["gold_answer"])] += 1
    if legal:
        return list(legal)
    return [answer for answer, _ in golds.most_common(MATH_CANDIDATES)]


def constant_rows(
    game_id: str, options: Mapping[str, Any] | None = None, episodes: int = 1000, seed: int = 1
) -> list[BaselineRow]:
    """Every candidate constant answer's success, best first."""
    exact = exact_matrix_rows(options) if game_id == "matrix-v0" else None
    if exact is not None:
        rows = [r for r in exact if r.policy == "constant"]
    else:
        seeds = range(seed, seed + episodes)
        calibration = range(seed, seed + min(episodes, 500))
        rows = [_simulated(game_id, options, "constant", constant_policy(a), seeds, a)
                for a in constant_candidates(game_id, options, calibration)]  # fmt: skip
    return sorted(rows, key=lambda r: -r.success if r.n else 1.0)


def best_constant(
    game_id: str, options: Mapping[str, Any] | None = None, episodes: int = 1000, seed: int = 1
) -> BaselineRow | None:
    """The constant answer that scores best (None when the game offers no candidate)."""
    rows = constant_rows(game_id, options, episodes, seed)
    return rows[0] if rows else None


# ---------------------------------------------------------------------------------------------- exact matrix
def matrix_episode_types(
    options: Mapping[str, Any] | None,
) -> list[tuple[Fraction, Any, Any, int, int]] | None:
    """(probability, A, B, role, N) of every episode type of `matrix-v0` with these options; None when unknown."""
    options = dict(options or {})
    if not set(options) <= _MATRIX_EXACT_OPTIONS:
        return None
    from gift.games import matrix as m

    game = make("matrix-v0", **options)  # validates the options
    role_option = options.get("role", "random")
    roles = (1, 2) if role_option == "random" else (int(role_option),)
    types = []
    for index in game.games:
        signs = (1, -1) if game.negate and index in m.NEGATABLE else (1,)
        for sign in signs:
            for offset in game.offsets:
                a, b = m.payoff_matrices(index, sign, offset)
                for role in roles:
                    p = Fraction(1, len(game.games) * len(signs) * len(game.offsets) * len(roles))
                    types.append((p, a, b, role, int(a.shape[0] if role == 1 else a.shape[1])))
    return types


def exact_matrix_rows(options: Mapping[str, Any] | None) -> list[BaselineRow] | None:
    """Random, every constant and the perfect player on `matrix-v0`, exactly; None for options not covered."""
    types = matrix_episode_types(options)
    if types is None:
        return None
    from gift.games.matrix import label_actions

    rule = dict(options or {}).get("label_rule", "paper")
    labelled = [(p, label_actions(a, b, role, rule), n) for p, a, b, role, n in types]
    n_types = len(labelled)

    def row(policy: str, value: Fraction, answer: str | None = None) -> BaselineRow:
        v = float(value)
        return BaselineRow("matrix-v0", policy, Estimate(v, v, v, n_types), "exact", answer)

    rows = [row("random", sum((p * Fraction(len(labels), n) for p, labels, n in labelled), Fraction(0)))]
    most = max(n for _, _, n in labelled)
    for k in range(1, most + 1):
        rows.append(
            row("constant", sum((p for p, labels, _ in labelled if k in labels), Fraction(0)), str(k))
        )
    rows.append(row("perfect", sum((p for p, labels, _ in labelled if labels), Fraction(0))))
    return rows


# ---------------------------------------------------------------------------------------------- the rows
def baseline_rows(
    game_id: str,
    options: Mapping[str, Any] | None = None,
    episodes: int = 1000,
    seed: int = 1,
    policies: Sequence[str] = POLICIES,
) -> list[BaselineRow]:
    """The trivial policies' rows for one game: random, best constant, perfect (or Spy's oracle) when defined.

    Simulated rows play episode seeds `seed .. seed + episodes - 1`; exact rows ignore `episodes`.
    """
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ValueError(f"unknown baseline policy {unknown[0]!r}; choose from {POLICIES}")
    exact = exact_matrix_rows(options) if game_id == "matrix-v0" else None
    seeds = range(seed, seed + episodes)
    rows: list[BaselineRow] = []
    for policy in policies:
        if policy == "constant":
            best = best_constant(game_id, options, episodes, seed)
            rows += [best] if best is not None else []
        elif exact is not None:
            rows += [r for r in exact if r.policy == policy]
        elif policy == "random":
            if _has_random_player(game_id, options):
                rows.append(_simulated(game_id, options, "random", random_policy, seeds))
        elif _has_oracle(game_id, options):
            name = game_spec(game_id).load().oracle_name
            rows.append(_simulated(game_id, options, name, perfect_policy, seeds))
    return rows


def _first_turn(game_id: str, options: Any) -> tuple[Any, dict[str, Any]]:
    game = make(game_id, **{**dict(options or {}), "parser": "raw"})
    _, info = game.reset(seed=_CALIBRATION_OFFSET)
    return game, info


def _has_random_player(game_id: str, options: Any) -> bool:
    """A random player needs listed answers, or the game's own trivial answer for open-ended turns."""
    game, info = _first_turn(game_id, options)
    return bool(game.legal_actions()) or type(game).open_answer(info) is not None


def _has_oracle(game_id: str, options: Any) -> bool:
    game, info = _first_turn(game_id, options)
    return type(game).oracle_answer(info, game.legal_actions(), random.Random(0)) is not None


# ---------------------------------------------------------------------------------------------- for gift eval
BASELINE_NOTE = (
    "Baseline rows: trivial policies played through the same games, opponents and episode seeds as the models "
    "(Matrix exactly, over its finite episode distribution). Random legal move: uniform over the legal actions "
    "(Spy: a fixed generic description, then a random vote). Best constant answer: the single answer (in "
    "quotes) that scores best when given every turn. Perfect player: the Matrix label, TicTacToe minimax, the "
    "gold math answer; Spy has none, so its cell is an oracle that votes for the spy."
)


def simulable(options: Any) -> bool:
    """Whether baselines can be played with these options (no self-play, endpoint or checkpoint opponent)."""
    if isinstance(options, Mapping):
        if options.get("kind") in _UNSIMULABLE_OPPONENTS:
            return False
        return all(simulable(v) and not (k == "opponent" and v == "self") for k, v in options.items())
    if isinstance(options, list | tuple):
        return all(simulable(v) for v in options)
    return isinstance(options, str | int | float | bool) or options is None


def eval_baselines(jobs: Iterable[Any], episodes: int | None = None) -> dict[str, list[BaselineRow]]:
    """Suite → baseline rows for evaluation game jobs (`suite`, `game_id`, `options`, `episodes` attributes).

    Each game is played on the evaluation's own episode seeds 1..N (`episodes` overrides N); jobs whose
    opponent is a model or an endpoint are skipped, since a baseline cannot be played against them offline.
    """
    out: dict[str, list[BaselineRow]] = {}
    for job in jobs:
        if getattr(job, "policy_opponent", None) is not None or not simulable(job.options):
            continue
        out[job.suite] = baseline_rows(job.game_id, job.options, episodes or job.episodes, seed=1)
    return out
