"""The seat half of `check_env`: the API the episode driver plays through, and its agreement with reset/step.

Training, evaluation and `gift play` never call `reset`/`step`; they drive games seat by seat
(`gift.rollout.driver`). These checks walk random episodes through that API — `to_move`, `observe`,
`play_focal`, `play_other`, `forfeit`, `collect_step` — and then play the same seeds with the same random
focal player through `drive`, which must give exactly the episodes the single-agent view gave.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gift.games.base import Outcome, SeatView
from gift.opponents.base import answer_seat
from gift.rollout.driver import Episode, TextSeat, derive_seed, drive
from gift.rollout.recorders import ChatSettings, EpisodeLog, FreshRecorder

if TYPE_CHECKING:
    from gift.games.checker import _Checker, _Trace

OTHER_SEAT_JUNK = ("", "@@ not a move @@")
"""Replies another seat might send that no game should accept (the focal seat's junk is checked separately)."""
SEAT_WALKS = 4
"""Episodes walked through the seat API (each twice: once probing rejections, once forfeiting)."""
DRIVER_EPISODES = 10
"""Episodes replayed through `drive` and compared with the reset/step episodes of the same seeds."""
MAX_WALK_MOVES = 500
"""Moves of all seats in one walked episode before the checker calls it stuck."""

Probe = Callable[[int], bool]


def agent_for(seed: int, episode: int) -> random.Random:
    """The checker's random player for one episode: its own stream, independent of the game's seed."""
    return random.Random(derive_seed("checker", seed, episode))


def check_seats(checker: _Checker, seed: int, episodes: int) -> None:
    """`to_move`, `observe`, rejected `play_other` and `forfeit` on walked episodes."""
    others = rejected = forfeited = 0
    for i in range(min(episodes, SEAT_WALKS)):
        counts = {"rejected": 0}
        others += walk(
            checker, seed + i, agent_for(seed, i), lambda s, c=counts: _probe_rejection(checker, s, c)
        )
        rejected += counts["rejected"]
        forfeited += walk(checker, seed + i, agent_for(seed, i), lambda s: _probe_forfeit(checker, s)) > 0
    checker.passed("seat_to_move")
    checker.passed("seat_observe")
    if not others:
        checker.report.skipped.append(
            f"rejected_play_other, forfeit: no other seat was to move (seats={getattr(checker.game, 'seats', 1)})"
        )
        return
    if rejected:
        checker.passed("rejected_play_other")
    else:
        checker.report.skipped.append(
            f"rejected_play_other: the game accepted every one of {OTHER_SEAT_JUNK}"
        )
    if forfeited:
        checker.passed("forfeit")


def walk(checker: _Checker, seed: int, agent: random.Random, probe: Probe | None = None) -> int:
    """Play one episode through the seat API, checking every `to_move` and `observe` on the way.

    Random focal replies, the game's own players for the other seats; `probe(seat)` runs whenever another
    seat is to move and ends the walk by returning True. Returns how often another seat was to move.
    """
    game, others, stepping = checker.game, 0, False
    checker.call("seat_to_move", game.begin, seed=seed)
    for _ in range(MAX_WALK_MOVES):
        if stepping and checker.call("seat_to_move", game.step_complete):
            checker.call("seat_to_move", game.collect_step)
            stepping = False
        seat = _to_move(checker, seed)
        if seat is None:
            return others
        _observe(checker, seat, seed)
        if seat == game.focal_seat:
            checker.call("seat_to_move", game.play_focal, checker.random_reply(agent))
            stepping = True
            continue
        others += 1
        if probe is not None and probe(seat):
            return others
        if game.to_move() == seat:
            answer_seat(game, seat, *game.seat_player(seat))
    raise checker.fail(
        "seat_to_move", f"seed {seed}: no end after {MAX_WALK_MOVES} moves through the seat API"
    )


def _to_move(checker: _Checker, seed: int) -> int | None:
    game = checker.game
    seat = checker.call("seat_to_move", game.to_move)
    seats = getattr(game, "seats", 1)
    for name, value in (("to_move()", seat), ("focal_seat", game.focal_seat)):
        if value is None and name == "to_move()":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= seats:
            raise checker.fail(
                "seat_to_move", f"seed {seed}: {name} is {value!r}; expected a seat 1..{seats}"
            )
    return seat


def _observe(checker: _Checker, seat: int, seed: int) -> SeatView:
    view = checker.call("seat_observe", checker.game.observe, seat)
    where = f"seed {seed}: observe({seat})"
    if not isinstance(view, SeatView):
        raise checker.fail("seat_observe", f"{where} returned {type(view).__name__}, expected SeatView")
    if view.seat != seat or not isinstance(view.text, str) or not view.text.strip():
        raise checker.fail("seat_observe", f"{where} has seat={view.seat!r} and text {view.text!r:.60}")
    if not isinstance(view.state, dict):
        raise checker.fail("seat_observe", f"{where}: state is {type(view.state).__name__}, expected dict")
    if view.legal is not None and not (
        isinstance(view.legal, list) and all(isinstance(a, str) for a in view.legal)
    ):
        raise checker.fail(
            "seat_observe", f"{where}: legal={view.legal!r:.60} is neither None nor a list of str"
        )
    return view


def _snapshot(checker: _Checker, seat: int) -> dict[str, Any]:
    """Everything a rejected reply must leave as it was."""
    game = checker.game
    view, focal = game.observe(seat), game.observe(game.focal_seat)
    return {
        "to_move()": game.to_move(),
        "turns_used": game.turns_used,
        f"observe({seat})": (view.text, view.state, view.legal),
        "the focal seat's view": (focal.text, focal.state, focal.legal),
        "game_info()": checker.state_view(game.game_info()),
        "the random generator": game.rng.getstate(),
    }


def _probe_rejection(checker: _Checker, seat: int, counts: dict[str, int]) -> bool:
    """Send junk for `seat`; a rejected reply must change nothing."""
    for junk in OTHER_SEAT_JUNK:
        before = _snapshot(checker, seat)
        outcome = checker.call("rejected_play_other", checker.game.play_other, seat, junk)
        if not isinstance(outcome, Outcome):
            raise checker.fail("rejected_play_other", f"play_other() returned {type(outcome).__name__}")
        if outcome.valid:
            return False  # accepted: the episode goes on from the new state
        after = _snapshot(checker, seat)
        changed = [name for name in before if before[name] != after[name]]
        if changed:
            raise checker.fail(
                "rejected_play_other", f"seat {seat}'s rejected reply {junk!r} changed {', '.join(changed)}"
            )
        counts["rejected"] += 1
    return False


def _probe_forfeit(checker: _Checker, seat: int) -> bool:
    """Forfeit `seat`: the episode must end at once, terminated and flagged `opponent_failed`."""
    game = checker.game
    checker.call("forfeit", game.forfeit, seat)
    if game.to_move() is not None or not game.step_complete():
        raise checker.fail("forfeit", f"after forfeit({seat}) seat {game.to_move()!r} is still to move")
    _, _, terminated, truncated, info = checker.call("forfeit", game.collect_step)
    if not terminated or truncated or info.get("opponent_failed") is not True:
        raise checker.fail(
            "forfeit",
            f"forfeit({seat}) gave terminated={terminated}, truncated={truncated}, "
            f"opponent_failed={info.get('opponent_failed')!r}; expected True, False, True",
        )
    if info.get("end_reason") != "opponent_failed":
        raise checker.fail("forfeit", f"forfeit({seat}) gave end_reason={info.get('end_reason')!r}")
    return True


# ------------------------------------------------------------------------------------------- the two views
class _StepRecorder(FreshRecorder):
    """A fresh-prompt recorder that also keeps each step's result, to compare with the reset/step episode."""

    def __init__(self) -> None:
        super().__init__(None, ChatSettings(system_prompt=None, instruction=""), EpisodeLog(seed=0))
        self.opening: tuple[str, dict[str, Any]] | None = None
        self.results: list[tuple[str, float, bool, bool, dict[str, Any]]] = []
        self.unplayed = False

    def open(self, observation: str, info: dict[str, Any], actions_left: int) -> bool:
        self.opening = (observation, info)
        return super().open(observation, info, actions_left)

    def step(self, result: tuple[str, float, bool, bool, dict[str, Any]], actions_left: int) -> bool:
        self.results.append(result)
        return super().step(result, actions_left)

    def end_unplayed(self, info: dict[str, Any]) -> None:
        self.opening, self.unplayed = ("", info), True
        super().end_unplayed(info)


def check_driver_matches_step(checker: _Checker, traces: list[_Trace], seed: int) -> None:
    """Drive the first episodes' seeds with the same random focal player; each must equal its reset/step one."""
    for i, trace in enumerate(traces[:DRIVER_EPISODES]):
        agent = agent_for(seed, i)
        recorder = _StepRecorder()
        episode = Episode(checker.game, trace.seed, recorder, index=i)
        checker.call(
            "driver_matches_step", drive, [episode], TextSeat(lambda g, o, a=agent: checker.random_reply(a))
        )
        _compare_views(checker, trace, recorder)
    checker.passed("driver_matches_step")


def _compare_views(checker: _Checker, trace: _Trace, recorder: _StepRecorder) -> None:
    where = f"seed {trace.seed}"
    if recorder.unplayed:  # another seat forfeited first: reset/step ends at its first step, unread
        if (
            trace.info.get("opponent_failed")
            and len(trace.steps) == 1
            and trace.steps[0].info["opponent_failed"]
        ):
            return
        raise checker.fail(
            "driver_matches_step", f"{where}: the driver ended before the focal seat's first turn"
        )
    assert recorder.opening is not None
    if recorder.opening != (trace.obs, trace.info):
        raise checker.fail(
            "driver_matches_step",
            f"{where}: the opening differs: {_what_differs(recorder.opening, (trace.obs, trace.info))}",
        )
    if recorder.log.replies != [s.reply for s in trace.steps]:
        raise checker.fail(
            "driver_matches_step", f"{where}: the random player's replies differ (the states did)"
        )
    for k, (got, step) in enumerate(zip(recorder.results, trace.steps)):  # noqa: B905 - lengths checked by replies
        want = (step.obs, step.reward, step.terminated, step.truncated, step.info)
        if got != want:
            raise checker.fail("driver_matches_step", f"{where}, step {k + 1}: {_what_differs(got, want)}")


def _what_differs(got: tuple, want: tuple) -> str:
    names = (
        ("observation", "reward", "terminated", "truncated", "info")
        if len(got) == 5
        else ("observation", "info")
    )
    parts = []
    for name, a, b in zip(names, got, want):  # noqa: B905 - same shape
        if a != b and name == "info":
            keys = [k for k in sorted(set(a) | set(b), key=str) if a.get(k) != b.get(k)]
            parts.append(
                "info " + ", ".join(f"{k!r}: {a.get(k)!r:.40} vs {b.get(k)!r:.40}" for k in keys[:3])
            )
        elif a != b:
            parts.append(f"{name} {a!r:.60} (driver) vs {b!r:.60} (reset/step)")
    return "; ".join(parts)
