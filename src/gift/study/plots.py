"""The study figure (the paper's Figure 4): one panel per curve, one line per mode, a 95% band across seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TITLES = {"train/reward": "reward", "train/entropy": "entropy", "train/grad_norm": "gradient norm"}


def _title(metric: str) -> str:
    if metric.startswith("game/"):
        _, game, name = metric.split("/", 2)
        return f"{game} {name}"
    return TITLES.get(metric, metric)


def panels(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Per-game success first, then reward, entropy and gradient norm (per-game rewards stay in the CSV)."""
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    games = [m for m in metrics if m.startswith("game/") and m.endswith("/success")]
    return games + [m for m in TITLES if m in metrics]


def write_figure(path: Path, title: str, rows: Sequence[dict[str, Any]], modes: Sequence[str]) -> bool:
    """Write the PNG; False when there is nothing to plot."""
    names = panels(rows)
    if not names:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    columns = min(3, len(names))
    lines = math.ceil(len(names) / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 3.2 * lines), squeeze=False)
    for ax, metric in zip(axes.flat, names, strict=False):
        for mode in modes:
            points = sorted((r["step"], r["mean"], r["low"], r["high"]) for r in rows
                            if r["metric"] == metric and r["mode"] == mode)  # fmt: skip
            if not points:
                continue
            steps, mean, low, high = (list(v) for v in zip(*points, strict=True))
            (line,) = ax.plot(steps, mean, marker="." if len(steps) < 30 else None, label=mode)
            band = [(s, lo, hi) for s, lo, hi in zip(steps, low, high, strict=True) if not math.isnan(lo)]
            if band:
                bs, bl, bh = zip(*band, strict=True)
                ax.fill_between(bs, bl, bh, color=line.get_color(), alpha=0.2, linewidth=0)
        if metric.endswith("/success"):
            ax.set_ylim(-0.03, 1.03)
        ax.set_title(_title(metric))
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    axes.flat[0].legend()
    fig.suptitle(f"{title}: mean and 95% CI across seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
