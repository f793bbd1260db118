"""Matrix Games (`matrix-v0`): one turn, pick your Nash-equilibrium action from a two-player payoff table.

Each episode draws one of nine classic bimatrix games (the paper's Matrix Games environment), optionally negates it (games 0–6),
shifts every payoff by a constant, assigns the reader a role and a prompt layout. The answer is graded against a
label set computed on the episode's actual matrices, under one of two rules:

- "paper": reproduce the reference labelling — the *last* equilibrium that nashpy's support enumeration returns,
  and the most likely action of the reader's strategy in it (first index on ties). Multi-equilibrium games thereby
  resolve to the mixed equilibrium's modal action.
- "pure": any action of the reader that is part of some pure Nash equilibrium; games without one fall back to
  the "paper" label.

Balanced variant (`permute_actions=True`, the project's addition; off by default, as in the paper): each
episode also shuffles the order in which both players' actions are shown, payoffs moving with their actions. The
labels are computed on the unshuffled game and carried through the shuffle, so the strategic answer is the same,
only its position moves. Under the paper's rule one answer ("2") is the label in about half the episodes; with the
shuffle every position holds the label equally often, and no constant answer beats a uniformly random legal one.

The pure functions `payoff_matrices`, `pure_nash_equilibria`, `reference_equilibrium` and `label_actions` are
public so that analyses (e.g. exploitability of a trained policy) reuse exactly the labels the game trains on;
`constant_answer_success`, `best_constant_answer` and `random_answer_success` give the exact success of the
trivial policies for any game configuration, the baselines a trained policy must beat.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from fractions import Fraction
from functools import lru_cache
from typing import Any, ClassVar, NamedTuple

import numpy as np

from gift.errors import ConfigError, check_choice
from gift.games.base import Outcome, TextGame
from gift.games.matrix_prompts import LAYOUT_NAMES, LAYOUTS, render_prompt


class MatrixSpec(NamedTuple):
    """One game: its name, Player 1's payoffs A and Player 2's payoffs B (rows = P1 actions)."""

    name: str
    A: tuple[tuple[int, ...], ...]
    B: tuple[tuple[int, ...], ...]


GAMES: tuple[MatrixSpec, ...] = (
    MatrixSpec("Prisoner's Dilemma", ((3, 0), (5, 1)), ((3, 5), (0, 1))),
    MatrixSpec("Battle of the Sexes", ((2, 0), (0, 1)), ((1, 0), (0, 2))),
    MatrixSpec("Game of Chicken", ((-10, 1), (-1, 0)), ((-10, -1), (1, 0))),
    MatrixSpec("Stag Hunt", ((3, 0), (1, 1)), ((3, 1), (0, 1))),
    MatrixSpec(
        "Radio Station",
        ((25, 50, 50), (30, 15, 30), (20, 20, 10)),
        ((25, 30, 20), (50, 15, 20), (50, 30, 10)),
    ),
    MatrixSpec("IESDS", ((13, 1, 7), (4, 3, 6), (-1, 2, 8)), ((3, 4, 3), (1, 3, 2), (2, 3, -1))),
    MatrixSpec(
        "Duopolistic Competition",
        (
            (0, 0, 0, 0, 0, 0),
            (9, 7, 5, 3, 1, -1),
            (14, 10, 6, 2, -2, -2),
            (15, 9, 3, -3, -3, -3),
            (12, 4, -4, -4, -4, -4),
            (5, -5, -5, -5, -5, -5),
        ),
        (
            (0, 9, 14, 15, 12, 5),
            (0, 7, 10, 9, 4, -5),
            (0, 5, 6, 3, -4, -5),
            (0, 3, 2, -3, -4, -5),
            (0, 1, -2, -3, -4, -5),
            (0, -1, -2, -3, -4, -5),
        ),
    ),
    MatrixSpec(
        "GAME", ((1, -1, 5, 1), (2, 1, 3, 5), (1, 0, 1, 0)), ((1, 2, 0, 1), (3, 2, 0, 1), (1, 5, 7, 1))
    ),
    MatrixSpec("Weakly Dominated", ((5, 4), (6, 3), (6, 4)), ((1, 0), (0, 1), (4, 1))),
)
"""The nine games of the paper's Matrix Games environment, in the reference order (the index is the game id)."""

