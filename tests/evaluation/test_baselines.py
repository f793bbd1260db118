"""Trivial baselines: exact Matrix values agree with play, and each policy scores what its game allows."""

from __future__ import annotations

import random

import pytest

from gift.evaluation import baselines as b
from gift.evaluation.stats import binomial_ci
from gift.games.registry import make
from gift.games.spy import TRIVIAL_DESCRIPTIONS
from gift.games.spy_bots import contains_word


def _rate(results):
    scored = [r for r in results if r is not None]
    return binomial_ci(sum(scored), len(scored))


def _exact(options, policy, answer=None):
    rows = b.exact_matrix_rows(options)
    return next(r for r in rows if r.policy == policy and r.answer == answer)


def test_always_two_scores_about_half_on_matrix_over_4000_seeds():
    played = _rate(b.play_policy("matrix-v0", {}, b.constant_policy("2"), range(1, 4001)))
    exact = _exact({}, "constant", "2")
    assert 0.50 < played.value < 0.55
    assert played.low <= exact.success <= played.high
    assert exact.success == pytest.approx(0.528, abs=0.001)
    assert exact.method == "exact" and exact.estimate.low == exact.estimate.high == exact.success


def test_exact_matrix_values_match_simulation_under_both_label_rules():
    for options in ({}, {"label_rule": "pure"}, {"games": [0, 1, 2], "role": 2}):
        for policy, answer, player in (("random", None, b.random_policy),
                                       ("constant", "1", b.constant_policy("1"))):  # fmt: skip
            played = _rate(b.play_policy("matrix-v0", options, player, range(1, 1501)))
            exact = _exact(options, policy, answer)
            assert played.low <= exact.success <= played.high, (options, policy)


def test_best_constant_on_matrix_is_two_and_pure_rule_raises_it():
    assert b.best_constant("matrix-v0").answer == "2"
    pure = b.best_constant("matrix-v0", {"label_rule": "pure"})
    assert pure.answer == "2" and pure.success == pytest.approx(0.639, abs=0.001)
    rows = b.constant_rows("matrix-v0")
    assert [r.success for r in rows] == sorted((r.success for r in rows), reverse=True)
    assert {r.answer for r in rows} == {"1", "2", "3", "4", "5", "6"}


def test_unknown_matrix_options_fall_back_to_simulation(monkeypatch):
    monkeypatch.setattr(b, "_MATRIX_EXACT_OPTIONS", frozenset())
    rows = b.baseline_rows("matrix-v0", {"label_rule": "paper"}, episodes=300)
    assert [r.policy for r in rows] == ["random", "constant", "perfect"]
    assert all(r.method == "simulated" and r.n == 300 for r in rows)
    perfect = rows[-1]
    assert perfect.success == 1.0


def test_random_tictactoe_never_beats_the_perfect_player():
    options = {"opponent": "perfect", "start": "empty"}
    rows = {r.policy: r for r in b.baseline_rows("tictactoe-v0", options, episodes=300)}
    assert rows["random"].success == 0.0 and rows["random"].n == 300
    assert rows["perfect"].success == 0.0  # perfect against perfect: every game a draw


def test_minimax_never_loses_and_beats_random_against_a_noisy_bot():
    game = make("tictactoe-v0", parser="raw", opponent={"kind": "epsilon", "epsilon": 0.5}, start="empty")
    for seed in range(60):
        obs, info = game.reset(seed=seed)
        done = False
        rng = random.Random(seed)
        while not done:
            obs, _, term, trunc, info = game.step(b.perfect_policy(obs, info, game.legal_actions(), rng))
            done = term or trunc
        assert info["end_reason"] in ("win", "draw"), seed
    rows = {r.policy: r for r in b.baseline_rows("tictactoe-v0", {"start": "empty"}, episodes=300)}
    assert rows["perfect"].estimate.low > rows["random"].estimate.high
    assert rows["constant"].success < 0.05  # a fixed cell is taken after the first move


def test_math_gold_answer_is_always_right_and_a_constant_rarely():
    rows = {r.policy: r for r in b.baseline_rows("math-v0", {"level": 1}, episodes=200)}
    assert "random" not in rows  # open-ended answers have no legal set
    assert rows["perfect"].success == 1.0
    assert rows["constant"].success < 0.2 and rows["constant"].answer is not None


def test_spy_policies_stay_legal_and_the_oracle_beats_a_random_vote():
    rows = {r.policy: r for r in b.baseline_rows("spy-v0", {}, episodes=400)}
    assert set(rows) == {"random", "constant", "oracle"}
    assert rows["oracle"].success > rows["random"].success
    assert rows["constant"].answer.startswith("I vote for Player")
    for word in ("life", "people", "anywhere", "cat"):
        assert not contains_word(b.generic_description({"game": "spy-v0", "secret_word": word}), word)


def test_constant_policy_answers_the_same_except_spy_descriptions():
    policy = b.constant_policy("2")
    rng = random.Random(0)
    assert policy("obs", {"game": "matrix-v0"}, ["1", "2"], rng) == "2"
    spy_turn = {"game": "spy-v0", "phase": "describe", "secret_word": "cat"}
    assert policy("obs", spy_turn, None, rng) == TRIVIAL_DESCRIPTIONS[0]


def test_rows_describe_themselves_and_reject_unknown_policies():
    (row,) = b.baseline_rows("matrix-v0", policies=["constant"])
    assert row.label == "best constant '2'" and row.format() == "52.8 (exact)"
    assert row.as_dict()["method"] == "exact" and row.as_dict()["n"] == 96
    with pytest.raises(ValueError, match="unknown baseline policy"):
        b.baseline_rows("matrix-v0", policies=["clever"])
