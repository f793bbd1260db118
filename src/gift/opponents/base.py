"""One opponent interface for every multi-player game: scripted bots, LLM endpoints and the policy itself.

A game asks its opponent for a move with an `OpponentRequest` that carries both views of the seat: `prompt`, the
full text an LLM would answer, and `state`, a structured dict scripted bots read (each game documents its keys).
The reply is text; the game parses and validates it like a model reply. `ask_with_retries` is the one retry
policy: a transport error (`OpponentError`) or a rejected reply is retried with feedback, and after `tries`
attempts the opponent forfeits — the game then ends with `info["opponent_failed"] = True` instead of scoring it.
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
"""Attempts an opponent gets to produce a legal move (paper-notes §3.2: `max_env_try=3`)."""


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


def ask_with_retries(
    opponent: Opponent,
    make_request: Callable[[int, str], OpponentRequest],
    accept: Callable[[str], T | None],
    tries: int = DEFAULT_TRIES,
) -> T | None:
    """Ask up to `tries` times; return the first accepted action, or None when the opponent forfeits.

    `make_request(attempt, feedback)` builds the request; `accept(reply)` returns the parsed legal action or
    None. Every call, error, rejection, forfeit and its latency is counted in `opponent.stats`.
    """
    feedback = ""
    for attempt in range(tries):
        request = make_request(attempt, feedback)
        opponent.stats.add(calls=1)
        start = time.perf_counter()
        try:
            reply = opponent.act(request)
        except OpponentError as err:
            opponent.stats.add(errors=1)
            feedback = f"The previous request failed ({err.__class__.__name__})."
            continue
        finally:
            opponent.stats.add(latency_s=time.perf_counter() - start)
        action = accept(reply)
        if action is not None:
            return action
        opponent.stats.add(invalid=1)
        shown = reply if len(reply) <= 200 else reply[:200] + "…"
        feedback = f"Your previous reply was not a legal move: {shown!r}"
    opponent.stats.add(forfeits=1)
    return None
