"""PNG plots of a run's metrics.jsonl, refreshed during the run: success and reward per game, answer diversity,
policy entropy and gradient norm.

Each figure shows the per-step values as points, a smoothed line (the mean over a trailing window of steps) and a
95% band around it: for success rates the Wilson interval of the window's pooled episodes (n from
game/<id>/episodes), for other metrics mean ± 1.96 standard errors of the window's steps. Games (and the
sub-games of nested runs) are lines of one figure; on the success figure the random-legal-move and best-constant
baselines of each game (`baselines.json`, see `gift.run_checks`) are dashed lines in the game's colour.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gift.evaluation.stats import binomial_ci
from gift.metrics import read_metrics

GAME_PREFIXES = ("game", "sub", "task")
BASELINE_STYLES = {"constant": "--", "random": ":"}
_Z95 = 1.959963984540054


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for row in rows:
        value = _number(row.get(key))
        if value is not None:
            xs.append(int(row["step"]))
            ys.append(value)
    return xs, ys


def game_keys(rows: Sequence[Mapping[str, Any]], metric: str) -> dict[str, str]:
    """Game id → the key holding its `metric` (game/<id>/…, else the older sub/… or task/… names)."""
    found: dict[str, str] = {}
    for prefix in GAME_PREFIXES:
        for key in sorted({k for row in rows for k in row}):
            parts = key.split("/")
            if len(parts) == 3 and parts[0] == prefix and parts[2] == metric:
                found.setdefault(parts[1], key)
    return found


def window_size(steps: int) -> int:
    """Trailing smoothing window: about a tenth of the steps so far, at least 1."""
    return max(1, round(steps / 10))


def smooth_rate(
    successes: Sequence[float], counts: Sequence[float], window: int
) -> list[tuple[float, float, float]]:
    """(rate, low, high) per step: the pooled success of the trailing window with its Wilson interval."""
    out = []
    for i in range(len(successes)):
        lo = max(0, i - window + 1)
        n = sum(counts[lo : i + 1])
        wins = sum(s * c for s, c in zip(successes[lo : i + 1], counts[lo : i + 1], strict=True))
        est = binomial_ci(round(wins), round(n)) if n >= 1 else None
        out.append((est.value, est.low, est.high) if est is not None else (math.nan,) * 3)
    return out


def smooth_mean(values: Sequence[float], window: int) -> list[tuple[float, float, float]]:
    """(mean, low, high) per step: the trailing window's mean ± 1.96 standard errors (no band for one step)."""
    out = []
    for i in range(len(values)):
        chunk = values[max(0, i - window + 1) : i + 1]
        mean = sum(chunk) / len(chunk)
        if len(chunk) < 2:
            out.append((mean, mean, mean))
            continue
        se = math.sqrt(sum((v - mean) ** 2 for v in chunk) / (len(chunk) - 1) / len(chunk))
        out.append((mean, mean - _Z95 * se, mean + _Z95 * se))
    return out


def _counts(rows: Sequence[Mapping[str, Any]], game: str, steps: Sequence[int]) -> list[float]:
    by_step = {int(r["step"]): _number(r.get(f"game/{game}/episodes")) for r in rows}
    return [by_step.get(s) or 1.0 for s in steps]


def _draw(ax: Any, xs: list[int], ys: list[float], band: list[tuple[float, float, float]], label: str) -> str:
    """Points, smoothed line and band of one series; returns its colour."""
    (line,) = ax.plot(xs, [b[0] for b in band], linewidth=1.8, label=label)
    color = line.get_color()
    ax.scatter(xs, ys, s=10, alpha=0.45, color=color)
    ax.fill_between(xs, [b[1] for b in band], [b[2] for b in band], color=color, alpha=0.15, linewidth=0)
    return color


def _figure(plt: Any, title: str, ylabel: str) -> tuple[Any, Any]:
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7.2, 4.4), dpi=100)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    return fig, ax