NEGATABLE = frozenset(range(7))
"""Games that the per-episode sign flip may negate (the reference never negates 7 and 8)."""

LABEL_RULES = ("paper", "pure")
ROLES = ("random", 1, 2)
DEFAULT_OFFSETS = (0, 100, -100)
_TIE_DECIMALS = 9
"""Mixed strategies are rounded before the argmax so that float noise cannot break a tie (e.g. 0.5 / 0.5)."""


# ---------------------------------------------------------------------------------------------- pure functions
def payoff_matrices(game_index: int, sign: int = 1, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) of game `game_index`, multiplied by `sign` (+1 or -1) and shifted by `offset`, as int arrays."""
    if (
        isinstance(game_index, bool)
        or not isinstance(game_index, int | np.integer)
        or not 0 <= game_index < len(GAMES)
    ):
        raise ConfigError(f"game_index={game_index!r} is out of range; allowed: 0..{len(GAMES) - 1}")
    check_choice("sign", sign, (1, -1))
    spec = GAMES[int(game_index)]
    a = sign * np.array(spec.A, dtype=np.int64) + offset
    b = sign * np.array(spec.B, dtype=np.int64) + offset
    return a, b


def pure_nash_equilibria(A: np.ndarray, B: np.ndarray) -> list[tuple[int, int]]:
    """Every pure Nash equilibrium as a 1-indexed (row, column) pair: each action is a best reply to the other."""
    a, b = np.asarray(A, dtype=float), np.asarray(B, dtype=float)
    col_best = a.max(axis=0)  # P1's best payoff against each column
    row_best = b.max(axis=1)  # P2's best payoff against each row
    return [
        (i + 1, j + 1)
        for i in range(a.shape[0])
        for j in range(a.shape[1])
        if a[i, j] >= col_best[j] - 1e-9 and b[i, j] >= row_best[i] - 1e-9
    ]


def reference_equilibrium(A: np.ndarray, B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The equilibrium the reference labels with: the last one nashpy's support enumeration yields."""
    return _reference_equilibrium(_key(A), _key(B))


def label_actions(A: np.ndarray, B: np.ndarray, role: int, rule: str = "paper") -> frozenset[int]:
    """The 1-indexed actions of player `role` (1 or 2) that count as correct under `rule` ("paper" or "pure")."""
    check_choice("role", role, (1, 2))
    check_choice("label_rule", rule, LABEL_RULES)
    return _label_actions(_shifted_key(A), _shifted_key(B), int(role), rule)


