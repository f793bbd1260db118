"""Game evaluation protocol: fresh single-turn prompts, one batched call per turn, exclusions, and rating matches."""

from __future__ import annotations

import pytest

from gift.errors import ConfigError
from gift.evaluation.games_eval import (
    GenerationSettings,
    canonical_game,
    derive_seed,
    episode_score,
    game_options,
    play_episodes,
)
from gift.evaluation.matches import make_bot, play_matches, read_move
from gift.evaluation.report import summarise
from gift.games.tictactoe import EMPTY_BOARD
from gift.opponents import Opponent
from gift.rollout.transcript import DEFAULT_SYSTEM_PROMPT, ChatCodec
from tests.evaluation.scripted import ScriptedBackend, first_legal_move, user_turns, wrap

SETTINGS = GenerationSettings(temperature=0.0, max_new_tokens=24)


class _Model:
    """What play_episodes needs from a loaded model: a label, a backend and a codec."""

    def __init__(self, tokenizer, backend, label: str = "scripted") -> None:
        self.label, self.backend, self.tokenizer, self.codec = label, backend, tokenizer, ChatCodec(tokenizer)


@pytest.fixture()
def tokenizer(tiny_model):
    return tiny_model[1]


class Garbage(Opponent):
    """An opponent that never names a legal move: every episode it plays ends with opponent_failed."""

    name = "garbage"
    reads_prompt = False

    def act(self, request) -> str:
        return "no idea"


def test_every_turn_is_a_fresh_single_turn_prompt_batched_per_turn(tokenizer) -> None:
    backend = ScriptedBackend(tokenizer, script=first_legal_move)
    model = _Model(tokenizer, backend)
    saved: list[list[dict]] = []
    options = game_options("tictactoe-v0", "perfect")
    records = play_episodes("tictactoe-v0", options, [1, 2, 3, 4], model, SETTINGS, 7, saved.append)

    assert [r["item"] for r in sorted(records, key=lambda r: r["episode_seed"])] == [
        f"episode-{s}" for s in (1, 2, 3, 4)
    ]
    assert sum(len(batch) for batch in saved) == 4  # every episode saved exactly once, as it finished
    # One backend call per turn holding every live game; games only drop out.
    sizes = [len(call) for call in backend.calls]
    assert sizes[0] == 4 and sizes == sorted(sizes, reverse=True) and len(sizes) >= 3
    for prompt in backend.prompts:
        assert user_turns(prompt) == 1
        assert prompt.count("<|im_start|>assistant") == 1  # only the generation prompt: no earlier replies
        assert DEFAULT_SYSTEM_PROMPT in prompt and "<answer>" in prompt  # system prompt + format instruction
    # The model really played several moves per game against the perfect player, which never loses.
    assert all(r["turns"] >= 2 for r in records)
    assert {r["end_reason"] for r in records} <= {"draw", "loss"}
    assert all(r["correct"] is False and r["excluded"] is None for r in records)
    assert all(r["info"]["moves"] and r["reply"] == r["replies"][-1] for r in records)


def test_opponent_failures_are_excluded_and_counted(tokenizer) -> None:
    model = _Model(tokenizer, ScriptedBackend(tokenizer, script=first_legal_move))
    options = game_options("tictactoe-v0", Garbage())
    records = play_episodes("tictactoe-v0", options, [1, 2, 3], model, SETTINGS, 0, lambda batch: None)
    failed = [r for r in records if r["excluded"] == "opponent_failed"]
    assert failed and all(r["correct"] is None for r in failed)
    cell = summarise([{**r, "seed": 1} for r in records], "tictactoe-v0", [1])
    assert cell.excluded == len(failed)
    assert cell.estimate.n == len(records) - len(failed)


def test_math_game_items_are_scored_by_the_game(tokenizer) -> None:
    def solve(prompt: str) -> str:
        return wrap("-99999")  # wrong for every generated problem

    model = _Model(tokenizer, ScriptedBackend(tokenizer, script=solve))
    records = play_episodes("math-v0", {}, [1, 2], model, SETTINGS, 0, lambda batch: None)
    assert [r["correct"] for r in records] == [False, False]
    assert all(r["end_reason"] == "wrong" and r["info"]["gold_answer"] for r in records)


def test_protocol_options() -> None:
    assert game_options("tictactoe-v0") == {
        "opponent": {"kind": "epsilon", "epsilon": 0.5},
        "opponent_tries": 1,
        "start": "empty",
    }
    assert game_options("spy-v0", "bot", 2) == {"opponent": "bot", "opponent_tries": 2}
    assert game_options("matrix-v0") == {}
    with pytest.raises(ConfigError, match="no opponent"):
        game_options("matrix-v0", "perfect")
    assert canonical_game("tictactoe") == "tictactoe-v0"
    with pytest.raises(ConfigError, match="unknown game 'chess'"):
        canonical_game("chess")
    assert derive_seed(1, "matrix-v0", 2) == derive_seed(1, "matrix-v0", 2) != derive_seed(2, "matrix-v0", 2)
    assert [episode_score({"end_reason": e}) for e in ("win", "draw", "loss", "out_of_turns")] == [
        1,
        0.5,
        0,
        0,
    ]


def test_rating_matches_are_seat_swapped_and_scored_for_the_first_seat() -> None:
    players = {"perfect": make_bot("perfect"), "random": make_bot("random")}
    results, records = play_matches(players, [1, 2, 3], SETTINGS)
    assert len(results) == 6
    for seed in (1, 2, 3):
        seatings = {(r.first, r.second) for r in results if r.seed == seed}
        assert seatings == {("perfect", "random"), ("random", "perfect")}
    # The perfect player never loses: its score is 1 or 0.5 in whichever seat.
    for r in results:
        perfect_score = r.score if r.first == "perfect" else 1.0 - r.score
        assert perfect_score in (0.5, 1.0)
    assert all(rec["forfeit"] is None and len(rec["moves"]) >= 5 for rec in records)


def test_a_model_without_a_legal_move_forfeits(tokenizer) -> None:
    model = _Model(tokenizer, ScriptedBackend(tokenizer, script=lambda p: wrap("(9, 9)")), "m")
    results, records = play_matches({"m": model, "random": make_bot("random")}, [1], SETTINGS)
    by_first = {r.first: r.score for r in results}
    assert by_first == {"m": 0.0, "random": 1.0}  # the model forfeits in both seats
    assert all(rec["moves"][-1] == "forfeit" for rec in records)
    assert read_move(wrap("(1, 1)"), EMPTY_BOARD) == 0
    assert read_move("(1, 1)", EMPTY_BOARD) is None  # no answer block, no move
