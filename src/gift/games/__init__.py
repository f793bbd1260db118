"""Text games behind one API (`TextGame`), their registry and the answer protocol."""

from gift.games.base import Outcome, TextGame
from gift.games.registry import GameSpec, game_specs, make, register, spec

__all__ = ["GameSpec", "Outcome", "TextGame", "game_specs", "make", "register", "spec"]
