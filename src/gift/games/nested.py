"""Nested games (the paper's nested training): several games played in a row in one trajectory, with one budget and a joint reward.

    game = make("nested-v0", games=["math-v0", "matrix-v0", "tictactoe-v0"])   # or games="F+I2"
    obs, info = game.reset(seed=7)

`NestedGame` is a sequencer over its sub-games' seat API: the sub-game being played answers `to_move`,
`observe` and the replies; the sequencer only moves on when one ends and keeps the books. Every sub-game parses
the reply itself, so format and invalid-move penalties reach the trajectory unchanged. Sub-game outcomes stay
hidden until the end: a boundary between sub-games returns only that step's penalties, and the last sub-game's
end returns the combinator of all terminal rewards (the paper uses the mean). One turn budget is shared by the
whole composite; running out of it scores the trajectory 0 plus its penalties.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from gift.errors import ConfigError, check_choice
from gift.games.base import Outcome, SeatView, TextGame
from gift.games.registry import make

# ------------------------------------------------------------------------------------------- reward combinators


def _mean(rewards: Sequence[float], successes: Sequence[bool]) -> float:
    return sum(rewards) / len(rewards)


def _all(rewards: Sequence[float], successes: Sequence[bool]) -> float:
    return 1.0 if all(successes) else 0.0


def _product(rewards: Sequence[float], successes: Sequence[bool]) -> float:
    return float(math.prod(rewards))


def _min(rewards: Sequence[float], successes: Sequence[bool]) -> float:
    return float(min(rewards))


COMBINATORS: dict[str, Callable[[Sequence[float], Sequence[bool]], float]] = {
    "mean": _mean,  # the paper's soft AND: average sub-game reward
    "all": _all,  # strict AND: 1 only when every sub-game succeeded
    "product": _product,
    "min": _min,
}
ORDERS = ("fixed", "shuffled")

PRESETS: dict[str, tuple[str, ...]] = {
    "F+I1": ("math-v0", "matrix-v0"),
    "F+I2": ("math-v0", "matrix-v0", "tictactoe-v0"),
    "F+I3": ("math-v0", "matrix-v0", "tictactoe-v0", "spy-v0"),
    "I2": ("matrix-v0", "tictactoe-v0"),
}
"""The paper's task sets (the paper's task settings), in the sub-game order it uses for nested training."""


def combine(combinator: str, rewards: Sequence[float], successes: Sequence[bool]) -> float:
    """The composite reward of a finished nested trajectory from its sub-games' terminal rewards."""
    check_choice("combinator", combinator, COMBINATORS)
    if not rewards or len(rewards) != len(successes):
        raise ValueError("combine() needs one reward and one success flag per sub-game")
    return COMBINATORS[combinator](rewards, successes)


def _normalise_entry(entry: Any, position: int) -> tuple[str, dict[str, Any]]:
    """Accept "id", {"id": id, **options} or (id, options) and return (id, options)."""
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, Mapping):
        if "id" not in entry:
            raise ConfigError(f"nested-v0: games[{position}]={dict(entry)!r} needs an 'id' key")
        options = {k: v for k, v in entry.items() if k != "id"}
        return str(entry["id"]), options
    if isinstance(entry, tuple | list) and len(entry) == 2 and isinstance(entry[0], str):
        if not isinstance(entry[1], Mapping):
            raise ConfigError(f"nested-v0: games[{position}] options must be a mapping, got {entry[1]!r}")
        return entry[0], dict(entry[1])
    raise ConfigError(
        f"nested-v0: games[{position}]={entry!r}; use a game id, {{'id': ..., **options}} or (id, options)"
    )


@dataclass
class SubgameRecord:
    """How one sub-game of a nested trajectory went (one entry of info["subgames"])."""

    game: str
    reward: float | None = None
    """Terminal reward; None while unfinished or when the composite ran out of turns first."""
    success: bool = False
    turns: int = 0
    penalty: float = 0.0
    end_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "game": self.game,
            "reward": self.reward,
            "success": self.success,
            "turns": self.turns,
            "penalty": self.penalty,
            "end_reason": self.end_reason,
        }


