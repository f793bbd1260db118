"""The `gift` command run for real, as a subprocess (`python -m gift ...`), with moves scripted through stdin."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest

import gift
from gift.games import game_specs, make
from gift.play import interpret_answer, normalise_move
from tests.opponents.chat_server import ChatServer, reply, respond

KNOWN_END_REASONS = {"win", "loss", "draw", "out_of_turns", "correct", "wrong", "invalid_action", "completed"}


def gift_cli(
    *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real entry point; stdin is closed after `stdin`, so the CLI sees EOF when it runs out."""
    base = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    base.update(HF_HUB_OFFLINE="1", PYTHONIOENCODING="utf-8", COLUMNS="120")
    return subprocess.run(
        [sys.executable, "-m", "gift", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, **(env or {})},
    )


def assert_user_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2, exactly one line on stderr naming every needle, no traceback; returns that line."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def end_reason(stdout: str) -> str:
    m = re.search(r"^end reason: (\S+)$", stdout, re.MULTILINE)
    assert m is not None, stdout[-2000:]
    return m.group(1)


# ------------------------------------------------------------------------------------------- games, version, help
def test_games_lists_every_registered_id_with_its_description() -> None:
    result = gift_cli("games")
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    for s in game_specs():
        (row,) = [line for line in lines if line.split() and line.split()[0] == s.id]
        assert s.description in row
    assert "F+I2" in result.stdout  # nested presets are listed too


def test_version_matches_the_package() -> None:
    result = gift_cli("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"gift {gift.__version__}"


@pytest.mark.parametrize("command", ["games", "check-env", "play", "train", "eval"])
def test_every_subcommand_has_help(command: str) -> None:
    result = gift_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout.lower()
    if command != "eval":  # eval hands --help to the evaluation command when it is installed
        assert f"gift {command}" in result.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["frob"],
        [],
        ["play", "tictactoe-v0", "--frob"],
        ["check-env"],
        ["check-env", "matrix-v0", "--episodes", "many"],
        ["play", "tictactoe-v0", "--seat", "sideways"],
        ["games", "extra"],
    ],
)
def test_usage_errors_exit_2_with_usage(argv: list[str]) -> None:
    result = gift_cli(*argv)
    assert result.returncode == 2
    assert "usage: gift" in result.stderr
    assert "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------------------------ check-env
