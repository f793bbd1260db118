"""Intervals across seeds (numpy only): a Student-t interval of the mean and a bootstrap interval of paired
differences. With a handful of seeds both are wide; that is the honest answer, not a defect."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)  # fmt: skip
"""97.5% quantiles of Student's t for 1..30 degrees of freedom."""
_Z975 = 1.959963984540054


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float
    n: int

    def format(self) -> str:
        """ "mean [low, high] (n=…)" with three significant digits (success rates, rewards and tiny norms)."""
        if self.n == 0 or math.isnan(self.mean):
            return "n/a"
        if math.isnan(self.low):
            return f"{self.mean:.3g} (n={self.n})"
        return f"{self.mean:.3g} [{self.low:.3g}, {self.high:.3g}] (n={self.n})"


def t_critical(df: int) -> float:
    """Two-sided 95% critical value of Student's t: the table to 30, then the Cornish-Fisher expansion."""
    if df < 1:
        return math.nan
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray([v for v in values if v is not None], dtype=float)
    return array[np.isfinite(array)]


def mean_ci(values: Sequence[float]) -> Interval:
    """Mean and 95% t-interval; one value has no interval (nan bounds)."""
    x = _finite(values)
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1)
    half = t_critical(n - 1) * float(x.std(ddof=1)) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def bootstrap_ci(values: Sequence[float], resamples: int = 10000, seed: int = 0) -> Interval:
    """Mean and 95% percentile-bootstrap interval (seeds resampled with replacement); fewer than 2: no interval."""
    x = _finite(values)
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return Interval(mean, float(low), float(high), n)
