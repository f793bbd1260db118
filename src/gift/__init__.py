"""gift-rl: reinforcement learning of language models on text games (GIFT, arXiv 2601.05633)."""

from gift.games import game_specs, make, register

__version__ = "0.1.0"
__all__ = ["__version__", "game_specs", "make", "register"]