@pytest.mark.parametrize("game_id", ["matrix-v0", "tictactoe-v0"])
def test_check_env_reports_the_passed_checks(game_id: str) -> None:
    result = gift_cli("check-env", game_id, "--episodes", "4", "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert f"{game_id}: all " in result.stdout and "checks passed over 4 random episodes" in result.stdout
    for check in ("api", "determinism", "reward_accounting", "junk_answers"):
        assert check in result.stdout


def test_check_env_unknown_id_names_the_registered_ids() -> None:
    line = assert_user_error(gift_cli("check-env", "nope-v0"), "nope-v0")
    for s in game_specs():
        assert s.id in line


def test_check_env_rejects_zero_episodes() -> None:
    assert_user_error(gift_cli("check-env", "matrix-v0", "--episodes", "0"), "--episodes=0")


# ---------------------------------------------------------------------------------------------------- play: human
def test_normalise_move_turns_bare_numbers_into_the_games_form() -> None:
    assert normalise_move("2 3") == "(2, 3)"
    assert normalise_move(" 2,3 ") == "(2, 3)"
    assert normalise_move("(2,  3)") == "(2, 3)"
    assert normalise_move("2") == "2"
    assert normalise_move("a round red fruit") == "a round red fruit"
    assert normalise_move("2 apples") == "2 apples"


def test_interpret_answer_picks_the_one_listed_move_with_those_numbers() -> None:
    votes = ["I vote for Player 1", "I vote for Player 3"]
    assert interpret_answer("3", votes) == "I vote for Player 3"
    assert interpret_answer("2", votes) == "2"  # not listed: the game explains why
    assert interpret_answer("2 3", ["(1, 1)", "(2, 3)"]) == "(2, 3)"
    assert interpret_answer("2 2", ["(1, 1)", "(2, 3)"]) == "(2, 2)"  # taken or not, the game decides
    assert interpret_answer("Player 3 is odd", votes) == "Player 3 is odd"
    assert interpret_answer("3", None) == "3"


def test_play_tictactoe_with_illegal_moves_and_garbage_until_the_budget_ends() -> None:
    # Seed 1 starts on an empty board with the person as Player 1; the perfect bot answers (2, 2) with (1, 1).
    moves = "help\n2 2\n\n2 2\nfoo bar\n(1,1)\n1 3\n"
    result = gift_cli("play", "tictactoe-v0", "--opponent", "perfect", "--seed", "1", stdin=moves)
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "# tictactoe-v0, seed 1: you against perfect" in out
    assert "legal answers: (1, 1), (1, 2)" in out  # `help`
    assert "You played (2, 2); your opponent answered (1, 1)." in out
    assert "Illegal move: Cell (2, 2) is already taken by 'O'." in out
    assert "No move of the form (row, col) was found in your answer 'foo bar'" in out
    assert "Illegal move: Cell (1, 1) is already taken by 'X'." in out
    assert out.count("[that cost -0.1]") == 3
    assert "(turn 1, 5 action(s) left)" in out and "(turn 5, 1 action(s) left)" in out
    assert out.count("## Current Game State") == 2  # the rules and position once, then the board; the end
    assert end_reason(out) == "out_of_turns"
    assert "=== Game over: no success ===" in out
    assert "reward:     -0.3 (outcome 0, penalties -0.3) after 5 step(s)" in out


def test_play_tictactoe_against_perfect_reaches_a_result() -> None:
    # Every cell in reading order: taken cells are refused, the others played, until the game is decided.
    cells = "".join(f"{r} {c}\n" for r in (1, 2, 3) for c in (1, 2, 3))
    result = gift_cli(
        "play",
        "tictactoe-v0",
        "--opponent",
        "perfect",
        "--seed",
        "5",
        "-o",
        "max_turns=20",
        stdin="xyz\n" + cells,
    )
    assert result.returncode == 0, result.stderr
    assert end_reason(result.stdout) in {"loss", "draw"}  # the perfect bot never loses
    assert "=== Game over: no success ===" in result.stdout
    assert "The game is over:" in result.stdout  # the final board is shown
    assert "end of input" not in result.stdout


def test_play_matrix_with_one_answer() -> None:
    game = make("matrix-v0", parser="raw")
    game.reset(seed=3)
    right = str(min(game.labels))

    won = gift_cli("play", "matrix-v0", "--seed", "3", stdin=f"{right}\n")
    assert won.returncode == 0, won.stderr
    assert end_reason(won.stdout) == "correct"
    assert "=== Game over: success ===" in won.stdout
    assert "reward:     1 (outcome 1, penalties 0) after 1 step(s)" in won.stdout
    assert f"expected:   the equilibrium action: {' or '.join(str(a) for a in sorted(game.labels))}" in won.stdout

    off = gift_cli("play", "matrix-v0", "--seed", "3", stdin="99\n")
    assert end_reason(off.stdout) == "invalid_action"
    # The documented switch to the raw protocol is an option like any other (it used to clash with play's own).
    raw = gift_cli("play", "matrix-v0", "--seed", "3", "-o", "parser=raw", stdin=f"{right}\n")
    assert raw.returncode == 0 and end_reason(raw.stdout) == "correct", raw.stderr


def test_play_a_nested_preset_moves_on_and_reports_every_subgame() -> None:
    cells = "".join(f"{r} {c}\n" for r in (1, 2, 3) for c in (1, 2, 3))
    result = gift_cli(
        "play", "I2", "--opponent", "perfect", "--seed", "2", "-o", "max_turns=20", stdin="1\n" + cells
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "# nested-v0, seed 2" in out
    assert "## Current Game State" in out.split("your move> 1\n", 1)[1]  # the board follows the matrix answer
    assert end_reason(out) == "completed"
    assert re.search(r"^  matrix-v0: (correct|wrong) \(reward [01]\)$", out, re.MULTILINE)
    assert re.search(r"^  tictactoe-v0: (loss|draw) \(reward (0|0.5)\)$", out, re.MULTILINE)


needs_spy = pytest.mark.skipif(importlib.util.find_spec("gift.games.spy") is None, reason="spy-v0 not built")


@needs_spy
def test_play_spy_with_descriptions_and_a_bare_number_vote() -> None:
    game = make("spy-v0")
    game.reset(seed=0)
    target = next(s for s in (1, 2, 3, 4) if s != game.trained_seat)
    lines = f"it is something you can eat\nyou often find it in a kitchen\n{target}\n"
    result = gift_cli("play", "spy-v0", "--seed", "0", stdin=lines)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Traceback" not in result.stderr
    assert "[that cost" not in out  # both descriptions and the shorthand vote were accepted
    assert f"expected:   the spy was Player {game.spy_seat}" in out
    assert end_reason(out) in {"win", "loss"}
    assert "after 3 step(s)" in out


@needs_spy
def test_watch_spy_bots_play_a_whole_game() -> None:
    result = gift_cli(
        "play", "spy-v0", "--seat", "watch", "--player", "bot", "--opponent", "bot", "--seed", "1"
    )
    assert result.returncode == 0, result.stderr
    moves = re.findall(r"^player \(bot\)> (.+)$", result.stdout, re.MULTILINE)
    assert len(moves) == 3 and moves[-1].startswith("I vote for Player ")
    assert end_reason(result.stdout) in {"win", "loss"}


@pytest.mark.parametrize("stdin", ["", "2 2\n", "2 2\n\n  \n"])
def test_end_of_input_mid_game_leaves_cleanly(stdin: str) -> None:
    result = gift_cli("play", "tictactoe-v0", "--opponent", "random", "--seed", "3", stdin=stdin)
    assert result.returncode == 0
    assert result.stderr == ""
    assert result.stdout.rstrip().endswith("(end of input: leaving the game)")
    assert "Game over" not in result.stdout


def test_quit_leaves_the_game() -> None:
    result = gift_cli("play", "tictactoe-v0", "--seed", "3", stdin="quit\n2 2\n")
    assert result.returncode == 0
    assert "(leaving the game)" in result.stdout
    assert "your move> 2 2" not in result.stdout


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["play", "nope-v0"], ["nope-v0", "tictactoe-v0", "matrix-v0"]),
        (["play", "matrix-v0", "--opponent", "perfect"], ["matrix-v0", "no opponent"]),
        (["play", "tictactoe-v0", "--opponent", "nobody"], ["'nobody'", "perfect", "random"]),
        (["play", "tictactoe-v0", "--opponent", "epsilon:epsilon=7"], ["epsilon=7"]),
        (["play", "tictactoe-v0", "--opponent", "openai"], ["--endpoint", "--endpoint-model"]),
        (["play", "tictactoe-v0", "--opponent", "perfect", "--endpoint", "http://x"], ["--endpoint"]),
        (["play", "tictactoe-v0", "--seat", "watch"], ["--player", "--model"]),
        (["play", "tictactoe-v0", "--player", "random"], ["--seat watch"]),
        (["play", "tictactoe-v0", "--seat", "watch", "--player", "ghost"], ["'ghost'", "perfect"]),
        (["play", "tictactoe-v0", "-o", "start=middle"], ["start", "'train'", "'empty'"]),
        (["play", "tictactoe-v0", "-o", "colour=red"], ["colour", "allowed options"]),
        (["play", "tictactoe-v0", "-o", "novalue"], ["novalue", "key=value"]),
    ],
)
def test_play_user_errors_are_one_line(argv: list[str], needles: list[str]) -> None:
    assert_user_error(gift_cli(*argv), *needles)


