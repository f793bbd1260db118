"""Honest numbers: every score leaves with a confidence interval and the number of items behind it.

The paper reports single runs of 100 games without error bars, where the 95% interval is about ±10 points
(the paper's evaluation protocol). These helpers make the interval the default: `binomial_ci` for success rates, `mean_ci` for
averaged scores such as TicTacToe's win 1 / draw 0.5 / loss 0, and `seed_spread` for repeated runs.

Wilson intervals need only the standard library; Clopper–Pearson and the t-interval use scipy, which nashpy
already requires, imported only when asked for.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from statistics import NormalDist

from gift.errors import ConfigError, check_choice

CI_METHODS = ("wilson", "clopper-pearson")


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its interval: `value` in [low, high], from `n` observations.

    Values are fractions (0.57, not 57); `str()` shows percent, e.g. "57.0 [47.2, 66.3] (n=100)".
    With n == 0 everything is NaN and the text says "n/a (n=0)".
    """

    value: float
    low: float
    high: float
    n: int

    def format(self, percent: bool = True, digits: int = 1) -> str:
        """`value [low, high] (n=…)`, in percent by default."""
        if self.n == 0 or math.isnan(self.value):
            return f"n/a (n={self.n})"
        k = 100.0 if percent else 1.0

        def show(x: float) -> str:
            return "nan" if math.isnan(x) else f"{k * x:.{digits}f}"

        return f"{show(self.value)} [{show(self.low)}, {show(self.high)}] (n={self.n})"

    def __str__(self) -> str:
        return self.format()

    @property
    def half_width(self) -> float:
        """Half the interval's length: the '±' people quote."""
        return (self.high - self.low) / 2.0

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


EMPTY_ESTIMATE = Estimate(math.nan, math.nan, math.nan, 0)


@dataclass(frozen=True)
class SeedSpread:
    """Summary of one metric over repeated runs (seeds): the spread a single run hides."""

    mean: float
    std: float
    """Sample standard deviation (ddof=1); NaN with a single run."""
    min: float
    max: float
    n: int

    def format(self, percent: bool = False, digits: int = 2) -> str:
        k = 100.0 if percent else 1.0
        std = "nan" if math.isnan(self.std) else f"{k * self.std:.{digits}f}"
        return (
            f"{k * self.mean:.{digits}f} ± {std} "
            f"(min {k * self.min:.{digits}f}, max {k * self.max:.{digits}f}, runs={self.n})"
        )

    def __str__(self) -> str:
        return self.format()


def _check_level(level: float) -> None:
    if isinstance(level, bool) or not isinstance(level, int | float) or not 0.0 < level < 1.0:
        raise ConfigError(f"level={level!r} is out of range; allowed: 0 < level < 1 (e.g. 0.95)")


def _z(level: float) -> float:
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def _scipy_stats(what: str):
    try:
        from scipy import stats
    except ImportError as err:  # pragma: no cover - scipy ships with nashpy
        raise ConfigError(f"{what} needs scipy; install it with `pip install scipy`") from err
    return stats


def binomial_ci(successes: int, n: int, level: float = 0.95, method: str = "wilson") -> Estimate:
    """Success rate `successes / n` with a two-sided interval for a binomial proportion.

    "wilson" (default) is the Wilson score interval: it stays inside [0, 1] and keeps its coverage near 0 and 1,
    where the textbook normal interval collapses to a point. "clopper-pearson" is the exact (conservative)
    interval from beta quantiles.
    """
    check_choice("method", method, CI_METHODS)
    _check_level(level)
    for name, v in (("successes", successes), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0:
            raise ConfigError(f"{name}={v!r} must be a non-negative integer")
    successes, n = int(successes), int(n)
    if successes > n:
        raise ConfigError(f"successes={successes} is more than n={n}")
    if n == 0:
        return EMPTY_ESTIMATE
    p = successes / n
    if method == "wilson":
        z = _z(level)
        z2 = z * z
        denom = 1.0 + z2 / n
        center = (p + z2 / (2 * n)) / denom
        half = (z / denom) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
        low, high = max(0.0, center - half), min(1.0, center + half)
        # Exact endpoints at the boundaries (the formula gives them up to rounding).
        low = 0.0 if successes == 0 else low
        high = 1.0 if successes == n else high
    else:
        beta = _scipy_stats("Clopper-Pearson intervals").beta
        alpha = 1.0 - level
        low = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, n - successes + 1))
        high = 1.0 if successes == n else float(beta.ppf(1 - alpha / 2, successes + 1, n - successes))
    return Estimate(value=p, low=low, high=high, n=n)


def proportion(outcomes: Iterable[bool], level: float = 0.95, method: str = "wilson") -> Estimate:
    """`binomial_ci` from a sequence of per-item booleans (True = correct)."""
    flags = [bool(x) for x in outcomes]
    return binomial_ci(sum(flags), len(flags), level=level, method=method)


def mean_ci(
    values: Iterable[float], level: float = 0.95, bounds: tuple[float, float] | None = None
) -> Estimate:
    """Mean with a Student-t interval: mean ± t(n−1) · s / √n.

    Meant for bounded scores such as TicTacToe (1 / 0.5 / 0). `bounds` clips the interval to the possible range.
    With a single value, or when every value is equal, the t-interval carries no width information: a lone
    value gives NaN bounds, and identical values give a zero-width interval (report n alongside it).
    """
    _check_level(level)
    xs = [float(v) for v in values]
    if any(math.isnan(x) for x in xs):
        raise ConfigError("mean_ci: values contain NaN; drop failed items before averaging")
    n = len(xs)
    if n == 0:
        return EMPTY_ESTIMATE
    mean = math.fsum(xs) / n
    if n == 1:
        return Estimate(mean, math.nan, math.nan, 1)
    var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1)
    t = float(_scipy_stats("t-intervals").t.ppf(0.5 + level / 2.0, n - 1))
    half = t * math.sqrt(var / n)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(bounds[0], low), min(bounds[1], high)
    return Estimate(mean, low, high, n)


def seed_spread(values: Iterable[float]) -> SeedSpread:
    """Mean, sample standard deviation, min and max of one metric across repeated seeds."""
    xs = [float(v) for v in values]
    if not xs:
        raise ConfigError("seed_spread: no values given; pass one metric value per seed")
    n = len(xs)
    mean = math.fsum(xs) / n
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else math.nan
    return SeedSpread(mean=mean, std=std, min=min(xs), max=max(xs), n=n)
