"""Text games behind one API (`TextGame`), their registry (open to plugins) and the answer protocol."""

from gift.games.base import Outcome, SeatView, TextGame
from gift.games.registry import EvalSpec, GameSpec, game_specs, make, register, spec

__all__ = ["EvalSpec", "GameSpec", "Outcome", "SeatView", "TextGame", "game_specs", "make", "register", "spec"]
