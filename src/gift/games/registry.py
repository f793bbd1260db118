"""Versioned game ids → game classes, like Gymnasium's registry.

Entry points are "module:Class" strings so that listing the registry imports nothing. `register` adds a user's
own game; `make` builds one and rejects unknown ids and unknown options with one clear line.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from typing import Any

from gift.errors import ConfigError


@dataclass(frozen=True)
class GameSpec:
    id: str
    entry_point: str
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)

    def load(self) -> type:
        module, _, name = self.entry_point.partition(":")
        return getattr(importlib.import_module(module), name)


_SPECS: dict[str, GameSpec] = {
    spec.id: spec
    for spec in (
        GameSpec(
            "matrix-v0",
            "gift.games.matrix:MatrixGame",
            "Single-turn matrix game: pick your Nash-equilibrium action from a payoff table.",
        ),
        GameSpec(
            "tictactoe-v0",
            "gift.games.tictactoe:TicTacToe",
            "Tic-tac-toe on a 3x3 board against a scripted, LLM or self-play opponent (5 moves).",
        ),
        GameSpec(
            "spy-v0",
            "gift.games.spy:WhosTheSpy",
            "Who's the Spy: 4 players, one holds a different word; describe twice, then vote.",
        ),
        GameSpec(
            "math-v0",
            "gift.games.math:MathProblem",
            "A verifiable math problem (built-in generator or MATH-style file), graded by math-verify.",
        ),
        GameSpec(
            "nested-v0",
            "gift.compose:NestedGame",
            "Several games played in order in one trajectory, rewarded jointly (GIFT nested training).",
        ),
    )
}


def register(spec: GameSpec) -> None:
    """Add a game (e.g. your own) under a new versioned id."""
    if spec.id in _SPECS:
        raise ConfigError(f"game id {spec.id!r} is already registered")
    _SPECS[spec.id] = spec


def game_specs() -> list[GameSpec]:
    """Every registered game, in registration order."""
    return list(_SPECS.values())


def spec(game_id: str) -> GameSpec:
    if game_id not in _SPECS:
        raise ConfigError(f"unknown game {game_id!r}; registered games: {', '.join(_SPECS)}")
    return _SPECS[game_id]


def make(game_id: str, **options: Any):
    """Build the game registered as `game_id` with `options` (its constructor's keyword arguments)."""
    s = spec(game_id)
    cls = s.load()
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    allowed = [n for n, p in params.items() if n != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD]
    unknown = [k for k in options if k not in allowed]
    if unknown and not takes_any:
        raise ConfigError(
            f"unknown option {unknown[0]!r} for {game_id}; allowed options: {', '.join(allowed) or '(none)'}"
        )
    return cls(**{**s.defaults, **options})
