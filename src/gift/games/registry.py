"""Versioned game ids → game classes and their metadata, like Gymnasium's registry — open to plugins.

Entry points are "module:Class" strings so that listing the registry imports no game. A game's registration is
the one place that knows about it: its seats, its scripted bots, and how `gift eval` plays it (opponent, tries,
start options, the table column, the info keys an evaluation keeps). `gift eval`, `gift play`, `gift check-env`
and training read it from here; no game id is written anywhere else.

Three ways in:

- `register(GameSpec(...))` from your code;
- `make("my_pkg.games:guess-v0")` (or that id anywhere a game id goes: configs, `gift eval --suite`,
  `gift play`, `gift check-env`) imports `my_pkg.games`, which registers its games, then builds `guess-v0`;
- an installed package that declares an entry point in the group `gift.games` (its value a module to import,
  or a callable returning `GameSpec`s) is loaded the first time an id is not found.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import Any

from gift.errors import ConfigError

ENTRY_POINT_GROUP = "gift.games"


@dataclass(frozen=True)
class EvalSpec:
    """How `gift eval` plays a game: the paper's protocol for it (the paper's evaluation protocol)."""

    column: str
    """The results table's column, e.g. "TicTacToe"."""
    alias: str = ""
    """The short `--suite` name, e.g. "tictactoe" (default: the id without its version)."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """`make` options of the evaluation protocol, e.g. {"start": "empty", "opponent_tries": 1}."""
    opponent: Any = None
    """The default player of the other seats (a bot name or {"kind": ...}); None for one-seat games."""
    kept_info: tuple[str, ...] = ()
    """The final-info keys each evaluated episode keeps in items.jsonl."""
    in_games_suite: bool = True
    """Part of `--suite games` (math-v0 is not: it stands in for the MATH benchmark)."""


@dataclass(frozen=True)
class GameSpec:
    id: str
    entry_point: str
    description: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    seats: int = 1
    """How many players the game has; seats other than the focal one are answered by players."""
    bots: str | None = None
    """"module:NAME" of a {name: class} mapping of the game's scripted players (for `gift play`, ratings)."""
    eval: EvalSpec | None = None
    """How `gift eval` plays it; None: not an evaluation game."""

    def load(self) -> type:
        module, _, name = self.entry_point.partition(":")
        return getattr(importlib.import_module(module), name)

    def load_bots(self) -> Mapping[str, Any]:
        if self.bots is None:
            return MappingProxyType({})
        module, _, name = self.bots.partition(":")
        return getattr(importlib.import_module(module), name)

    @property
    def alias(self) -> str:
        return (self.eval.alias if self.eval and self.eval.alias else "") or self.id.rsplit("-v", 1)[0]


_BUILTIN = (
    GameSpec(
        "matrix-v0", "gift.games.matrix:MatrixGame",
        "Single-turn matrix game: pick your Nash-equilibrium action from a payoff table.",
        eval=EvalSpec("Matrix", kept_info=("matrix_game", "matrix_game_index", "sign", "role", "chosen_action",
                                           "labels", "permute_actions")),
    ),
    GameSpec(
        "matrix-balanced-v0", "gift.games.matrix:BalancedMatrixGame",
        "matrix-v0 with both players' actions shuffled per episode: no constant answer beats chance.",
        defaults={"permute_actions": True},
        eval=EvalSpec("Matrix (balanced)", alias="matrix-balanced",
                      kept_info=("matrix_game", "matrix_game_index", "sign", "role", "chosen_action", "labels",
                                 "permute_actions")),
    ),
    GameSpec(
        "tictactoe-v0", "gift.games.tictactoe:TicTacToe",
        "Tic-tac-toe on a 3x3 board against a scripted, LLM or self-play opponent (5 moves).",
        seats=2, bots="gift.games.tictactoe:BOTS",
        # A win against the perfect player is impossible, so the default evaluation bot errs half the time; the
        # paper's evaluation gives the opponent one try and starts from the empty board.
        eval=EvalSpec("TicTacToe", options={"start": "empty", "opponent_tries": 1},
                      opponent={"kind": "epsilon", "epsilon": 0.5},
                      kept_info=("seat", "winner", "moves", "opponent")),
    ),
    GameSpec(
        "spy-v0", "gift.games.spy:WhosTheSpy",
        "Who's the Spy: 4 players, one holds a different word; describe twice, then vote.",
        seats=4, bots="gift.games.spy:SPY_BOTS",
        eval=EvalSpec("Spy", opponent="bot", kept_info=("trained_role", "trained_seat", "spy_seat", "eliminated")),
    ),
    GameSpec(
        "math-v0", "gift.games.math:MathProblem",
        "A verifiable math problem (built-in generator or MATH-style file), graded by math-verify.",
        eval=EvalSpec("MATH", kept_info=("gold_answer", "answer", "problem_id"), in_games_suite=False),
    ),
    GameSpec(
        "nested-v0", "gift.games.nested:NestedGame",
        "Several games played in order in one trajectory, rewarded jointly (GIFT nested training).",
    ),
)  # fmt: skip


