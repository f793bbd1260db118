"""`check_env`: a conformance check for text games, in the spirit of Gymnasium's env checker.

Run it on your own game before training on it:

    from gift.games.checker import check_env
    report = check_env(MyGame(), episodes=20)      # or check_env("my-game-v0")

It plays random episodes (a random legal action when `legal_actions()` lists them, else short free text) and
checks the API contract the rollout and trainer rely on: return types, the common info keys, the turn budget,
seeded determinism, the format-penalty rule, robustness to junk answers, the end-of-episode protocol, and the
seat API the episode driver plays through, which must give the same episodes as reset/step
(`gift.games.checker_seats`). The random player draws from its own seed stream, never the game's, so it wins
and loses by chance rather than in step with the game's draws. The first broken property raises
`EnvCheckError`, whose message names it.
"""

from __future__ import annotations

import math
import numbers
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gift.games.checker_seats import agent_for, check_driver_matches_step, check_seats
from gift.games.protocol import FORMAT_PENALTY
from gift.games.registry import make

COMMON_INFO_KEYS = (
    "game",
    "seed",
    "turns_used",
    "actions_left",
    "success",
    "penalty",
    "format_error",
    "invalid_actions",
    "end_reason",
    "opponent_failed",
    "terminal_reward",
)
"""Keys every `info` dict must carry (see gift.games.base)."""

NO_TAG_REPLY = "I would rather not use any tags here. My answer is 1."
JUNK_ANSWERS = ("", "@@ not a move @@", "-1 || 999 || ???", "z" * 2000)
FREE_TEXT_ANSWERS = ("1", "A", "yes", "a small round object", "0", "x")
DETERMINISM_REPLAYS = 3
_TOL = 1e-9


class EnvCheckError(AssertionError):
    """A game broke the API contract; `check` names the property and the message says how."""

    def __init__(self, game: str, check: str, detail: str) -> None:
        super().__init__(f"{game}: check {check!r} failed: {detail}")
        self.game = game
        self.check = check


@dataclass
class CheckReport:
    """What `check_env` verified (it only returns when every check passed)."""

    game: str
    episodes: int
    steps: int = 0
    terminated: int = 0
    truncated: int = 0
    distinct_starts: int = 0
    """Distinct opening observations."""
    distinct_states: int = 0
    """Distinct opening states (the game-specific info and the focal seat's structured view): hidden
    information can differ by seed behind the same opening screen."""
    end_reasons: dict[str, int] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        reasons = ", ".join(f"{k}={v}" for k, v in sorted(self.end_reasons.items())) or "none"
        lines = [
            f"{self.game}: all {len(self.checks)} checks passed over {self.episodes} random episodes "
            f"({self.steps} steps; {self.terminated} terminated, {self.truncated} truncated; "
            f"{self.distinct_starts} distinct start observations, {self.distinct_states} distinct start states)",
            f"  end reasons: {reasons}",
            f"  checks: {', '.join(self.checks)}",
        ]
        lines += [f"  skipped: {s}" for s in self.skipped]
        return "\n".join(lines)


@dataclass
class _Step:
    reply: str
    obs: str
    reward: float
    terminated: bool
    truncated: bool
    info: dict[str, Any]


@dataclass
class _Trace:
    seed: int
    obs: str
    info: dict[str, Any]
    state: tuple[dict[str, Any], dict[str, Any]]
    steps: list[_Step] = field(default_factory=list)


