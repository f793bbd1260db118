"""`check_env` accepts well-behaved games and names the broken property of deliberately broken ones."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from gift.cli import main
from gift.compose import PRESETS, NestedGame
from gift.errors import ConfigError
from gift.games import GameSpec, Outcome, TextGame, register, registry
from gift.games.checker import COMMON_INFO_KEYS, EnvCheckError, check_env
from gift.games.protocol import parse_strict


class Guess(TextGame):
    """One turn: name the hidden digit. Digits are legal; anything else is invalid (-0.1) and costs the turn."""

    id = "checker-guess-v0"
    default_max_turns = 2

    def _reset(self) -> None:
        self.target = self.rng.randrange(10)
        self.offset = self.rng.randrange(100)

    def _act(self, action: str) -> Outcome:
        if action not in self.legal_actions():
            return Outcome(valid=False, penalty=-0.1, message="say one digit")
        hit = int(action) == self.target
        return Outcome(
            terminated=True, reward=float(hit), success=hit, end_reason="correct" if hit else "wrong"
        )

    def render(self) -> str:
        return f"Guess a digit. Hint: the digit plus {self.offset} is {self.target + self.offset}."

    def legal_actions(self) -> list[str]:
        return [str(d) for d in range(10)]


class Describe(TextGame):
    """Open-ended answers, several turns, no legal-action list: ends when the text mentions the secret word."""

    id = "checker-describe-v0"
    default_max_turns = 4
    max_actions_per_turn = 2
    WORDS = ("apple", "river", "stone", "cloud", "ember", "x")

    def _reset(self) -> None:
        self.word = self.rng.choice(self.WORDS)
        self.said: list[str] = []

    def _act(self, action: str) -> Outcome:
        if not action:
            return Outcome(valid=False, penalty=-0.1, message="say something")
        self.said.append(action)
        if action == self.word:
            return Outcome(terminated=True, reward=1.0, success=True, end_reason="win")
        return Outcome()

    def render(self) -> str:
        return (
            f"Round {len(self.said) + 1}. The secret starts with {self.word[0]!r}. Said so far: {self.said}"
        )

    def game_info(self) -> dict:
        return {"said": list(getattr(self, "said", []))}


class RawGuess(Guess):
    id = "checker-raw-v0"

    def __init__(self, max_turns: int | None = None, parser: str = "raw") -> None:
        super().__init__(max_turns=max_turns, parser=parser)


# ---------------------------------------------------------------------------------------------- broken games


class Nondeterministic(Guess):
    def _reset(self) -> None:
        super()._reset()
        self.offset = random.randrange(10**9)  # the global RNG: not fixed by the seed


class NeverEnds(Describe):
    default_max_turns = 3

    def step(self, reply: str):
        obs, reward, _, _, info = super().step(reply)
        self.done = False
        info.update(end_reason=None, success=False, terminal_reward=None)
        return obs, reward, False, False, info

    def _act(self, action: str) -> Outcome:
        return Outcome()


class OldGymStep(Guess):
    def step(self, reply: str):
        obs, reward, terminated, truncated, info = super().step(reply)
        return obs, reward, terminated or truncated, info


class TextReward(Guess):
    def step(self, reply: str):
        obs, reward, terminated, truncated, info = super().step(reply)
        return obs, str(reward), terminated, truncated, info


class ObsOnlyReset(Guess):
    def reset(self, seed=None, options=None):
        return super().reset(seed=seed)[0]


class MissingInfoKey(Guess):
    def _info(self):
        info = super()._info()
        del info["actions_left"]
        return info


class NoStepGuard(Guess):
    def step(self, reply: str):
        self.done = False
        return super().step(reply)


class ConstantStart(Guess):
    def render(self) -> str:
        return "Guess a digit."


class UntaggedAdvances(Describe):
    """Counts unreadable replies as moves: the format rule is broken."""

    def step(self, reply: str):
        if parse_strict(reply) is None:
            self.said.append("?")
        return super().step(reply)


class JunkWins(Guess):
    def _act(self, action: str) -> Outcome:
        if action not in self.legal_actions():
            return Outcome(terminated=True, reward=1.0, success=True, end_reason="win")
        return super()._act(action)


class DoubleCounted(Guess):
    def step(self, reply: str):
        obs, reward, terminated, truncated, info = super().step(reply)
        return obs, reward * 2 if terminated else reward, terminated, truncated, info


class Crashes(Guess):
    def _act(self, action: str) -> Outcome:
        if action == "":
            raise KeyError("empty")
        return super()._act(action)


TOY_SPECS = [
    GameSpec(game_id, f"{__name__}:{cls.__name__}", "toy game for the checker tests")
    for cls, game_id in ((Guess, Guess.id), (Describe, Describe.id), (JunkWins, "checker-junkwins-v0"))
]


@pytest.fixture(autouse=True, scope="module")
def toy_games():
    """Register this module's toy games for its tests only, leaving the shared registry as it was."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry.REGISTRY, "_specs", dict(registry.REGISTRY._specs))
        for game_spec in TOY_SPECS:
            register(game_spec)
        yield


