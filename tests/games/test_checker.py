"""`check_env` accepts well-behaved games and names the broken property of deliberately broken ones."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from gift.cli import main
from gift.compose import PRESETS, NestedGame
from gift.errors import ConfigError
from gift.games import GameSpec, Outcome, TextGame, game_specs, register, registry
from gift.games.base import SeatView
from gift.games.checker import COMMON_INFO_KEYS, EnvCheckError, check_env
from gift.games.protocol import parse_strict
from gift.opponents import Opponent


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


class GuessNumber(TextGame):
    """Guess the number 1..9 in three tries with higher/lower hints; the secret is drawn like a random answer."""

    id = "checker-number-v0"
    default_max_turns = 3
    DIGITS = [str(d) for d in range(1, 10)]

    def _reset(self) -> None:
        self.secret = self.rng.choice(self.DIGITS)  # the same draw a player sharing the game's seed makes
        self.hint = "no guess yet"
        self.table = self.rng.randrange(1000)

    def _act(self, action: str) -> Outcome:
        if action not in self.DIGITS:
            return Outcome(valid=False, penalty=-0.1, message="say a number from 1 to 9")
        if action == self.secret:
            return Outcome(terminated=True, reward=1.0, success=True, end_reason="correct")
        self.hint = "higher" if int(action) < int(self.secret) else "lower"
        return Outcome()

    def render(self) -> str:
        return f"Table {self.table}: guess my number from 1 to 9. Last hint: {self.hint}."

    def legal_actions(self) -> list[str]:
        return list(self.DIGITS)


class HiddenInInfo(Guess):
    """The opening screen never changes; only the hidden digit, reported in info, does."""

    def render(self) -> str:
        return "Guess the hidden digit."

    def game_info(self) -> dict:
        return {"target": getattr(self, "target", None)}


class HiddenInView(Guess):
    """The opening screen never changes; the focal seat's structured view holds the hidden digit."""

    def render(self) -> str:
        return "Guess the hidden digit."

    def observe(self, seat: int) -> SeatView:
        return SeatView(self.id, seat, self.render(), {"target": self.target}, self.legal_actions())


class RandomLegal(Opponent):
    name = "random-legal"

    def act(self, request) -> str:
        return request.rng.choice(request.state["legal"])


class Race(TextGame):
    """Two seats add 1 or 2 to a total in turn; whoever reaches the goal wins. The focal seat is drawn."""

    id = "checker-race-v0"
    seats = 2
    default_max_turns = 4

    def __init__(self, max_turns: int | None = None, parser: str = "strict") -> None:
        super().__init__(max_turns=max_turns, parser=parser)
        self.opponent, self.opponent_tries = RandomLegal(), 2
        self.goal, self.total, self.mover = 5, 0, 1

    def _reset(self) -> None:
        self.goal, self.total, self.mover = self.rng.randint(5, 7), 0, 1
        self.focal_seat = self.rng.choice((1, 2))

    def _to_move(self) -> int:
        return self.mover

    def _add(self, seat: int, action: str) -> Outcome:
        if action not in ("1", "2"):
            return Outcome(
                valid=False, penalty=-0.1 if seat == self.focal_seat else 0.0, message="say 1 or 2"
            )
        self.total += int(action)
        self.mover = 3 - seat
        if self.total < self.goal:
            return Outcome()
        won = seat == self.focal_seat
        return Outcome(terminated=True, reward=float(won), success=won, end_reason="win" if won else "loss")

    def _act(self, action: str) -> Outcome:
        return self._add(self.focal_seat, action)

    def _act_other(self, seat: int, action: str) -> Outcome:
        return self._add(seat, action)

    def _text(self, seat: int) -> str:
        return f"You are Player {seat}. The total is {self.total}; reach {self.goal} first. Add 1 or 2."

    def observe(self, seat: int) -> SeatView:
        return SeatView(
            self.id, seat, self._text(seat), {"total": self.total, "legal": ["1", "2"]}, ["1", "2"]
        )

    def render(self) -> str:
        return self._text(self.focal_seat)

    def legal_actions(self) -> list[str]:
        return ["1", "2"]

    def game_info(self) -> dict:
        return {"total": self.total, "goal": self.goal}


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