# ---------------------------------------------------------------------------------------------------- play: watch
def test_watch_random_against_perfect_prints_a_finished_game() -> None:
    argv = (
        "play",
        "tictactoe-v0",
        "--seat",
        "watch",
        "--player",
        "random",
        "--opponent",
        "perfect",
        "--seed",
        "4",
    )
    result = gift_cli(*argv)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    moves = re.findall(r"^player \(random\)> (\(\d, \d\))$", out, re.MULTILINE)
    steps = int(re.search(r"after (\d+) step\(s\)", out).group(1))
    assert len(moves) == steps >= 1
    assert end_reason(out) in {"loss", "draw"}
    assert "The game is over:" in out
    assert gift_cli(*argv).stdout == out  # a seed replays the same game


def test_watch_perfect_against_perfect_is_a_draw_or_runs_out() -> None:
    # Two perfect players never lose; from the training start the game can still run out of its 5 moves.
    result = gift_cli(
        "play",
        "tictactoe-v0",
        "--seat",
        "watch",
        "--player",
        "perfect",
        "--opponent",
        "perfect",
        "--seed",
        "0",
    )
    assert result.returncode == 0, result.stderr
    assert end_reason(result.stdout) in {"draw", "win", "out_of_turns"}
    assert "[penalty" not in result.stdout  # a bot never plays an illegal move