def permute_actions(
    A: np.ndarray, B: np.ndarray, row_order: Sequence[int], col_order: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """(A, B) with P1's actions shown in `row_order` and P2's in `col_order` (0-indexed original actions).

    Displayed row i is original row `row_order[i]`, so payoffs move with their actions.
    """
    a, b = np.asarray(A), np.asarray(B)
    for name, order, size in (("row_order", row_order, a.shape[0]), ("col_order", col_order, a.shape[1])):
        if sorted(int(k) for k in order) != list(range(size)):
            raise ConfigError(f"{name}={list(order)!r} is not a permutation of 0..{size - 1}")
    index = np.ix_(list(row_order), list(col_order))
    return a[index], b[index]


def permute_labels(labels: Iterable[int], order: Sequence[int]) -> frozenset[int]:
    """Where the 1-indexed original actions `labels` are shown when actions are displayed in `order`."""
    position = {int(original): shown for shown, original in enumerate(order)}
    return frozenset(position[a - 1] + 1 for a in labels)


def _key(M: np.ndarray | Sequence[Sequence[float]]) -> tuple[tuple[float, ...], ...]:
    """A hashable copy of a matrix, for the caches."""
    arr = np.asarray(M, dtype=float)
    if arr.ndim != 2 or arr.size == 0:
        raise ConfigError(f"payoff matrix must be a non-empty 2-D array, got shape {arr.shape}")
    return tuple(tuple(float(x) for x in row) for row in arr)


def _shifted_key(M: np.ndarray | Sequence[Sequence[float]]) -> tuple[tuple[float, ...], ...]:
    """The cache key of a player's payoffs up to a constant: equilibria do not move when every payoff of a
    player shifts by one constant (the ±100 offsets), so each game's labels are computed once, not per offset
    (support enumeration of the 6x6 game takes about a second). Tested to give the offsets' own labels."""
    arr = np.asarray(M, dtype=float)
    return _key(arr - arr.min()) if arr.size else _key(arr)


@lru_cache(maxsize=512)
def _reference_equilibrium(a: tuple, b: tuple) -> tuple[np.ndarray, np.ndarray]:
    import nashpy

    if len(a) != len(b) or len(a[0]) != len(b[0]):
        raise ConfigError("payoff matrices A and B must have the same shape")
    game = nashpy.Game(np.array(a), np.array(b))
    with warnings.catch_warnings():
        # Several of the games are degenerate; nashpy warns about it on every call.
        warnings.simplefilter("ignore")
        equilibria = list(game.support_enumeration())
        if not equilibria:
            equilibria = [game.lemke_howson(initial_dropped_label=0)]
    p, q = equilibria[-1]
    p, q = np.array(p, dtype=float), np.array(q, dtype=float)
    p.flags.writeable = q.flags.writeable = False  # cached: callers must not mutate
    return p, q


@lru_cache(maxsize=512)
def _label_actions(a: tuple, b: tuple, role: int, rule: str) -> frozenset[int]:
    if rule == "pure":
        pure = pure_nash_equilibria(np.array(a), np.array(b))
        if pure:
            return frozenset(pair[role - 1] for pair in pure)
    strategy = _reference_equilibrium(a, b)[role - 1]
    return frozenset({int(np.argmax(np.round(strategy, _TIE_DECIMALS))) + 1})


# ---------------------------------------------------------------------------------------------- the game
def _as_rows(m: np.ndarray) -> tuple[tuple[int, ...], ...]:
    return tuple(tuple(int(x) for x in row) for row in m)


def _parse_games(games: Iterable[int | str] | int | str | None) -> tuple[int, ...]:
    allowed = f"game indices 0..{len(GAMES) - 1} or names: " + ", ".join(repr(g.name) for g in GAMES)
    if games is None:
        return tuple(range(len(GAMES)))
    items = [games] if isinstance(games, int | str) else list(games)
    if not items:
        raise ConfigError(f"matrix-v0: games is empty; choose {allowed}")
    names = {g.name.lower(): k for k, g in enumerate(GAMES)}
    chosen: list[int] = []
    for g in items:
        if isinstance(g, str) and g.strip().lower() in names:
            chosen.append(names[g.strip().lower()])
        elif isinstance(g, int | np.integer) and not isinstance(g, bool) and 0 <= g < len(GAMES):
            chosen.append(int(g))
        else:
            raise ConfigError(f"matrix-v0: games entry {g!r} is not allowed; choose {allowed}")
    return tuple(dict.fromkeys(chosen))


def _parse_offsets(offsets: Iterable[int] | int) -> tuple[int, ...]:
    items = [offsets] if isinstance(offsets, int) else list(offsets)
    bad = [o for o in items if isinstance(o, bool) or not isinstance(o, int | np.integer)]
    if not items or bad:
        shown = bad[0] if bad else offsets
        raise ConfigError(
            f"matrix-v0: offsets entry {shown!r} is not allowed; give a non-empty list of integers"
        )
    return tuple(int(o) for o in items)


class MatrixGame(TextGame):
    """One-shot bimatrix game: the answer is the number of one of the reader's own actions."""

    id: ClassVar[str] = "matrix-v0"
    default_max_turns: ClassVar[int] = 1

    def __init__(
        self,
        label_rule: str = "paper",
        games: Iterable[int | str] | int | str | None = None,
        negate: bool = True,
        offsets: Iterable[int] | int = DEFAULT_OFFSETS,
        role: str | int = "random",
        permute_actions: bool = False,
        max_turns: int | None = None,
        parser: str = "strict",
    ) -> None:
        super().__init__(max_turns=max_turns, parser=parser)
        check_choice("matrix-v0: label_rule", label_rule, LABEL_RULES)
        if not isinstance(negate, bool):
            raise ConfigError(f"matrix-v0: negate={negate!r} is not allowed; choose one of: True, False")
        if not isinstance(permute_actions, bool):
            raise ConfigError(
                f"matrix-v0: permute_actions={permute_actions!r} is not allowed; choose one of: True, False"
            )
        if isinstance(role, bool):
            raise ConfigError(f"matrix-v0: role={role!r} is not allowed; choose one of: 'random', 1, 2")
        check_choice("matrix-v0: role", role, ROLES)
        self.label_rule = label_rule
        self.games = _parse_games(games)
        self.negate = negate
        self.offsets = _parse_offsets(offsets)
        self.role_option = role
        self.permute = permute_actions
        # Episode state, set by _reset.
        self.game_index = -1
        self.sign = 1
        self.offset = 0
        self.role = 1
        self.layout = -1
        self.row_order: tuple[int, ...] = ()
        self.col_order: tuple[int, ...] = ()
        self.A = np.zeros((0, 0), dtype=np.int64)
        self.B = np.zeros((0, 0), dtype=np.int64)
        self.labels: frozenset[int] = frozenset()
        self.prompt = ""
        self.answer: str | None = None
        self.chosen_action: int | None = None

    @property
    def num_actions(self) -> int:
        """N, the number of the reader's own actions."""
        return int(self.A.shape[0] if self.role == 1 else self.A.shape[1])

    def _reset(self) -> None:
        rng = self.rng
        self.game_index = rng.choice(self.games)
        flip = self.negate and self.game_index in NEGATABLE and rng.random() < 0.5
        self.sign = -1 if flip else 1
        self.offset = rng.choice(self.offsets)
        self.role = rng.choice((1, 2)) if self.role_option == "random" else int(self.role_option)
        self.layout = rng.randrange(len(LAYOUTS))
        a, b = payoff_matrices(self.game_index, self.sign, self.offset)
        rows, cols = a.shape
        # Drawn only when on, so that episodes without the option stay exactly as they were.
        self.row_order = tuple(rng.sample(range(rows), rows)) if self.permute else tuple(range(rows))
        self.col_order = tuple(rng.sample(range(cols), cols)) if self.permute else tuple(range(cols))
        own_order = self.row_order if self.role == 1 else self.col_order
        self.labels = permute_labels(label_actions(a, b, self.role, self.label_rule), own_order)
        self.A, self.B = permute_actions(a, b, self.row_order, self.col_order)
        self.prompt = render_prompt(self.layout, _as_rows(self.A), _as_rows(self.B), self.role, rng)
        self.answer = None
        self.chosen_action = None

    def _act(self, action: str) -> Outcome:
        self.answer = action
        text = action.strip()
        if text not in self.legal_actions():
            return Outcome(
                valid=False,
                terminated=True,
                reward=0.0,
                end_reason="invalid_action",
                message=f"{text!r} is not an action; answer with one number from 1 to {self.num_actions}.",
            )
        self.chosen_action = int(text)
        correct = self.chosen_action in self.labels
        return Outcome(
            terminated=True,
            reward=1.0 if correct else 0.0,
            success=correct,
            end_reason="correct" if correct else "wrong",
        )

    def render(self) -> str:
        if self.done and self.chosen_action is not None:
            return f"{self.prompt}\n\nYou chose action {self.chosen_action}. The game is over."
        return self.prompt

    @classmethod
    def oracle_answer(cls, info: dict[str, Any], legal: list[str] | None, rng: Any) -> str | None:
        return str(min(info["labels"]))

    @classmethod
    def recorded_answer(cls, info: dict[str, Any]) -> str | None:
        return info.get("answer")

    def solution(self) -> str | None:
        if not self.labels:
            return None
        return "the equilibrium action: " + " or ".join(str(a) for a in sorted(self.labels))

    def legal_actions(self) -> list[str]:
        return [str(k) for k in range(1, self.num_actions + 1)]

    def game_info(self) -> dict[str, Any]:
        return {
            "matrix_game": GAMES[self.game_index].name if self.game_index >= 0 else None,
            "matrix_game_index": self.game_index,
            "sign": self.sign,
            "offset": self.offset,
            "role": self.role,
            "num_actions": self.num_actions,
            "layout": self.layout,
            "layout_name": LAYOUT_NAMES[self.layout] if self.layout >= 0 else None,
            "label_rule": self.label_rule,
            "permute_actions": self.permute,
            "row_order": [k + 1 for k in self.row_order],  # the original P1 action shown at each row
            "col_order": [k + 1 for k in self.col_order],
            "labels": sorted(self.labels),
            "answer": self.answer,
            "chosen_action": self.chosen_action,
        }


# ---------------------------------------------------------------------------------------------- baselines
class EpisodeKind(NamedTuple):
    """One (game, sign, offset, role) draw of a configuration: its probability, labels and action count."""

    probability: Fraction
    labels: frozenset[int]
    num_actions: int


def episode_kinds(options: Mapping[str, Any] | None = None) -> Iterator[EpisodeKind]:
    """Every distinct draw of `MatrixGame(**options)` that matters for grading, with its exact probability.

    The layout never changes the labels and the action shuffle is accounted for by the callers, so the
    episode distribution reduces to game × sign × offset × role, each drawn uniformly as in `_reset`.
    """
    game = MatrixGame(**dict(options or {}))
    roles = (1, 2) if game.role_option == "random" else (int(game.role_option),)
    for index in game.games:
        signs = (1, -1) if game.negate and index in NEGATABLE else (1,)
        for sign in signs:
            for offset in game.offsets:
                a, b = payoff_matrices(index, sign, offset)
                for role in roles:
                    p = Fraction(1, len(game.games) * len(signs) * len(game.offsets) * len(roles))
                    labels = label_actions(a, b, role, game.label_rule)
                    yield EpisodeKind(p, labels, int(a.shape[role - 1]))


def constant_answer_success(options: Mapping[str, Any] | None = None) -> dict[str, Fraction]:
    """Exact success rate of always answering k, for every k from "1" to the largest action count.

    `options` are `matrix-v0`'s game options as in a config (`label_rule`, `games`, `negate`, `offsets`, `role`,
    `permute_actions`; others are accepted and ignored). The rate is the probability, over the episode
    distribution of those options, that k is a labelled action (an answer above the reader's action count is
    illegal and fails). No sampling: it is exact, as a Fraction (`float()` it for display). With
    `permute_actions`, position k holds each original action equally often, so its rate is E[|labels| / N] over
    the episodes with N ≥ k. Example (defaults, paper rule): "2" ≈ 0.52, "1" ≈ 0.34.
    """
    options = dict(options or {})
    permute = bool(options.get("permute_actions", False))
    kinds = list(episode_kinds(options))
    largest = max(kind.num_actions for kind in kinds)
    rates: dict[str, Fraction] = {}
    for k in range(1, largest + 1):
        rates[str(k)] = sum((kind.probability * _hit(kind, k, permute) for kind in kinds), start=Fraction(0))
    return rates


def best_constant_answer(options: Mapping[str, Any] | None = None) -> tuple[str, Fraction]:
    """The constant answer with the highest exact success rate (the lowest number on ties) and that rate."""
    rates = constant_answer_success(options)
    best = max(rates, key=lambda k: (rates[k], -int(k)))
    return best, rates[best]


def random_answer_success(options: Mapping[str, Any] | None = None) -> Fraction:
    """Exact success rate of a uniformly random legal answer: E[|labels| / N] (the shuffle does not change it)."""
    return sum(
        (kind.probability * Fraction(len(kind.labels), kind.num_actions) for kind in episode_kinds(options)),
        start=Fraction(0),
    )


def _hit(kind: EpisodeKind, k: int, permute: bool) -> Fraction:
    """P(answer k is labelled | this draw): certain without the shuffle, |labels| / N with it."""
    if k > kind.num_actions:
        return Fraction(0)
    if permute:
        return Fraction(len(kind.labels), kind.num_actions)
    return Fraction(int(k in kind.labels))


class BalancedMatrixGame(MatrixGame):
    """`matrix-v0` registered with `permute_actions=True`: the labelled action is spread over the positions, so
    the best constant answer scores what a random legal answer scores (the paper's game rewards answering "2")."""

    id: ClassVar[str] = "matrix-balanced-v0"
