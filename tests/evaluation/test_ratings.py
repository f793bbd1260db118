"""Bradley–Terry ratings: ordering, symmetry, coverage of known strengths, seat-balanced schedules."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from gift.errors import ConfigError
from gift.evaluation.ratings import (
    ELO_PER_LOGIT,
    MatchResult,
    expected_score,
    fit_bradley_terry,
    fit_ratings,
    schedule_matches,
)


def test_schedule_is_seat_balanced_and_complete() -> None:
    players = ["ckpt-50", "ckpt-100", "perfect", "random"]
    schedule = schedule_matches(players, seeds=[1, 2, 3])
    assert len(schedule) == 3 * 6 * 2
    ordered = Counter((first, second) for _, first, second in schedule)
    assert set(ordered.values()) == {3}  # every ordered pair once per seed
    assert len(ordered) == 12
    firsts, seconds = Counter(f for _, f, _ in schedule), Counter(s for _, _, s in schedule)
    assert firsts == seconds == Counter({p: 9 for p in players})
    per_seed = Counter(seed for seed, _, _ in schedule)
    assert per_seed == Counter({1: 12, 2: 12, 3: 12})
    assert (1, "ckpt-50", "ckpt-100") in schedule and (1, "ckpt-100", "ckpt-50") in schedule


@pytest.mark.parametrize(
    ("players", "seeds"), [(["a"], [1]), (["a", "a"], [1]), (["a", "b"], []), (["a", "b"], [1, 1])]
)
def test_bad_schedules(players, seeds) -> None:
    with pytest.raises(ConfigError):
        schedule_matches(players, seeds)


def test_dominant_player_is_rated_highest() -> None:
    results = []
    for seed, first, second in schedule_matches(["strong", "mid", "weak"], range(10)):
        rank = {"strong": 2, "mid": 1, "weak": 0}
        results.append((seed, first, second, 1.0 if rank[first] > rank[second] else 0.0))
    ratings = fit_ratings(results, bootstrap=50)
    assert ratings["strong"].rating > ratings["mid"].rating > ratings["weak"].rating
    assert np.isfinite(ratings["strong"].rating)  # the prior keeps a perfect record finite
    assert ratings["strong"].score == 1.0 and ratings["weak"].score == 0.0
    assert ratings["strong"].games == 40
    assert np.mean([r.rating for r in ratings.values()]) == pytest.approx(1000.0)


def test_symmetric_results_give_equal_ratings() -> None:
    results = []
    for seed, first, second in schedule_matches(["a", "b", "c"], range(6)):
        # Every game is won by whoever moves first: a seat effect, no skill difference.
        results.append(MatchResult(seed, first, second, 1.0))
    fit = fit_bradley_terry(results)
    assert max(fit.strengths.values()) - min(fit.strengths.values()) == pytest.approx(0.0, abs=1e-9)
    assert fit.seat_advantage > 1.0
    ratings = fit_ratings(results, reference="b", bootstrap=0)
    assert {p: r.rating for p, r in ratings.items()} == pytest.approx({"a": 1000.0, "b": 1000.0, "c": 1000.0})
    assert np.isnan(ratings["a"].low)
    draws = fit_ratings(
        [(s, f, x, "draw") for s, f, x in schedule_matches(["a", "b"], range(4))], bootstrap=20
    )
    assert draws["a"].rating == pytest.approx(draws["b"].rating)


def test_intervals_cover_known_strengths() -> None:
    truth = {"ref": 0.0, "b": 120.0, "c": 300.0, "d": -200.0}
    rng = np.random.default_rng(2024)
    results = []
    for seed, first, second in schedule_matches(list(truth), range(40)):
        p_first = expected_score(truth[first] + 35.0, truth[second])  # a small first-seat bonus
        u = rng.random()
        score = 1.0 if u < p_first - 0.05 else 0.5 if u < p_first + 0.05 else 0.0  # some draws
        results.append(MatchResult(seed, first, second, score))
    ratings = fit_ratings(results, reference="ref", anchor=0.0, bootstrap=300, seed=7)
    for player, true_rating in truth.items():
        r = ratings[player]
        assert r.low <= true_rating <= r.high, (player, r, true_rating)
        assert r.low <= r.rating <= r.high
    assert ratings["ref"].low == ratings["ref"].high == 0.0  # the anchor
    assert ratings["c"].high - ratings["c"].low < 180  # 480 games: an interval of about ±65 points
    assert [p for p, _ in sorted(ratings.items(), key=lambda kv: kv[1].rating)] == ["d", "ref", "b", "c"]


def test_bootstrap_is_seeded() -> None:
    results = [
        (s, f, x, float((s + len(f)) % 2)) for s, f, x in schedule_matches(["x", "yy", "zzz"], range(8))
    ]
    assert fit_ratings(results, bootstrap=40, seed=3) == fit_ratings(results, bootstrap=40, seed=3)
    assert fit_ratings(results, bootstrap=40, seed=3) != fit_ratings(results, bootstrap=40, seed=4)


def test_elo_scale_means_400_points_for_ten_to_one_odds() -> None:
    assert expected_score(1400, 1000) == pytest.approx(10 / 11)
    assert ELO_PER_LOGIT * np.log(10) == pytest.approx(400)
    # 91 wins out of 100 per ordered pair (no seat effect) should give about 400 points.
    results = []
    for seed in range(100):
        results.append((seed, "a", "b", 1.0 if seed < 91 else 0.0))
        results.append((seed, "b", "a", 0.0 if seed < 91 else 1.0))
    ratings = fit_ratings(results, reference="b", bootstrap=0, seat_advantage=False, prior=0.01)
    assert ratings["a"].rating - 1000 == pytest.approx(ELO_PER_LOGIT * np.log(91 / 9), rel=1e-3)


@pytest.mark.parametrize(
    ("results", "options", "needle"),
    [
        ([], {}, "no match results"),
        ([(1, "a", "b", 1.5)], {}, "not allowed"),
        ([(1, "a", "b", "forfeit")], {}, "not allowed"),
        ([(1, "a", "a", 1.0)], {}, "two different players"),
        ([(1, "a", "b", 1.0)], {"reference": "z"}, "played no match"),
        ([(1, "a", "b", 1.0)], {"prior": 0}, "prior"),
    ],
)
def test_bad_results_raise(results, options, needle) -> None:
    with pytest.raises(ConfigError, match=needle):
        fit_ratings(results, **options)