def _first_legal_move(body: dict) -> str:
    prompt = body["messages"][-1]["content"]
    legal = prompt.split("Legal moves (row, col):", 1)[1]
    return "<answer>" + re.search(r"\(\d, \d\)", legal).group(0) + "</answer>"


def test_openai_opponent_through_a_real_endpoint_keeps_the_key_secret() -> None:
    secret = "sk-cli-test-9f8e7d"
    with ChatServer(respond(_first_legal_move)) as server:
        result = gift_cli(
            "play", "tictactoe-v0", "--seat", "watch", "--player", "random", "--seed", "1",
            "--opponent", "openai", "--endpoint", server.base_url, "--endpoint-model", "test-model",
            env={"OPENAI_API_KEY": secret},
        )  # fmt: skip
        seen = server.requests
    assert result.returncode == 0, result.stderr
    assert "against openai:test-model" in result.stdout
    assert end_reason(result.stdout) in KNOWN_END_REASONS
    assert seen and all(r.headers["authorization"] == f"Bearer {secret}" for r in seen)
    assert seen[0].body["model"] == "test-model"
    assert secret not in result.stdout + result.stderr


def test_an_opponent_that_never_answers_legally_ends_the_game_as_opponent_failed() -> None:
    with ChatServer(reply("I would rather not play.")) as server:
        result = gift_cli(
            "play", "tictactoe-v0", "--seed", "3", "--opponent", "openai:backoff=0",
            "--endpoint", server.base_url, "--endpoint-model", "m", stdin="2 2\n",
        )  # fmt: skip
        asked = len(server.requests)
    assert result.returncode == 0, result.stderr
    assert end_reason(result.stdout) == "opponent_failed"
    assert "another player produced no legal move" in result.stdout
    assert asked == 3  # the game's retry policy: three tries, then a forfeit


@pytest.mark.slow
def test_watch_a_model_play(tiny_model_dir: str) -> None:
    # A tiny random model rarely follows the tag protocol: each reply is judged by the strict parser.
    result = gift_cli(
        "play",
        "matrix-v0",
        "--seat",
        "watch",
        "--model",
        tiny_model_dir,
        "--seed",
        "0",
        "--max-new-tokens",
        "8",
    )
    assert result.returncode == 0, result.stderr
    assert f"model ({tiny_model_dir})> " in result.stdout
    assert end_reason(result.stdout) in {"out_of_turns", "correct", "wrong", "invalid_action"}


def test_watch_a_missing_model_folder_is_one_line() -> None:
    assert_user_error(
        gift_cli("play", "matrix-v0", "--seat", "watch", "--model", "./no/such/model"), "no/such/model"
    )


# ---------------------------------------------------------------------------------------------------------- train
def test_train_missing_config_file() -> None:
    assert_user_error(gift_cli("train", "nope.yaml"), "nope.yaml", "not found")


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        (["algo.lr=-1"], ["algo.lr"]),
        (["algo.nope=1"], ["algo.nope", "lr"]),
        (["task.mode=sideways"], ["task.mode", "sideways"]),
        (["a.yaml", "b.yaml"], ["a.yaml", "b.yaml"]),
    ],
)
def test_train_bad_config_is_one_line_before_anything_heavy(overrides: list[str], needles: list[str]) -> None:
    assert_user_error(gift_cli("train", *overrides), *needles)


def test_train_resume_from_a_missing_folder(tmp_path) -> None:
    assert_user_error(gift_cli("train", "--resume", str(tmp_path / "gone")), "gone", "no such run folder")