class _Checker:
    def __init__(self, game: Any, name: str, report: CheckReport) -> None:
        self.game = game
        self.name = name
        self.report = report
        self.parser = getattr(game, "parser", "strict")

    # ------------------------------------------------------------------------------------------- helpers
    def fail(self, check: str, detail: str) -> EnvCheckError:
        return EnvCheckError(self.name, check, detail)

    def call(self, check: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EnvCheckError:
            raise
        except Exception as exc:  # a crash is reported as the property being checked
            raise self.fail(check, f"{fn.__name__}() raised {type(exc).__name__}: {exc}") from exc

    def wrap(self, answer: str) -> str:
        return (
            answer if self.parser == "raw" else f"<think>checking the game</think><answer>{answer}</answer>"
        )

    def random_reply(self, agent: random.Random) -> str:
        legal = self.call("legal_actions", self.game.legal_actions)
        return self.wrap(agent.choice(legal) if legal else agent.choice(FREE_TEXT_ANSWERS))

    def start_state(self, info: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """What may differ between seeds behind one opening screen: game-specific info, the focal view's state."""
        view = self.call("seat_observe", self.game.observe, self.game.focal_seat)
        return self.state_view(info), view.state

    def passed(self, check: str) -> None:
        if check not in self.report.checks:
            self.report.checks.append(check)

    def check_info(self, check: str, info: Any, where: str) -> None:
        if not isinstance(info, dict):
            raise self.fail(check, f"{where}: info is {type(info).__name__}, expected dict")
        missing = [k for k in COMMON_INFO_KEYS if k not in info]
        if missing:
            raise self.fail(check, f"{where}: info lacks common keys {missing}")

    def state_view(self, info: dict[str, Any]) -> dict[str, Any]:
        """The game-specific part of `info`: what a reply that was not read must leave unchanged.

        The render is not compared: games may re-draw their prompt layout each turn. A game whose info also
        holds turn/penalty bookkeeping lists those keys in `accounting_info_keys`.
        """
        skip = set(COMMON_INFO_KEYS) | set(getattr(self.game, "accounting_info_keys", ()))
        return {k: v for k, v in info.items() if k not in skip}

    # ------------------------------------------------------------------------------------------ protocol
    def reset(self, seed: int) -> tuple[str, dict[str, Any]]:
        result = self.call("reset", self.game.reset, seed=seed)
        if not isinstance(result, tuple) or len(result) != 2:
            raise self.fail(
                "reset", f"reset(seed={seed}) returned {type(result).__name__}, expected (str, dict)"
            )
        obs, info = result
        if not isinstance(obs, str):
            raise self.fail("reset", f"reset(seed={seed}) observation is {type(obs).__name__}, expected str")
        self.check_info("reset", info, f"reset(seed={seed})")
        if info["seed"] != seed or info["turns_used"] != 0 or info["end_reason"] is not None:
            raise self.fail(
                "reset",
                f"reset(seed={seed}) info has seed={info['seed']!r}, turns_used={info['turns_used']!r}, "
                f"end_reason={info['end_reason']!r}; expected {seed}, 0, None",
            )
        self.passed("reset")
        return obs, info

    def step(self, reply: str, where: str) -> _Step:
        result = self.call("step_types", self.game.step, reply)
        if not isinstance(result, tuple) or len(result) != 5:
            shape = f"a {len(result)}-tuple" if isinstance(result, tuple) else type(result).__name__
            raise self.fail("step_types", f"{where}: step() returned {shape}, expected a 5-tuple")
        obs, reward, terminated, truncated, info = result
        if not isinstance(obs, str):
            raise self.fail("step_types", f"{where}: observation is {type(obs).__name__}, expected str")
        if isinstance(reward, bool) or not isinstance(reward, numbers.Real) or not math.isfinite(reward):
            raise self.fail("step_types", f"{where}: reward={reward!r} is not a finite number")
        for flag, value in (("terminated", terminated), ("truncated", truncated)):
            if not isinstance(value, bool):
                raise self.fail("step_types", f"{where}: {flag}={value!r} is not a bool")
        self.check_info("step_types", info, where)
        self.passed("step_types")
        return _Step(reply, obs, float(reward), terminated, truncated, info)

    def check_transition(self, step: _Step, previous_turns: int, where: str) -> None:
        info, max_turns = step.info, self.game.max_turns
        used = info["turns_used"]
        if not isinstance(used, int) or used <= previous_turns or used > max_turns:
            raise self.fail(
                "budget", f"{where}: turns_used went {previous_turns} -> {used!r} (max_turns={max_turns})"
            )
        if info["actions_left"] != max_turns - used:
            raise self.fail(
                "budget", f"{where}: actions_left={info['actions_left']!r} != {max_turns} - {used}"
            )
        self.passed("budget")
        if step.terminated and step.truncated:
            raise self.fail("end_flags", f"{where}: terminated and truncated are both True")
        if (step.terminated or step.truncated) and info["end_reason"] is None:
            raise self.fail("end_flags", f"{where}: the episode ended but info['end_reason'] is None")
        if not (step.terminated or step.truncated) and info["end_reason"] is not None:
            raise self.fail("end_flags", f"{where}: end_reason={info['end_reason']!r} on a running episode")
        if step.truncated and info["success"]:
            raise self.fail("end_flags", f"{where}: a truncated episode reports success")
        if step.terminated and info["terminal_reward"] is None:
            raise self.fail("end_flags", f"{where}: terminated without info['terminal_reward']")
        self.passed("end_flags")
        expected = info["penalty"] + (info["terminal_reward"] if step.terminated else 0.0)
        if abs(step.reward - expected) > 1e-6:
            raise self.fail(
                "reward_accounting",
                f"{where}: reward={step.reward!r} but penalty + terminal_reward = {expected!r}",
            )
        self.passed("reward_accounting")

    # ------------------------------------------------------------------------------------------ episodes
    def play(self, seed: int, agent: random.Random | None, replies: list[str] | None = None) -> _Trace:
        """Play one episode with random replies (or the given ones) and check every transition."""
        obs, info = self.reset(seed)
        trace = _Trace(seed, obs, info, self.start_state(info))
        turns = 0
        max_turns = self.game.max_turns
        for k in range(max_turns):
            if replies is not None:
                reply = replies[k]
            else:
                assert agent is not None
                reply = self.random_reply(agent)
            where = f"seed {seed}, step {k + 1}"
            step = self.step(reply, where)
            self.check_transition(step, turns, where)
            turns = step.info["turns_used"]
            trace.steps.append(step)
            if step.terminated or step.truncated:
                return trace
            if replies is not None and k + 1 == len(replies):
                return trace
        raise self.fail(
            "ends_within_budget",
            f"seed {seed}: still running after {max_turns} steps (max_turns={max_turns})",
        )

    def check_step_after_end(self, seed: int) -> None:
        try:
            self.game.step(self.wrap("1"))
        except Exception:
            self.passed("step_after_end_raises")
            return
        raise self.fail("step_after_end_raises", f"seed {seed}: step() after the episode ended did not raise")

    def compare(self, first: _Trace, second: _Trace) -> None:
        where = f"seed {first.seed}"
        if first.obs != second.obs:
            raise self.fail("determinism", f"{where}: reset observation differs between two resets")
        if first.info != second.info:
            raise self.fail("determinism", f"{where}: reset info differs: {_diff(first.info, second.info)}")
        for k, (a, b) in enumerate(zip(first.steps, second.steps)):  # noqa: B905 - lengths checked below
            at = f"{where}, step {k + 1}"
            if a.obs != b.obs:
                raise self.fail("determinism", f"{at}: observation differs for the same reply")
            if (a.reward, a.terminated, a.truncated) != (b.reward, b.terminated, b.truncated):
                raise self.fail(
                    "determinism",
                    f"{at}: (reward, terminated, truncated) {(a.reward, a.terminated, a.truncated)} != "
                    f"{(b.reward, b.terminated, b.truncated)}",
                )
            if a.info != b.info:
                raise self.fail("determinism", f"{at}: info differs: {_diff(a.info, b.info)}")
        if len(first.steps) != len(second.steps):
            raise self.fail("determinism", f"{where}: the same replies gave episodes of different lengths")
        self.passed("determinism")

    # -------------------------------------------------------------------------------------------- rules
    def check_format_penalty(self, seed: int) -> None:
        if self.parser == "raw":
            self.report.skipped.append("format_penalty: parser='raw' reads any text as an answer")
            return
        _, reset_info = self.reset(seed)
        before = (self.call("legal_actions", self.game.legal_actions), self.state_view(reset_info))
        step = self.step(NO_TAG_REPLY, f"seed {seed}, reply without tags")
        info, check = step.info, "format_penalty"
        if abs(step.reward - FORMAT_PENALTY) > _TOL or abs(info["penalty"] - FORMAT_PENALTY) > _TOL:
            raise self.fail(
                check,
                f"a reply without tags gave reward={step.reward!r}, penalty={info['penalty']!r}; "
                f"expected exactly {FORMAT_PENALTY}",
            )
        if info["format_error"] is not True or info["turns_used"] != 1:
            raise self.fail(
                check,
                f"a reply without tags gave format_error={info['format_error']!r}, "
                f"turns_used={info['turns_used']!r}; expected True and 1",
            )
        if step.terminated or step.truncated != (self.game.max_turns == 1):
            raise self.fail(
                check,
                f"a reply without tags gave terminated={step.terminated}, truncated={step.truncated} "
                f"with max_turns={self.game.max_turns}",
            )
        after = (self.call("legal_actions", self.game.legal_actions), self.state_view(info))
        if after != before:
            raise self.fail(
                check, "a reply without tags changed the game state (legal_actions or game-specific info)"
            )
        self.passed(check)

    def check_junk(self, seed: int) -> None:
        for answer in JUNK_ANSWERS:
            self.reset(seed)
            shown = answer if len(answer) < 20 else answer[:12] + "..."
            step = self.step(self.wrap(answer), f"seed {seed}, junk answer {shown!r}")
            self.check_transition(step, 0, f"seed {seed}, junk answer {shown!r}")
            if step.info["success"] or step.reward > _TOL:
                raise self.fail(
                    "junk_answers",
                    f"junk answer {shown!r} was rewarded ({step.reward!r}, success={step.info['success']!r})",
                )
        self.passed("junk_answers")


def _diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    keys = sorted(set(a) | set(b), key=str)
    changed = [k for k in keys if a.get(k) != b.get(k)]
    return ", ".join(f"{k!r}: {a.get(k)!r} vs {b.get(k)!r}" for k in changed[:3]) or "(order only)"


SEAT_API = (
    "begin",
    "to_move",
    "observe",
    "play_focal",
    "play_other",
    "forfeit",
    "step_complete",
    "collect_step",
)
"""The methods the episode driver plays through (gift.rollout.driver)."""


def _distinct(values: list[Any]) -> int:
    """How many different values, by equality (states are dicts, which do not hash)."""
    unique: list[Any] = []
    for value in values:
        if value not in unique:
            unique.append(value)
    return len(unique)


def _check_api(checker: _Checker) -> None:
    game = checker.game
    for attr in ("reset", "step", "render", "legal_actions", "opening", *SEAT_API):
        if not callable(getattr(game, attr, None)):
            raise checker.fail("api", f"the game has no {attr}() method")
    max_turns = getattr(game, "max_turns", None)
    if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1:
        raise checker.fail("api", f"max_turns={max_turns!r} must be an integer >= 1")
    checker.passed("api")


def _play_random(checker: _Checker, episodes: int, seed: int) -> list[_Trace]:
    """The random episodes every later check builds on, tallied into the report."""
    report, traces, reasons = checker.report, [], Counter[str]()
    for i in range(episodes):
        trace = checker.play(seed + i, agent_for(seed, i))
        checker.passed("ends_within_budget")
        checker.check_step_after_end(seed + i)
        last = trace.steps[-1]
        report.steps += len(trace.steps)
        report.terminated += int(last.terminated)
        report.truncated += int(last.truncated)
        reasons[str(last.info["end_reason"])] += 1
        traces.append(trace)
    report.end_reasons = dict(reasons)
    report.distinct_starts = _distinct([t.obs for t in traces])
    report.distinct_states = _distinct([t.state for t in traces])
    return traces


def _check_seeds_vary(checker: _Checker, episodes: int, seed: int) -> None:
    """Seeds must change the start: its text, or (hidden information) the state behind the same text."""
    report = checker.report
    if episodes < 2:
        report.skipped.append("seeds_vary: needs episodes >= 2")
        return
    if report.distinct_starts < 2 and report.distinct_states < 2:
        raise checker.fail(
            "seeds_vary",
            f"seeds {seed}..{seed + episodes - 1} all gave the same start: the same observation, "
            "the same game-specific info and the same observe(focal_seat).state",
        )
    checker.passed("seeds_vary")


def check_env(game_or_id: Any, episodes: int = 20, seed: int = 0) -> CheckReport:
    """Check a game (instance or registered id) against the TextGame contract; raise `EnvCheckError` if broken."""
    game = make(game_or_id) if isinstance(game_or_id, str) else game_or_id
    name = str(getattr(game, "id", type(game).__name__))
    if episodes < 1:
        raise ValueError(f"episodes={episodes!r} must be >= 1")
    report = CheckReport(game=name, episodes=episodes)
    checker = _Checker(game, name, report)
    _check_api(checker)
    check_seats(checker, seed, episodes)
    traces = _play_random(checker, episodes, seed)
    # Replays run after every other episode, so they also catch state leaking across resets.
    for trace in traces[:DETERMINISM_REPLAYS]:
        checker.compare(trace, checker.play(trace.seed, None, [s.reply for s in trace.steps]))
    checker.passed("reset_after_end")
    check_driver_matches_step(checker, traces, seed)  # only meaningful once a seed fixes an episode
    _check_seeds_vary(checker, episodes, seed)
    checker.check_format_penalty(seed)
    checker.check_junk(seed)
    return report
