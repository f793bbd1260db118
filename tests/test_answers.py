"""Answer diversity: which answer each (sub-)game read, its entropy and the share of the commonest answer."""

from __future__ import annotations

import math

import pytest

from gift.answers import answer_diversity, entropy, episode_answers, reply_answer
from gift.games.registry import make


def played(game_id: str, replies: list[str], seed: int = 0, **options) -> dict:
    """A trajectory record as the rollout writes it: the final info and the chat's assistant turns."""
    game = make(game_id, **options)
    _, info = game.reset(seed=seed)
    messages = [{"role": "user", "content": "..."}]
    for reply in replies:
        messages.append({"role": "assistant", "content": reply})
        _, _, term, trunc, info = game.step(reply)
        if term or trunc:
            break
    return {"game": game_id, "task": game_id, "final_info": info, "messages": messages}


def test_entropy_of_a_constant_answer_is_zero_and_of_a_fair_coin_log2():
    assert entropy([7]) == 0.0
    assert entropy([3, 3]) == pytest.approx(math.log(2))
    assert entropy([1, 1, 1, 1]) == pytest.approx(math.log(4))
    assert math.isnan(entropy([]))


def test_a_collapsed_matrix_policy_has_zero_entropy_and_full_top_share():
    records = [played("matrix-v0", ["2"], seed=s, parser="raw") for s in range(12)]
    m = answer_diversity(records)
    assert m["game/matrix-v0/answer_entropy"] == 0.0
    assert m["game/matrix-v0/top_answer_share"] == 1.0
    assert m["game/matrix-v0/answer_count"] == 12.0
    assert m["game/matrix-v0/top_answer"] == "2"


def test_mixed_answers_give_the_share_of_the_commonest():
    answers = ["1", "2", "2", "1 ", "2", "3"]
    m = answer_diversity([played("matrix-v0", [a], seed=s, parser="raw") for s, a in enumerate(answers)])
    assert m["game/matrix-v0/top_answer_share"] == pytest.approx(3 / 6)
    assert m["game/matrix-v0/answer_entropy"] == pytest.approx(entropy([3, 2, 1]))


def test_answers_are_what_the_game_read_under_the_strict_protocol():
    good = played("matrix-v0", ["<think>x</think><answer> 2 </answer>"])
    unreadable = played("matrix-v0", ["2"])  # no tags: a format error, the game read nothing
    assert episode_answers(good) == [("matrix-v0", "2")]
    assert episode_answers(unreadable) == []


def test_nested_trajectories_give_one_answer_per_sub_game():
    record = played(
        "nested-v0", ["17", "2"], games=[{"id": "math-v0", "level": 1}, "matrix-v0"], parser="raw"
    )
    assert episode_answers(record) == [("math-v0", "17"), ("matrix-v0", "2")]
    m = answer_diversity([record])
    assert set(m) >= {"game/math-v0/answer_entropy", "game/matrix-v0/top_answer_share"}


def test_tictactoe_counts_the_opening_move_and_spy_the_vote():
    ttt = played("tictactoe-v0", ["(2, 2)", "(1, 1)", "(3, 3)"], parser="raw", start="empty")
    assert episode_answers(ttt) == [("tictactoe-v0", "(2, 2)")]
    spy = make("spy-v0", parser="raw")
    _, info = spy.reset(seed=3)
    messages = []
    while not spy.done:
        legal = spy.legal_actions()
        reply = legal[0] if legal else "It is found in many homes."
        messages.append({"role": "assistant", "content": reply})
        _, _, _, _, info = spy.step(reply)
    ((game, answer),) = episode_answers({"final_info": info, "messages": messages})
    assert game == "spy-v0" and answer == f"Player {info['votes'][info['trained_seat']]}"


def test_reply_answer_reads_the_answer_block_or_the_whole_reply():
    assert reply_answer("<think>a</think><answer>(1, 3)</answer>") == "(1, 3)"
    assert reply_answer("<answer>4") == "4"
    assert reply_answer("  42 \n") == "42"
    assert reply_answer("   ") is None