def _baseline_lines(ax: Any, entries: Sequence[Mapping[str, Any]], color: str, game: str) -> None:
    for entry in entries:
        style = BASELINE_STYLES.get(str(entry.get("policy")))
        value = _number(entry.get("value"))
        if style is None or value is None:
            continue
        answer = f" {entry['answer']!r}" if entry.get("answer") is not None else ""
        ax.axhline(value, color=color, linestyle=style, linewidth=1.0, alpha=0.9,
                   label=f"{game}: {entry['policy']}{answer} {100 * value:.0f}%")  # fmt: skip


def success_figure(plt: Any, rows: Sequence[Mapping[str, Any]], baselines: Mapping[str, Any]) -> Any | None:
    """Success rate per game with Wilson bands and the games' trivial baselines as dashed lines."""
    keys = game_keys(rows, "success")
    if not keys:
        only = next(iter(baselines), None) if len(baselines) == 1 else None
        keys = {only or "all games": "train/success"}
    series = {g: _series(rows, k) for g, k in keys.items()}
    series = {g: s for g, s in series.items() if s[0]}
    if not series:
        return None
    window = window_size(max(len(s[0]) for s in series.values()))
    fig, ax = _figure(
        plt, f"Success rate per game (line: {window}-step mean; band: 95% Wilson)", "success rate"
    )
    for game, (xs, ys) in series.items():
        color = _draw(ax, xs, ys, smooth_rate(ys, _counts(rows, game, xs), window), game)
        _baseline_lines(ax, baselines.get(game, []), color, game)
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=7, loc="best")
    return fig


def metric_figure(plt: Any, rows: Sequence[Mapping[str, Any]], keys: Mapping[str, str], title: str,
                  ylabel: str) -> Any | None:  # fmt: skip
    """Any per-step metric, one line per key, with a ±1.96 SE band over the trailing window."""
    series = {label: _series(rows, key) for label, key in keys.items()}
    series = {label: s for label, s in series.items() if s[0]}
    if not series:
        return None
    window = window_size(max(len(s[0]) for s in series.values()))
    fig, ax = _figure(plt, f"{title} (line: {window}-step mean; band: 95%)", ylabel)
    for label, (xs, ys) in series.items():
        _draw(ax, xs, ys, smooth_mean(ys, window), label)
    if len(series) > 1:
        ax.legend(fontsize=7, loc="best")
    return fig


def write_plots(run_dir: str | Path, baselines: Mapping[str, Any] | None = None) -> list[Path]:
    """Write success.png, reward.png, answers.png, entropy.png and grad_norm.png next to metrics.jsonl.

    `baselines` (game → baseline rows as dicts) defaults to the run's `baselines.json`, computed once if absent.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir / "metrics.jsonl")
    if baselines is None:
        from gift.run_checks import run_baselines

        baselines = run_baselines(run_dir)
    rewards = game_keys(rows, "reward") or {"all games": "train/reward"}
    figures = {
        "success.png": success_figure(plt, rows, baselines),
        "reward.png": metric_figure(plt, rows, rewards, "Reward per game", "reward"),
        "answers.png": metric_figure(plt, rows, game_keys(rows, "top_answer_share"),
                                     "Share of the most common answer per game", "top answer share"),
        "entropy.png": metric_figure(plt, rows, {"policy": "train/entropy"}, "Policy entropy", "entropy (nats)"),
        "grad_norm.png": metric_figure(plt, rows, {"policy": "train/grad_norm"}, "Gradient norm", "grad norm"),
    }  # fmt: skip
    out = []
    for name, fig in figures.items():
        if fig is None:
            continue
        fig.tight_layout()
        fig.savefig(run_dir / name)
        plt.close(fig)
        out.append(run_dir / name)
    return out


def refresh_plots(run_dir: str | Path, step: int, every: int, enabled: bool = True) -> None:
    """Rewrite the plots every `every` steps during a run; a plotting error is reported, never raised."""
    if not enabled or step % every:
        return
    try:
        write_plots(run_dir)
    except Exception as err:  # noqa: BLE001 - a plot must not stop training
        print(f"warning: plots not refreshed at step {step}: {err}")
