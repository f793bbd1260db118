"""`TextGame`: a Gymnasium-shaped environment whose observations and actions are text.

    obs, info = game.reset(seed=0)
    obs, reward, terminated, truncated, info = game.step(model_reply)

`step` takes the model's whole reply. The base class parses it with the answer protocol, charges the format
penalty for an unreadable reply (the game is not stepped), splits the answer into actions where the game allows
several per turn, enforces the turn budget and fills the common `info` keys. A game implements only `_reset`,
`_act` (one action) and `render`; everything random draws from `self.rng`, seeded by `reset(seed)`, so a seed
fixes the start state, the prompt layout and the scripted opponents' choices.

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
    opponent_failed an opponent produced no legal move after its retries; drop this episode from training
    terminal_reward the game's outcome reward (without penalties), set when the episode terminates
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, ClassVar

from gift.errors import ConfigError, check_choice
from gift.games.protocol import FORMAT_PENALTY, PARSERS, parse_reply, split_actions

FORMAT_ERROR_MESSAGE = (
    "Your previous reply could not be read. End your reply with "
    "<think> your reasoning </think> <answer> your answer </answer>."
)


@dataclass
class Outcome:
    """What one action did. Games return this from `_act`."""

    valid: bool = True
    terminated: bool = False
    reward: float = 0.0
    """Terminal reward (win 1, draw 0.5, loss 0 …); only read when `terminated`."""
    success: bool = False
    penalty: float = 0.0
    """Charged now, whether or not the episode ends (e.g. -0.1 for an illegal move)."""
    end_reason: str | None = None
    message: str = ""
    """Feedback shown before the next observation (e.g. why a move was rejected)."""
    opponent_failed: bool = False
    info: dict[str, Any] = field(default_factory=dict)


class TextGame:
    """Base class of every game. Subclasses set `id`, `default_max_turns` and implement the hooks."""

    id: ClassVar[str] = "text-game"
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
        self.last_info: dict[str, Any] = {}

    # ----------------------------------------------------------------- hooks for subclasses
    def _reset(self) -> None:
        """Draw a new start state from `self.rng`."""
        raise NotImplementedError

    def _act(self, action: str) -> Outcome:
        """Apply one action of the trained player (and any opponent replies that follow)."""
        raise NotImplementedError

    def render(self) -> str:
        """The trained player's current observation (no format instruction; the rollout adds that)."""
        raise NotImplementedError

    def legal_actions(self) -> list[str] | None:
        """Legal answers now, when they can be listed (None for open-ended answers such as a description)."""
        return None

    def game_info(self) -> dict[str, Any]:
        """Game-specific entries merged into `info`."""
        return {}

    # ----------------------------------------------------------------- the API
    @property
    def actions_left(self) -> int:
        return self.max_turns - self.turns_used

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[str, dict[str, Any]]:
        if seed is None:
            seed = random.SystemRandom().randrange(2**31)
        self.seed = int(seed)
        self.rng = random.Random(self.seed)
        self.turns_used = 0
        self.done = False
        self._reset()
        info = self._info()
        self.last_info = info
        return self.render(), info

    def step(self, reply: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self.done:
            raise RuntimeError(f"{self.id}: step() called on a finished episode; call reset() first")
        info = self._info()
        parsed = parse_reply(reply, self.parser)
        reward = 0.0
        terminated = False
        messages: list[str] = []
        if parsed is None:
            self.turns_used += 1
            reward += FORMAT_PENALTY
            info["format_error"] = True
            info["penalty"] = FORMAT_PENALTY
            messages.append(FORMAT_ERROR_MESSAGE)
        else:
            actions = split_actions(parsed.answer, self.max_actions_per_turn)
            executed = 0
            for action in actions[: self.actions_left]:
                outcome = self._act(action)
                executed += 1
                reward += outcome.penalty
                info["penalty"] += outcome.penalty
                info["invalid_actions"] += 0 if outcome.valid else 1
                info.update(outcome.info)
                if outcome.message:
                    messages.append(outcome.message)
                if outcome.terminated:
                    terminated = True
                    reward += outcome.reward
                    info.update(
                        success=outcome.success,
                        end_reason=outcome.end_reason,
                        opponent_failed=outcome.opponent_failed,
                        terminal_reward=outcome.reward,
                    )
                    break
            self.turns_used += max(1, executed)
        truncated = not terminated and self.turns_used >= self.max_turns
        if truncated:
            info.update(success=False, end_reason="out_of_turns", terminal_reward=0.0)
        self.done = terminated or truncated
        info.update(self._budget_info(), **self.game_info())
        obs = self.render()
        if messages and not self.done:
            obs = "\n".join(messages) + "\n\n" + obs
        self.last_info = info
        return obs, reward, terminated, truncated, info

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
