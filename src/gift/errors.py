"""User-facing errors: one clear line that names the bad value and what is allowed.

The CLI prints `ConfigError` messages as a single line without a traceback, so every message raised here must
stand on its own.
"""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(ValueError):
    """A bad option, config value, game id or missing file, caught before any model loads."""


def check_choice(name: str, value: object, allowed: Iterable[object]) -> None:
    """Raise `ConfigError` unless `value` is one of `allowed`."""
    allowed = list(allowed)
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise ConfigError(f"{name}={value!r} is not allowed; choose one of: {shown}")


def check_range(name: str, value: float, low: float | None = None, high: float | None = None) -> None:
    """Raise `ConfigError` unless low <= value <= high (either bound may be None)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name}={value!r} must be a number")
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ConfigError(f"{name}={value!r} is out of range; allowed: {lo} <= {name} <= {hi}")


class TrainingStopped(ConfigError):
    """A run that cannot go on (a non-finite loss, gradient or weight): one line, and no checkpoint of it."""
