"""Confidence intervals against values written out from their textbook formulas."""

from __future__ import annotations

import math

import pytest

from gift.errors import ConfigError
from gift.evaluation.stats import Estimate, binomial_ci, mean_ci, proportion, seed_spread

Z95 = 1.959963984540054


def wilson_by_hand(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval: (p + z²/2n ± z·sqrt(p(1−p)/n + z²/4n²)) / (1 + z²/n)."""
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    denom = 1 + z * z / n
    return (centre - spread) / denom, (centre + spread) / denom


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.27753),  # z²/(n + z²) = 3.8415 / 13.8415
        (5, 10, 0.23659, 0.76341),
        (10, 10, 0.72247, 1.0),
        (57, 100, 0.47215, 0.66269),
    ],
)
def test_wilson_matches_the_formula_and_known_values(k: int, n: int, low: float, high: float) -> None:
    est = binomial_ci(k, n)
    assert est.value == pytest.approx(k / n)
    assert (est.low, est.high) == pytest.approx((low, high), abs=5e-5)
    hand_low, hand_high = wilson_by_hand(k, n)
    assert est.low == pytest.approx(max(0.0, hand_low), abs=1e-12)
    assert est.high == pytest.approx(min(1.0, hand_high), abs=1e-12)
    assert est.n == n


def test_wilson_is_symmetric_under_swapping_successes_and_failures() -> None:
    a, b = binomial_ci(13, 40), binomial_ci(27, 40)
    assert a.low == pytest.approx(1 - b.high) and a.high == pytest.approx(1 - b.low)


def test_wider_level_gives_a_wider_interval() -> None:
    narrow, wide = binomial_ci(30, 80, level=0.80), binomial_ci(30, 80, level=0.99)
    assert wide.low < narrow.low < narrow.high < wide.high


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (0, 10, 0.0, 1 - 0.025 ** (1 / 10)),  # 0.30850
        (10, 10, 0.025 ** (1 / 10), 1.0),  # 0.69150
        (1, 10, 0.0025286, 0.44502),
        (5, 10, 0.18709, 0.81291),
    ],
)
def test_clopper_pearson_known_values(k: int, n: int, low: float, high: float) -> None:
    est = binomial_ci(k, n, method="clopper-pearson")
    assert (est.low, est.high) == pytest.approx((low, high), abs=5e-5)


def test_clopper_pearson_is_wider_than_wilson() -> None:
    cp, wilson = binomial_ci(57, 100, method="clopper-pearson"), binomial_ci(57, 100)
    assert cp.low < wilson.low and cp.high > wilson.high


def test_format_in_percent() -> None:
    assert str(binomial_ci(57, 100)) == "57.0 [47.2, 66.3] (n=100)"
    assert binomial_ci(57, 100).format(percent=False, digits=3) == "0.570 [0.472, 0.663] (n=100)"
    assert str(binomial_ci(0, 0)) == "n/a (n=0)"


def test_proportion_counts_booleans_and_numpy_counts_work() -> None:
    import numpy as np

    assert proportion([True, False, True, True]) == binomial_ci(3, 4)
    assert binomial_ci(np.int64(3), np.int64(4)) == binomial_ci(3, 4)


@pytest.mark.parametrize(
    ("k", "n", "options"),
    [(11, 10, {}), (-1, 10, {}), (1, 10, {"level": 1.0}), (1, 10, {"method": "normal"}), (True, 10, {})],
)
def test_bad_arguments_raise_config_error(k, n, options) -> None:
    with pytest.raises(ConfigError):
        binomial_ci(k, n, **options)


def test_mean_ci_is_the_t_interval() -> None:
    values = [1, 0.5, 0, 1, 1, 0.5, 0, 1, 0.5, 1]
    est = mean_ci(values)
    mean = sum(values) / 10
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 9)
    t9 = 2.2621571627409915  # t quantile 0.975 with 9 degrees of freedom
    assert est.value == pytest.approx(0.65)
    assert est.low == pytest.approx(mean - t9 * sd / math.sqrt(10))
    assert est.high == pytest.approx(mean + t9 * sd / math.sqrt(10))


def test_mean_ci_bounds_clip_and_degenerate_cases() -> None:
    clipped = mean_ci([1, 1, 1, 0.5], bounds=(0.0, 1.0))
    assert clipped.high == 1.0 and clipped.low < clipped.value
    assert mean_ci([0.5, 0.5, 0.5]) == Estimate(0.5, 0.5, 0.5, 3)
    single = mean_ci([1.0])
    assert single.value == 1.0 and math.isnan(single.low) and single.n == 1
    assert mean_ci([]).n == 0
    with pytest.raises(ConfigError):
        mean_ci([0.5, float("nan")])


def test_seed_spread() -> None:
    spread = seed_spread([0.40, 0.46, 0.52])
    assert spread.mean == pytest.approx(0.46)
    assert spread.std == pytest.approx(0.06)
    assert (spread.min, spread.max, spread.n) == (0.40, 0.52, 3)
    assert "runs=3" in str(spread)
    assert math.isnan(seed_spread([0.3]).std)
    with pytest.raises(ConfigError):
        seed_spread([])
