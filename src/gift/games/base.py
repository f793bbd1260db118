"""`TextGame`: the rules of a text game for every seat, plus a Gymnasium-shaped view for one seat.

A game models all of its seats and calls no player itself. One seat is the *focal* seat: the one whose
trajectory is recorded and trained (in TicTacToe and Who's the Spy it is drawn at reset). Whoever answers a
seat — the policy, a scripted bot, an endpoint, a person — lives outside the game; `gift.rollout.driver` plays
many games at once that way:

    game.begin(seed=0)
    while (seat := game.to_move()) is not None:
        if seat == game.focal_seat:
            game.play_focal(reply)                  # parsed with the answer protocol, penalties, budget, `||`
        else:
            view = game.observe(seat)               # text, structured state, legal actions
            outcome = game.play_other(seat, reply)  # rejected (retry with feedback) or applied
        if game.step_complete():
            obs, reward, terminated, truncated, info = game.collect_step()

The single-agent view used by other trainers and by the tests plays the other seats with the game's own
`opponent` option (a scripted bot by default):

    obs, info = game.reset(seed=0)
    obs, reward, terminated, truncated, info = game.step(model_reply)

The focal seat's reply is parsed by the answer protocol; an unreadable reply costs the format penalty and a
turn (the game is not stepped); an answer may hold several `||` actions where the game allows, each consuming a
turn, with the other seats answering in between. A single-seat game implements only `_reset`, `_act` (one
action) and `render`; a game with more seats also implements `_to_move`, `observe` and `_act_other`, and
`_other_answer` where it reads other seats' replies its own way (as a `rules="reference"` profile does).
Everything random draws from `self.rng`, seeded by `reset`/`begin`, so a seed fixes the start state, the prompt
layout and the scripted players' choices.

Common `info` keys (present after every reset and step):
    game            registry id
    seed            the episode seed
    turns_used      actions consumed from the budget so far (a format error consumes one)
    actions_left    max_turns - turns_used
    success         True only once the episode ended in success
    penalty         penalties charged by this step (format errors, invalid actions)
    format_error    this step's reply could not be parsed
    invalid_actions invalid actions in this step
    end_reason      None while running, else why it ended ("win", "loss", "draw", "correct", "wrong",
                    "out_of_turns", "opponent_failed", ...)
    opponent_failed another seat produced no legal move after its tries; drop this episode from training
    terminal_reward the game's outcome reward (without penalties), set when the episode terminates
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, ClassVar

from gift.errors import ConfigError, check_choice
from gift.games.protocol import FORMAT_PENALTY, PARSERS, answer_text, bound_reply, parse_reply, split_actions

RULE_PROFILES = ("gift", "reference")
"""A game's `rules` option: gift's own rules, or the reference implementation's where gift deliberately differs."""

NO_ANSWER_MESSAGE = "No <answer> ... </answer> block was found in your reply."

FORMAT_ERROR_MESSAGE = (
    "Your previous reply could not be read. End your reply with "
    "<think> your reasoning </think> <answer> your answer </answer>."
)


@dataclass
class Outcome:
    """What one action did. Games return this from `_act` (focal seat) and `_act_other` (other seats)."""

    valid: bool = True
    """False: the action was rejected and changed nothing but the penalty (another seat is asked again)."""
    terminated: bool = False
    reward: float = 0.0
    """The focal seat's terminal reward (win 1, draw 0.5, loss 0 …); only read when `terminated`."""
    success: bool = False
    penalty: float = 0.0
    """Charged to the focal seat now, whether or not the episode ends (e.g. -0.1 for an illegal move)."""
    end_reason: str | None = None
    message: str = ""
    """Feedback: shown to the focal seat before its next observation, or to a rejected seat on its retry."""
    opponent_failed: bool = False
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SeatView:
    """What a seat sees when it must answer: the text an LLM reads, the state a bot reads, the legal answers."""

    game: str
    seat: int
    text: str
    """The observation from this seat, with the game's own answer hint but no answer-protocol instruction
    (the transcript owner, `gift.rollout.transcript`, adds that once)."""
    state: dict[str, Any]
    legal: list[str] | None = None