def _resolve_games(games: Sequence[Any] | str | None) -> Sequence[Any]:
    if isinstance(games, str):
        if games not in PRESETS:
            raise ConfigError(
                f"nested-v0: games={games!r} is not a preset; use a list of game ids or one of: "
                f"{', '.join(PRESETS)}"
            )
        return PRESETS[games]
    if games is None or isinstance(games, Mapping) or len(games) < 1:
        raise ConfigError(
            f"nested-v0: games={games!r}; give a non-empty list of game ids or a preset name "
            f"({', '.join(PRESETS)})"
        )
    return games


class NestedGame(TextGame):
    """Several games played in sequence in one trajectory with one shared turn budget and a joint reward.

    `games` is a list of game ids, {"id": ..., **options} dicts or (id, options) pairs, or a preset name
    ("F+I1", "F+I2", "F+I3", "I2"). `max_turns` defaults to the sum of the sub-games' own budgets.
    """

    id = "nested-v0"
    default_max_turns = 1
    accounting_info_keys: ClassVar[tuple[str, ...]] = ("subgames", "subgame_info")
    """Info keys holding per-sub-game turn/penalty bookkeeping (they change even on an unread reply)."""

    def __init__(
        self,
        games: Sequence[Any] | str | None = None,
        combinator: str = "mean",
        order: str = "fixed",
        max_turns: int | None = None,
        parser: str = "strict",
    ) -> None:
        check_choice("nested-v0: combinator", combinator, COMBINATORS)
        check_choice("nested-v0: order", order, ORDERS)
        subgames: list[TextGame] = []
        for position, entry in enumerate(_resolve_games(games)):
            game_id, options = _normalise_entry(entry, position)
            sub = make(game_id, **options)
            if not isinstance(sub, TextGame):
                raise ConfigError(f"nested-v0: {game_id!r} is not a TextGame and cannot be nested")
            if "parser" not in options:
                sub.parser = parser
            subgames.append(sub)
        own_budget = sum(sub.max_turns for sub in subgames)
        super().__init__(max_turns=own_budget if max_turns is None else max_turns, parser=parser)
        self.games: list[TextGame] = subgames
        self.seats = max(sub.seats for sub in subgames)  # type: ignore[misc]
        """Seats are the sub-games' own: the current one says which is to move."""
        self.combinator = combinator
        self.order = order
        self.play_order: list[int] = list(range(len(subgames)))
        self.index = 0
        self.records: list[SubgameRecord] = []
        self.truncated_early = False
        self._done_turns = 0
        """Turns used by the sub-games already finished."""
        self._truncated = False
        self._obs: str | None = None

    @property
    def current(self) -> TextGame:
        """The sub-game being played now."""
        return self.games[self.play_order[self.index]]

    @property
    def focal_seat(self) -> int:  # type: ignore[override]
        return self.current.focal_seat if self.games else 1

    @focal_seat.setter
    def focal_seat(self, value: int) -> None:
        """The focal seat is the current sub-game's; the base class's assignment is ignored."""

    # ------------------------------------------------------------------------------------- TextGame hooks
    def _reset(self) -> None:
        self.play_order = list(range(len(self.games)))
        if self.order == "shuffled":
            self.rng.shuffle(self.play_order)
        self.index = 0
        self.truncated_early = False
        self._done_turns = 0
        self._truncated = False
        self._obs = None
        for sub in self.games:
            # The composite budget is what counts: a sub-game never truncates on its own.
            sub.max_turns = self.max_turns
            sub.begin(seed=self.seed)
        self.records = [SubgameRecord(game=self.games[i].id) for i in self.play_order]

    def render(self) -> str:
        return self.current.render()

    def legal_actions(self) -> list[str] | None:
        return self.current.legal_actions()

    def brief(self) -> str:
        return self.current.brief()

    def solution(self) -> str | None:
        told = [f"{self.games[i].id}: {text}" for i in self.play_order if (text := self.games[i].solution())]
        return "; ".join(told) or None

    def observe(self, seat: int) -> SeatView:
        return self.current.observe(seat)

    def seat_player(self, seat: int) -> tuple[Any, int]:
        return self.current.seat_player(seat)

    def game_info(self) -> dict[str, Any]:
        return {
            "subgames": [r.as_dict() for r in self.records],
            "subgame_index": self.index,
            "subgame": self.current.id,
            "combinator": self.combinator,
            "nested_truncated": self.truncated_early,
        }

    def _act(self, action: str) -> Outcome:  # pragma: no cover - replies go to the sub-games
        raise NotImplementedError("NestedGame forwards whole replies to its sub-games")

    # ------------------------------------------------------------------------------------- the seat API
    def to_move(self) -> int | None:
        if self.done or self._outcome is not None or self._truncated:
            return None
        return self.current.to_move()

    def step_complete(self) -> bool:
        return self.to_move() is None or self.current.step_complete()

    def play_focal(self, reply: str) -> None:
        if self.done:
            raise RuntimeError(f"{self.id}: a reply was played on a finished episode; call reset() first")
        if self.to_move() != self.focal_seat:
            raise RuntimeError(f"{self.id}: it is not the focal seat's turn")
        sub = self.current
        # Tie the sub-game's budget to what the composite has left, so "||"-chained actions stop in time.
        sub.max_turns = sub.turns_used + self.actions_left
        sub.play_focal(reply)
        self._settle()

    def play_other(self, seat: int, reply: str) -> Outcome:
        outcome = self.current.play_other(seat, reply)
        self._settle()
        return outcome

    def forfeit(self, seat: int) -> None:
        self.current.forfeit(seat)
        self._settle()

    def collect_step(self) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self._outcome is None and not self._truncated and self.current.step_complete():
            self._take_sub_step()
        info, reward = self._step, self._reward
        terminated, truncated = self._outcome is not None, self._truncated
        self.done = terminated or truncated
        info.update(self._budget_info(), **self.game_info())
        obs = self.current.render() if self._obs is None else self._obs
        self.last_info = info
        self._step, self._reward, self._messages = self._info(), 0.0, []
        return obs, reward, terminated, truncated, info

    # ------------------------------------------------------------------------------------- the books
    def _settle(self) -> None:
        """After any reply: a finished sub-game is booked at once, so the next one's opening can be played."""
        self.turns_used = self._done_turns + self.current.turns_used
        while self._outcome is None and not self._truncated and self.current.to_move() is None:
            if not self._take_sub_step():
                break

    def _take_sub_step(self) -> bool:
        """Collect the current sub-game's step into this step's books; True when the next sub-game began."""
        sub, record = self.current, self.records[self.index]
        obs, sub_reward, sub_terminated, sub_truncated, sub_info = sub.collect_step()
        self.turns_used = self._done_turns + sub.turns_used
        terminal = sub_info.get("terminal_reward") if sub_terminated else None
        penalty = float(sub_reward) - (float(terminal) if terminal is not None else 0.0)
        record.turns = sub.turns_used
        record.penalty += penalty
        self._reward += penalty
        info = self._step
        info.update(
            penalty=info["penalty"] + penalty,
            format_error=info["format_error"] or bool(sub_info.get("format_error", False)),
            invalid_actions=info["invalid_actions"] + int(sub_info.get("invalid_actions", 0)),
            subgame_info=sub_info,
        )
        self._obs = obs
        began_next = False
        if sub_terminated and sub_info.get("opponent_failed"):
            record.end_reason = "opponent_failed"
            self._end(Outcome(terminated=True, end_reason="opponent_failed", opponent_failed=True))
        elif sub_terminated:
            record.reward = 0.0 if terminal is None else float(terminal)
            record.success = bool(sub_info.get("success", False))
            record.end_reason = sub_info.get("end_reason")
            if self.index == len(self.games) - 1:
                combined = combine(
                    self.combinator, [r.reward or 0.0 for r in self.records], [r.success for r in self.records]
                )
                success = all(r.success for r in self.records)
                self._end(Outcome(terminated=True, reward=combined, success=success, end_reason="completed"))
            else:
                self._done_turns += sub.turns_used
                self.index += 1
                began_next = True
                self._obs = None  # the next sub-game's first observation, once its opening is played
        if self._outcome is None and (sub_truncated or self.actions_left <= 0):
            self.truncated_early = True
            self._truncated = True
            if record.end_reason is None:
                record.end_reason = "out_of_turns"
            info.update(success=False, end_reason="out_of_turns", terminal_reward=0.0)
        return began_next

    def _end(self, outcome: Outcome) -> None:
        self._outcome = outcome
        self._reward += outcome.reward
        self._step.update(
            success=outcome.success,
            end_reason=outcome.end_reason,
            opponent_failed=outcome.opponent_failed,
            terminal_reward=outcome.reward,
        )