class Registry:
    """The registered games; plugins are imported on demand."""

    def __init__(self, specs: tuple[GameSpec, ...] = ()) -> None:
        self._specs: dict[str, GameSpec] = {s.id: s for s in specs}
        self._entry_points_loaded = False

    def register(self, spec: GameSpec) -> None:
        known = self._specs.get(spec.id)
        if known is not None and known != spec:
            raise ConfigError(f"game id {spec.id!r} is already registered")
        self._specs[spec.id] = spec

    def specs(self) -> list[GameSpec]:
        self._load_entry_points()
        return list(self._specs.values())

    def spec(self, game_id: str) -> GameSpec:
        if not isinstance(game_id, str) or not game_id:
            raise ConfigError(f"game id {game_id!r} must be a non-empty string")
        module, sep, name = game_id.rpartition(":")
        if sep:
            self._import_plugin(module, game_id)
            game_id = name
        if game_id not in self._specs:
            self._load_entry_points()
        if game_id not in self._specs:
            raise ConfigError(
                f"unknown game {game_id!r}; registered games: {', '.join(self._specs)} "
                "(a game of your own: MODULE:ID, e.g. my_pkg.games:guess-v0)"
            )
        return self._specs[game_id]

    def _import_plugin(self, module: str, game_id: str) -> None:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"game {game_id!r}: cannot import {module!r} ({err})") from None

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for point in entry_points(group=ENTRY_POINT_GROUP):
            loaded = point.load()
            if callable(loaded) and not inspect.ismodule(loaded):
                for spec in loaded():
                    self.register(spec)


REGISTRY = Registry(_BUILTIN)
"""The process's registry (games register once, at import; nothing else changes it)."""


def register(spec: GameSpec) -> None:
    """Add a game (e.g. your own) under a new versioned id."""
    REGISTRY.register(spec)


def game_specs() -> list[GameSpec]:
    """Every registered game, in registration order (installed plugins included)."""
    return REGISTRY.specs()


def spec(game_id: str) -> GameSpec:
    """The registration of `game_id` ("id" or "module:id")."""
    return REGISTRY.spec(game_id)


def eval_specs() -> list[GameSpec]:
    """The games `gift eval` knows how to play, in registration order."""
    return [s for s in game_specs() if s.eval is not None]


def make(game_id: str, **options: Any):
    """Build the game registered as `game_id` ("id" or "module:id") with `options` (constructor keywords)."""
    s = spec(game_id)
    cls = s.load()
    params = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    allowed = [n for n, p in params.items() if n != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD]
    unknown = [k for k in options if k not in allowed]
    if unknown and not takes_any:
        raise ConfigError(
            f"unknown option {unknown[0]!r} for {s.id}; allowed options: {', '.join(allowed) or '(none)'}"
        )
    return cls(**{**s.defaults, **options})
