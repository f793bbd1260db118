"""One player interface for the seats a game's focal player does not hold: bots, LLM endpoints, the policy itself.

A player answers an `OpponentRequest` that carries both views of its seat: `prompt`, the whole text an LLM
reads (composed once by `gift.prompts`), and `state`, the structured dict scripted bots read (each game documents
its keys). The reply is text; the game validates it (`TextGame.play_other`). `SeatTurn` is the one retry policy:
a transport error (`OpponentError`) or a rejected reply is retried with feedback, and after `tries` attempts the
seat forfeits — the episode then ends with `info["opponent_failed"] = True` instead of being scored.
`answer_seat` runs it synchronously (the single-agent view); `gift.rollout.driver` runs the same `SeatTurn`
with replies that arrive concurrently.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_TRIES = 3
"""Attempts an opponent gets to produce a legal move (the paper's TicTacToe environment: `max_env_try=3`)."""


class OpponentError(RuntimeError):
    """The opponent could not answer at all (HTTP error, timeout, refused connection, empty reply)."""


@dataclass
class OpponentRequest:
    game: str
    seat: int
    """1-based player number of the opponent being asked."""
    prompt: str
    """Complete text for an LLM opponent: rules, state from this seat's view, and what to answer."""
    state: dict[str, Any]
    """Structured view for scripted bots; keys are game-specific and documented by the game."""
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    """The episode's random stream, so scripted choices are reproducible under a seed."""
    attempt: int = 0
    feedback: str = ""
    """Why the previous attempt was rejected (empty on the first attempt)."""


@dataclass
class OpponentStats:
    calls: int = 0
    errors: int = 0
    """Calls that raised `OpponentError` (transport/API failure)."""
    invalid: int = 0
    """Replies the game rejected as illegal or unreadable."""
    forfeits: int = 0
    """Moves given up after every retry failed (each ends an episode with opponent_failed)."""
    latency_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **deltas: float) -> None:
        """Add to counters; games may step in parallel threads (self-play batching, API opponents)."""
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def __getstate__(self) -> dict[str, float]:
        return self.as_dict()  # a lock does not pickle (opponents travel to worker processes)

    def __setstate__(self, state: dict[str, float]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}


class Opponent:
    """Base class: implement `act`. Scripted bots ignore `prompt`; LLM opponents ignore `state`."""

    name = "opponent"

    def __init__(self) -> None:
        self.stats = OpponentStats()

    def act(self, request: OpponentRequest) -> str:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class SeatTurn:
    """One seat's move under the retry policy: up to `tries` attempts, each after feedback on the last one."""

    def __init__(self, player: Opponent, tries: int = DEFAULT_TRIES) -> None:
        self.player = player
        self.tries = int(tries)
        self.attempt = 0
        self.feedback = ""
        self.started = 0.0

    def request(self, game: Any, seat: int) -> OpponentRequest:
        """The request of the next attempt; its prompt holds the feedback and the instruction exactly once."""
        from gift.prompts import opponent_prompt

        view = game.observe(seat)
        self.player.stats.add(calls=1)
        self.started = time.perf_counter()
        return OpponentRequest(
            game=view.game,
            seat=seat,
            prompt=opponent_prompt(view.text, self.feedback),
            state=view.state,
            rng=game.rng,
            attempt=self.attempt,
            feedback=self.feedback,
        )

    def answered(self, seconds: float | None = None) -> None:
        """The attempt's reply arrived (accepted or not): count its latency (`seconds` when measured apart)."""
        self.player.stats.add(latency_s=time.perf_counter() - self.started if seconds is None else seconds)

    def rejected(self, reply: str, why: str) -> bool:
        """The game refused `reply`; True when another attempt is left."""
        from gift.games.protocol import excerpt
        from gift.prompts import rejection_feedback

        self.player.stats.add(invalid=1)
        return self._next(rejection_feedback(why, repr(excerpt(reply))))

    def failed(self, err: BaseException) -> bool:
        """The player could not answer at all; True when another attempt is left."""
        self.player.stats.add(errors=1)
        return self._next(f"The previous request failed ({err.__class__.__name__}).")

    def _next(self, feedback: str) -> bool:
        self.attempt += 1
        self.feedback = feedback
        if self.attempt >= self.tries:
            self.player.stats.add(forfeits=1)
            return False
        return True


def _ask(
    turn: SeatTurn, make_request: Callable[[], OpponentRequest], judge: Callable[[str], tuple[T | None, str]]
) -> T | None:
    """Attempts until `judge(reply)` returns a value (not None); None once the tries are spent."""
    while True:
        request = make_request()
        try:
            reply = turn.player.act(request)
        except OpponentError as err:
            turn.answered()
            if turn.failed(err):
                continue
            return None
        turn.answered()
        value, why = judge(reply)
        if value is not None:
            return value
        if not turn.rejected(reply, why):
            return None


def answer_seat(game: Any, seat: int, player: Opponent, tries: int = DEFAULT_TRIES) -> bool:
    """Ask `player` for `seat`'s move until the game accepts one; False (and a forfeit) after `tries`."""
    if player is None:
        raise RuntimeError(f"{game.id}: seat {seat} has no player")
    turn = SeatTurn(player, tries)

    def judge(reply: str) -> tuple[bool | None, str]:
        outcome = game.play_other(seat, reply)
        return (True, "") if outcome.valid else (None, outcome.message)

    if _ask(turn, lambda: turn.request(game, seat), judge) is None:
        game.forfeit(seat)
        return False
    return True


def ask_with_retries(
    opponent: Opponent,
    make_request: Callable[[int, str], OpponentRequest],
    accept: Callable[[str], T | None],
    tries: int = DEFAULT_TRIES,
) -> T | None:
    """`SeatTurn`'s policy for a caller outside a game: `accept(reply)` is the legal action or None.

    `make_request(attempt, feedback)` builds each request (its prompt should carry the feedback).
    """
    turn = SeatTurn(opponent, tries)

    def next_request() -> OpponentRequest:
        opponent.stats.add(calls=1)
        turn.started = time.perf_counter()
        return make_request(turn.attempt, turn.feedback)

    return _ask(turn, next_request, lambda reply: (accept(reply), "It was not a legal move."))
