"""The game registry: versioned ids, `make` with option checking, `register` for users' own games."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gift.compose import NestedGame
from gift.errors import ConfigError
from gift.games import GameSpec, Outcome, TextGame, game_specs, make, register, registry, spec

SHIPPED = ["matrix-v0", "matrix-balanced-v0", "tictactoe-v0", "spy-v0", "math-v0", "nested-v0"]


class Sized(TextGame):
    id = "registry-sized-v0"

    def __init__(self, size: int = 3, max_turns: int | None = None, parser: str = "strict") -> None:
        super().__init__(max_turns=max_turns, parser=parser)
        self.size = size

    def _reset(self) -> None:
        pass

    def _act(self, action: str) -> Outcome:
        return Outcome(terminated=True)

    def render(self) -> str:
        return f"size {self.size}"


class Open(Sized):
    id = "registry-open-v0"

    def __init__(self, **options) -> None:
        super().__init__()
        self.options = options


TOY_SPECS = [
    GameSpec("registry-sized-v0", f"{__name__}:Sized", "a toy with a size option"),
    GameSpec("registry-big-v0", f"{__name__}:Sized", "the same toy, bigger", defaults={"size": 9}),
    GameSpec("registry-open-v0", f"{__name__}:Open", "a toy taking any option"),
]


@pytest.fixture(autouse=True, scope="module")
def toy_games():
    """Register this module's toy games for its tests only, leaving the shared registry as it was."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry.REGISTRY, "_specs", dict(registry.REGISTRY._specs))
        for game_spec in TOY_SPECS:
            register(game_spec)
        yield


def test_shipped_ids_come_first_with_descriptions_and_entry_points():
    specs = game_specs()
    assert [s.id for s in specs[: len(SHIPPED)]] == SHIPPED
    for s in specs[: len(SHIPPED)]:
        module, _, name = s.entry_point.partition(":")
        assert module.startswith("gift.") and name and s.description.endswith(".")
    assert spec("nested-v0").load() is NestedGame


@pytest.mark.parametrize("lookup", [spec, make])
def test_unknown_id_names_it_and_lists_every_registered_id(lookup):
    with pytest.raises(ConfigError) as err:
        lookup("tic-tac-toe")
    message = str(err.value)
    assert "unknown game 'tic-tac-toe'" in message and "\n" not in message
    for game_id in [*SHIPPED, "registry-sized-v0"]:
        assert game_id in message


def test_unknown_option_lists_the_allowed_options():
    with pytest.raises(ConfigError) as err:
        make("registry-sized-v0", colour="red")
    assert str(err.value) == (
        "unknown option 'colour' for registry-sized-v0; allowed options: size, max_turns, parser"
    )


def test_make_applies_defaults_then_options():
    assert make("registry-sized-v0").size == 3
    assert make("registry-big-v0").size == 9
    assert make("registry-big-v0", size=4, max_turns=2).size == 4
    assert make("registry-sized-v0", max_turns=2).max_turns == 2
    assert make("registry-open-v0", anything=1).options == {"anything": 1}


def test_a_bad_option_value_is_a_config_error_from_the_game():
    with pytest.raises(ConfigError, match="max_turns"):
        make("registry-sized-v0", max_turns=0)


def test_registering_a_duplicate_id_fails_and_keeps_the_original():
    before = spec("registry-sized-v0")
    with pytest.raises(ConfigError, match="'registry-sized-v0' is already registered"):
        register(GameSpec("registry-sized-v0", f"{__name__}:Open", "an impostor"))
    with pytest.raises(ConfigError, match="already registered"):
        register(GameSpec("matrix-v0", f"{__name__}:Open", "an impostor"))
    assert spec("registry-sized-v0") is before


def test_listing_the_registry_imports_no_game_module():
    code = (
        "import sys; from gift.games import game_specs; game_specs(); "
        "print(sorted(m for m in sys.modules if m.startswith('gift.games.') and m not in "
        "('gift.games.base', 'gift.games.protocol', 'gift.games.registry')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
