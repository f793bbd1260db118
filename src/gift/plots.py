"""PNG plots of a run's metrics.jsonl: reward and success overall and per game (`game/<id>/…`, the same keys in
every mode), entropy, gradient norm."""

from __future__ import annotations

from pathlib import Path

from gift.metrics import read_metrics


def _series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for row in rows:
        value = row.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            xs.append(row["step"])
            ys.append(float(value))
    return xs, ys


def _keys(rows: list[dict], suffix: str) -> list[str]:
    """`train/<suffix>` and every `game/<id>/<suffix>` (task-level figures repeat them and are left out)."""
    keys = {k for row in rows for k in row if k.endswith(suffix) and k.startswith(("train/", "game/"))}
    return sorted(keys, key=lambda k: (not k.startswith("train/"), k))


def write_plots(run_dir: str | Path) -> list[Path]:
    """Write reward.png, success.png, entropy.png and grad_norm.png next to metrics.jsonl; return the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir / "metrics.jsonl")
    out: list[Path] = []
    panels = [
        ("reward.png", "reward", _keys(rows, "/reward")),
        ("success.png", "success rate", _keys(rows, "/success")),
        ("entropy.png", "policy entropy", ["train/entropy"]),
        ("grad_norm.png", "gradient norm", ["train/grad_norm"]),
    ]
    for filename, label, keys in panels:
        keys = [k for k in keys if _series(rows, k)[0]]
        if not keys:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
        for key in keys:
            xs, ys = _series(rows, key)
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=key)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = run_dir / filename
        fig.savefig(path)
        plt.close(fig)
        out.append(path)
    return out
