"""What the study reads from a run: its per-step curves from metrics.jsonl and its held-out scores.

Per-game figures are `game/<game-id>/<metric>` in every mode; older runs logged `sub/<game>/…` (nested) and
`task/<game>/…` (mixed). `game_metric` reads either, so studies of old and new runs aggregate the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gift.study.cells import Cell
from gift.study.evaluate import Score, read_scores

GAME_PREFIXES = ("game", "sub", "task")
"""Per-game key prefixes, the current scheme first."""
RUN_METRICS = ("train/reward", "train/entropy", "train/grad_norm")
GAME_METRICS = ("success", "reward")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def game_metric(row: Mapping[str, Any], game: str, metric: str, sole_game: bool = False) -> float | None:
    """`metric` of `game` in one metrics row under any naming scheme; a run of one game falls back to train/."""
    for prefix in GAME_PREFIXES:
        value = _number(row.get(f"{prefix}/{game}/{metric}"))
        if value is not None:
            return value
    return _number(row.get(f"train/{metric}")) if sole_game else None


def curve_names(games: tuple[str, ...] | list[str]) -> list[str]:
    """The curves of a run, named in the current scheme."""
    return [f"game/{g}/{m}" for m in GAME_METRICS for g in games] + list(RUN_METRICS)


def run_curves(rows: list[Mapping[str, Any]], games: tuple[str, ...]) -> dict[str, dict[int, float]]:
    """Curve name → {step: value} over the rows (missing and non-finite values left out)."""
    curves: dict[str, dict[int, float]] = {name: {} for name in curve_names(games)}
    for row in rows:
        step = int(row["step"])
        for game in games:
            for metric in GAME_METRICS:
                value = game_metric(row, game, metric, sole_game=len(games) == 1)
                if value is not None:
                    curves[f"game/{game}/{metric}"][step] = value
        for key in RUN_METRICS:
            value = _number(row.get(key))
            if value is not None:
                curves[key][step] = value
    return curves


def smoothed(curve: dict[int, float], window: int) -> dict[int, float]:
    """Trailing moving average over the last `window` logged steps."""
    if window <= 1:
        return dict(curve)
    steps = sorted(curve)
    values = [curve[s] for s in steps]
    return {s: sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
            for i, s in enumerate(steps)}  # fmt: skip


@dataclass
class RunData:
    """One run's curves, final training values and held-out scores."""

    cell: Cell
    curves: dict[str, dict[int, float]]
    eval: dict[str, Score] = field(default_factory=dict)
    references: dict[str, dict[str, Score]] = field(default_factory=dict)

    def final(self, last: int) -> dict[str, float]:
        """Each curve's mean over its last `last` logged steps."""
        out = {}
        for name, curve in self.curves.items():
            values = [curve[s] for s in sorted(curve)[-last:]]
            if values:
                out[name] = sum(values) / len(values)
        return out


def read_run(cell: Cell) -> RunData | None:
    """The run's data, or None when it has logged no step yet."""
    from gift.metrics import read_metrics

    path = Path(cell.run_dir) / "metrics.jsonl"
    rows = read_metrics(path) if path.is_file() else []
    if not rows:
        return None
    scores, references = read_scores(cell.eval_dir)
    return RunData(cell, run_curves(rows, cell.games), scores, references)