class TextGame:
    """Base class of every game. Subclasses set `id`, `default_max_turns` and implement the hooks."""

    id: ClassVar[str] = "text-game"
    seats: ClassVar[int] = 1
    default_max_turns: ClassVar[int] = 1
    max_actions_per_turn: ClassVar[int] = 1
    """More than 1 lets an answer hold several `||`-separated actions (each consumes a turn of budget)."""

    def __init__(self, max_turns: int | None = None, parser: str = "strict") -> None:
        check_choice(f"{self.id}: parser", parser, PARSERS)
        if max_turns is None:
            max_turns = self.default_max_turns
        if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1:
            raise ConfigError(f"{self.id}: max_turns={max_turns!r} must be an integer >= 1")
        self.max_turns = max_turns
        self.parser = parser
        self.rng = random.Random(0)
        self.seed: int | None = None
        self.turns_used = 0
        self.done = True
        self.focal_seat = 1
        self.opponent: Any = None
        """The player of the other seats in the single-agent view (games with more seats set it)."""
        self.opponent_tries = 1
        self.last_info: dict[str, Any] = {}
        self._queue: list[str] = []
        self._step: dict[str, Any] = {}
        self._outcome: Outcome | None = None

    # ----------------------------------------------------------------- hooks for subclasses
    def _reset(self) -> None:
        """Draw a new start state from `self.rng` (and set `focal_seat` in a game with several seats)."""
        raise NotImplementedError

    def _act(self, action: str) -> Outcome:
        """Apply one action of the focal seat; never asks another seat (the caller does)."""
        raise NotImplementedError

    def render(self) -> str:
        """The focal seat's current observation (no format instruction; the transcript adds that)."""
        raise NotImplementedError

    def _to_move(self) -> int:
        """The seat that acts next while the game runs (single-seat games: always the focal seat)."""
        return self.focal_seat

    def observe(self, seat: int) -> SeatView:
        """What `seat` sees when it is to move (the focal seat's view is `render`)."""
        return SeatView(self.id, seat, self.render(), {}, self.legal_actions())

    def _act_other(self, seat: int, action: str) -> Outcome:
        """Apply another seat's answer (already taken out of its answer block): rejected or applied."""
        raise NotImplementedError(f"{self.id} has only one seat")

    def brief(self) -> str:
        """The focal seat's observation without the rules, for a person who has read them once (`gift play`)."""
        return self.render()

    def solution(self) -> str | None:
        """What the right answer was, told at the end of `gift play` (None: nothing to tell)."""
        return None

    def _other_answer(self, reply: str) -> str | None:
        """What another seat's reply answers (None: it answers nothing and is rejected); the answer block, else
        the whole text. A rules profile may read replies differently."""
        return answer_text(reply)

    # ----------------------------------------------------------------- what analyses know of a game
    oracle_name: ClassVar[str] = "perfect"
    """What `oracle_answer` plays: "perfect" (best play) or "oracle" (a player that sees hidden state)."""
    answer_in_last_reply: ClassVar[bool] = False
    """Answer-diversity metrics read a game's answer from its first reply, or (True) from its last one."""

    @classmethod
    def oracle_answer(cls, info: dict[str, Any], legal: list[str] | None, rng: random.Random) -> str | None:
        """The answer of a perfect (or oracle) player given the final info so far; None: the game has none."""
        return None

    @classmethod
    def recorded_answer(cls, info: dict[str, Any]) -> str | None:
        """The focal seat's answer as the final info records it; None: read it from the replies."""
        return None

    @classmethod
    def open_answer(cls, info: dict[str, Any]) -> str | None:
        """A trivial answer for a turn whose answers cannot be listed (trivial baselines); None: no such turn."""
        return None

    @classmethod
    def constant_answers(cls) -> list[str] | None:
        """The candidate constant answers of the trivial baselines; None: the first turn's legal actions."""
        return None

    def legal_actions(self) -> list[str] | None:
        """The focal seat's legal answers now, when they can be listed (None for open-ended answers)."""
        return None

    def game_info(self) -> dict[str, Any]:
        """Game-specific entries merged into `info`."""
        return {}

    # ----------------------------------------------------------------- the seat API
    @property
    def actions_left(self) -> int:
        return self.max_turns - self.turns_used

    def begin(self, seed: int | None = None) -> None:
        """Begin an episode. The other seats may be to move before the focal seat's first turn."""
        if seed is None:
            seed = random.SystemRandom().randrange(2**31)
        self.seed = int(seed)
        self.rng = random.Random(self.seed)
        self.turns_used = 0
        self.done = False
        self._queue = []
        self._outcome = None
        self._step = self._info()
        self._messages: list[str] = []
        self._reward = 0.0
        self._reset()
        self._step = self._info()

    def to_move(self) -> int | None:
        """The seat that must answer now, or None when the episode is over."""
        if self.done or self._outcome is not None:
            return None
        return self._to_move()

    def step_complete(self) -> bool:
        """True when the focal seat's step is over: its turn again with nothing queued, or the episode ended."""
        seat = self.to_move()
        return seat is None or (seat == self.focal_seat and not self._queue)

    def play_focal(self, reply: str) -> None:
        """The focal seat's whole reply: parse it, charge penalties, apply its first action, queue the rest."""
        if self.done:
            raise RuntimeError(f"{self.id}: a reply was played on a finished episode; call reset() first")
        if self.to_move() != self.focal_seat or self._queue:
            raise RuntimeError(f"{self.id}: it is not the focal seat's turn")
        parsed = parse_reply(reply, self.parser)
        if parsed is None:
            self.turns_used += 1
            self._reward += FORMAT_PENALTY
            self._step.update(format_error=True, penalty=self._step["penalty"] + FORMAT_PENALTY)
            self._messages.append(FORMAT_ERROR_MESSAGE)
            return
        self._queue = split_actions(parsed.answer, self.max_actions_per_turn)[: max(1, self.actions_left)]
        self._drain()

    def play_other(self, seat: int, reply: str) -> Outcome:
        """Another seat's reply. A rejected one (`valid` False) changes nothing: ask that seat again."""
        if self.to_move() != seat or seat == self.focal_seat:
            raise RuntimeError(f"{self.id}: seat {seat} is not to move")
        answer = self._other_answer(bound_reply(reply))
        rejected = Outcome(valid=False, message=NO_ANSWER_MESSAGE)
        outcome = rejected if answer is None else self._act_other(seat, answer)
        if outcome.valid:
            self._absorb(outcome)
            self._drain()
        return outcome

    def forfeit(self, seat: int) -> None:
        """`seat` gave no legal answer within its tries: the episode ends unscored (`opponent_failed`)."""
        self._absorb(
            Outcome(
                terminated=True,
                end_reason="opponent_failed",
                opponent_failed=True,
                message=f"Player {seat} could not produce a legal move; the game is called off.",
                info={"forfeited_seat": seat},
            )
        )

    def forfeit_as_loss(self, seat: int) -> None:
        """`seat` gave no legal answer: the episode ends as a loss for the focal seat, scored and kept (the
        reference rules' reading of an opponent failure) rather than dropped."""
        self._absorb(
            Outcome(
                terminated=True,
                end_reason="opponent_failed",
                message=f"Player {seat} could not produce a legal move; the game ends with no winner.",
                info={"forfeited_seat": seat},
            )
        )

    def collect_step(self) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """The focal seat's step result (Gymnasium's 5-tuple) once `step_complete()`; starts the next step."""
        info, reward, messages = self._step, self._reward, self._messages
        terminated = self._outcome is not None
        if terminated:
            out = self._outcome
            reward += out.reward
            info.update(
                success=out.success,
                end_reason=out.end_reason,
                opponent_failed=out.opponent_failed,
                terminal_reward=out.reward,
            )
        truncated = not terminated and self.turns_used >= self.max_turns
        if truncated:
            info.update(success=False, end_reason="out_of_turns", terminal_reward=0.0)
        self.done = terminated or truncated
        info.update(self._budget_info(), **self.game_info())
        obs = self.render()
        if messages and not self.done:
            obs = "\n".join(messages) + "\n\n" + obs
        self.last_info = info
        self._step, self._reward, self._messages = self._info(), 0.0, []
        return obs, reward, terminated, truncated, info

    # ----------------------------------------------------------------- the single-agent view
    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[str, dict[str, Any]]:
        """Gymnasium's reset: start, then let the other seats play (with `opponent`) up to the focal turn."""
        if options:
            raise ConfigError(f"{self.id}: reset(options=...) is not supported; pass options to make()")
        self.begin(seed)
        self._play_others()
        return self.opening()

    def opening(self) -> tuple[str, dict[str, Any]]:
        """The focal seat's first observation and info, once the seats before it have played.

        When another seat already forfeited, `info["opponent_failed"]` says so here and the first `step`
        ends the episode without reading its reply.
        """
        info = dict(self._step)
        info.update(self.game_info())  # the seats before the focal one may have changed the state
        if self._outcome is not None:
            info.update(opponent_failed=self._outcome.opponent_failed, end_reason=self._outcome.end_reason)
        self.last_info = info
        obs = self.render()
        if self._messages:
            obs = "\n".join(self._messages) + "\n\n" + obs
        return obs, dict(info)

    def step(self, reply: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Gymnasium's step: the focal seat's reply, then the other seats up to its next turn."""
        if self.done:
            raise RuntimeError(f"{self.id}: step() called on a finished episode; call reset() first")
        if self._outcome is None:
            self.play_focal(reply)
            self._play_others()
        return self.collect_step()

    def _play_others(self) -> None:
        from gift.opponents.base import answer_seat  # the one retry policy; imports no game

        while (seat := self.to_move()) is not None and seat != self.focal_seat:
            answer_seat(self, seat, *self.seat_player(seat))

    def seat_player(self, seat: int) -> tuple[Any, int]:
        """Who answers `seat` in the single-agent view (and, unless told otherwise, in the driver), and its tries."""
        return self.opponent, self.opponent_tries

    # ----------------------------------------------------------------- internals
    def _drain(self) -> None:
        """Apply queued focal actions while it is the focal seat's turn and the budget lasts."""
        while self._queue and self.to_move() == self.focal_seat:
            if self.actions_left <= 0:
                self._queue = []
                return
            outcome = self._act(self._queue.pop(0))
            self.turns_used += 1
            self._absorb(outcome)

    def _absorb(self, outcome: Outcome) -> None:
        self._reward += outcome.penalty
        self._step["penalty"] += outcome.penalty
        self._step["invalid_actions"] += 0 if outcome.valid else 1
        self._step.update(outcome.info)
        if outcome.message:
            self._messages.append(outcome.message)
        if outcome.terminated:
            self._outcome = outcome
            self._queue = []

    def _budget_info(self) -> dict[str, Any]:
        return {"turns_used": self.turns_used, "actions_left": self.actions_left}

    def _info(self) -> dict[str, Any]:
        return {
            "game": self.id,
            "seed": self.seed,
            **self._budget_info(),
            "success": False,
            "penalty": 0.0,
            "format_error": False,
            "invalid_actions": 0,
            "end_reason": None,
            "opponent_failed": False,
            "terminal_reward": None,
            **self.game_info(),
        }