class SeatOutOfRange(Race):
    def _to_move(self) -> int:
        return self.mover if self.mover == self.focal_seat else self.mover + 2


class BlankFocalView(Race):
    def observe(self, seat: int) -> SeatView:
        view = super().observe(seat)
        return view if seat != self.focal_seat else SeatView(self.id, seat, "", view.state, view.legal)


class RejectionLeaks(Race):
    """Counts a rejected reply of another seat before refusing it."""

    def _act_other(self, seat: int, action: str) -> Outcome:
        if action not in ("1", "2"):
            self.total += 1
        return super()._act_other(seat, action)


class ForfeitIgnored(Race):
    def forfeit(self, seat: int) -> None:
        pass


class ResetOnlyGoal(Race):
    """Draws its goal in reset() instead of _reset(): episodes the driver begins keep a stale goal."""

    def reset(self, seed=None, options=None):
        self.pending_goal = 5 + (seed or 0) % 3
        return super().reset(seed=seed, options=options)

    def _reset(self) -> None:
        super()._reset()
        self.goal = getattr(self, "pending_goal", 5)


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


SEAT_CHECKS = ("seat_to_move", "seat_observe", "rejected_play_other", "forfeit", "driver_matches_step")


def test_two_seat_game_passes_the_seat_checks():
    report = check_env(Race(), episodes=12)
    assert set(SEAT_CHECKS) <= set(report.checks)
    assert not report.skipped


def test_one_seat_game_says_which_seat_checks_it_skipped():
    report = check_env(Guess(), episodes=4)
    assert "driver_matches_step" in report.checks and "forfeit" not in report.checks
    assert any("forfeit" in s and "seats=1" in s for s in report.skipped)


def test_the_random_player_does_not_share_the_game_seed():
    """A player drawing from the game's seed guesses the secret at once; the checker's loses sometimes."""
    report = check_env(GuessNumber(), episodes=20, seed=0)
    assert report.end_reasons.get("correct", 0) >= 1
    assert report.end_reasons.get("out_of_turns", 0) >= 1 and report.truncated >= 1
    same_seed_wins = sum(
        random.Random(i).choice(GuessNumber.DIGITS) == _secret(GuessNumber(), i) for i in range(20)
    )
    assert same_seed_wins == 20


def _secret(game: GuessNumber, seed: int) -> str:
    game.reset(seed=seed)
    return game.secret


@pytest.mark.parametrize("game", [HiddenInInfo(), HiddenInView()])
def test_hidden_information_varies_behind_one_opening_screen(game):
    report = check_env(game, episodes=8)
    assert report.distinct_starts == 1 and report.distinct_states >= 2
    assert "seeds_vary" in report.checks


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
        (SeatOutOfRange(), "seat_to_move", "expected a seat 1..2"),
        (BlankFocalView(), "seat_observe", "text ''"),
        (RejectionLeaks(), "rejected_play_other", "changed"),
        (ForfeitIgnored(), "forfeit", "still to move"),
        (ResetOnlyGoal(), "driver_matches_step", "differs"),
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


# ----------------------------------------------------------------------------------------- registered games

REGISTERED = [s.id for s in game_specs()]
"""Collected before this module's toy games are registered."""


def _registered(game_id: str):
    return NestedGame(games="F+I3") if game_id == "nested-v0" else game_id  # nested-v0 needs its sub-games


@pytest.mark.parametrize("game_id", REGISTERED)
def test_every_registered_game_passes_check_env(game_id):
    report = check_env(_registered(game_id), episodes=10)
    assert (
        report.game == game_id and "determinism" in report.checks and "driver_matches_step" in report.checks
    )


@pytest.mark.parametrize("game_id", ["tictactoe-v0", "spy-v0", "nested-v0"])
def test_games_with_other_seats_pass_every_seat_check(game_id):
    report = check_env(_registered(game_id), episodes=6, seed=3)
    assert set(SEAT_CHECKS) <= set(report.checks)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_nested_preset_passes_check_env(preset):
    report = check_env(NestedGame(games=preset), episodes=6)
    assert report.game == "nested-v0" and "reward_accounting" in report.checks