# ------------------------------------------------------------------------------------------------ good games


@pytest.mark.parametrize("game", [Guess(), Describe(), Describe(max_turns=1), RawGuess(), "checker-guess-v0"])
def test_good_games_pass(game):
    report = check_env(game, episodes=12, seed=5)
    assert report.episodes == 12 and report.steps >= 12
    assert report.terminated + report.truncated == 12
    assert sum(report.end_reasons.values()) == 12
    for check in (
        "reset",
        "step_types",
        "budget",
        "determinism",
        "ends_within_budget",
        "step_after_end_raises",
    ):
        assert check in report.checks
    assert "junk_answers" in report.checks and "seeds_vary" in report.checks
    assert report.distinct_starts >= 2
    assert report.game in report.summary()


def test_raw_parser_skips_the_format_check_and_says_so():
    report = check_env(RawGuess(), episodes=4)
    assert "format_penalty" not in report.checks
    assert any("format_penalty" in s and "raw" in s for s in report.skipped)
    assert "format_penalty" in check_env(Guess(), episodes=4).checks


def test_single_episode_skips_seed_variety_explicitly():
    report = check_env(Guess(), episodes=1)
    assert "seeds_vary" not in report.checks and any("seeds_vary" in s for s in report.skipped)


def test_nested_composite_of_toys_passes():
    report = check_env(NestedGame(["checker-guess-v0", "checker-describe-v0"], order="shuffled"), episodes=10)
    assert "reward_accounting" in report.checks


# ---------------------------------------------------------------------------------------------- broken games


@pytest.mark.parametrize(
    ("game", "check", "needle"),
    [
        (Nondeterministic(), "determinism", "observation differs"),
        (NeverEnds(), "ends_within_budget", "still running after 3 steps"),
        (OldGymStep(), "step_types", "4-tuple"),
        (TextReward(), "step_types", "not a finite number"),
        (ObsOnlyReset(), "reset", "expected (str, dict)"),
        (MissingInfoKey(), "reset", "'actions_left'"),
        (NoStepGuard(), "step_after_end_raises", "did not raise"),
        (ConstantStart(), "seeds_vary", "same start"),
        (UntaggedAdvances(), "format_penalty", "changed the game state"),
        (JunkWins(), "junk_answers", "was rewarded"),
        (DoubleCounted(), "reward_accounting", "penalty + terminal_reward"),
        (Crashes(), "step_types", "raised KeyError"),
    ],
)
def test_broken_games_fail_with_a_message_naming_the_property(game, check, needle):
    with pytest.raises(EnvCheckError) as err:
        check_env(game, episodes=6)
    assert err.value.check == check
    message = str(err.value)
    assert message.startswith(f"{game.id}: check {check!r} failed:")
    assert needle in message
    assert isinstance(err.value, AssertionError)


def test_unknown_id_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown game 'nope-v0'"):
        check_env("nope-v0")


def test_common_info_keys_match_the_base_class():
    _, info = Guess().reset(seed=0)
    assert set(COMMON_INFO_KEYS) <= set(info)


# ------------------------------------------------------------------------------------------------------- CLI


def test_cli_lists_games(capsys):
    assert main(["games"]) == 0
    out = capsys.readouterr().out
    assert "nested-v0" in out and "checker-guess-v0" in out and "Several games played" in out


def test_cli_check_env_passes_and_fails(capsys):
    assert main(["check-env", "checker-guess-v0", "--episodes", "3"]) == 0
    assert "all" in capsys.readouterr().out
    assert main(["check-env", "checker-junkwins-v0", "--episodes", "3"]) == 1
    assert "FAILED checker-guess-v0: check 'junk_answers' failed" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [["check-env", "nope-v0"], ["check-env", "checker-guess-v0", "--episodes", "0"]]
)
def test_cli_user_errors_are_one_line_and_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_python_dash_m_gift_runs():
    out = subprocess.run(
        [sys.executable, "-m", "gift", "check-env", "nope-v0"], capture_output=True, text=True
    )
    assert out.returncode == 2 and "registered games" in out.stderr


# -------------------------------------------------------------------------------------------- shipped games

SHIPPED = ["matrix-v0", "tictactoe-v0", "spy-v0", "math-v0"]


@pytest.mark.parametrize("game_id", SHIPPED)
def test_every_shipped_game_passes_check_env(game_id):
    report = check_env(game_id, episodes=10)
    assert report.game == game_id and "determinism" in report.checks


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_nested_preset_passes_check_env(preset):
    report = check_env(NestedGame(games=preset), episodes=6)
    assert report.game == "nested-v0" and "reward_accounting" in report.checks
