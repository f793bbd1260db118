"""A study's results: curves of mean ± 95% CI across seeds, final tables per mode, paired differences between modes.

Written to the study folder: curves.csv, runs.csv (every run's final numbers), final.csv, paired.csv, report.md
and one curves-<setting>.png per setting. Final values: `train` = a run's mean over its last `final_steps`
training steps; `eval` = its held-out success from `gift eval`. Intervals across seeds are Student-t; paired
differences (same seed, two modes) carry a percentile-bootstrap interval over seeds.
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gift.study.curves import RunData, smoothed
from gift.study.schema import Study
from gift.study.stats import Interval, bootstrap_ci, mean_ci


def curve_rows(runs: Sequence[RunData], smooth: int) -> list[dict[str, Any]]:
    """One row per (setting, mode, curve, step): mean and 95% t-interval across the seeds that logged it."""
    groups: dict[tuple[str, str, str], list[dict[int, float]]] = {}
    for run in runs:
        for name, curve in run.curves.items():
            groups.setdefault((run.cell.setting, run.cell.mode, name), []).append(smoothed(curve, smooth))
    rows = []
    for (setting, mode, name), curves in groups.items():
        for step in sorted({s for c in curves for s in c}):
            ci = mean_ci([c[step] for c in curves if step in c])
            rows.append({"setting": setting, "mode": mode, "metric": name, "step": step, **_ci(ci)})
    return rows


def run_values(runs: Sequence[RunData], final_steps: int) -> list[dict[str, Any]]:
    """Every run's final numbers: `train` (last steps' mean) and `eval` (held-out success)."""
    rows = []
    for run in runs:
        base = {"setting": run.cell.setting, "mode": run.cell.mode, "seed": run.cell.seed}
        for name, value in sorted(run.final(final_steps).items()):
            rows.append({**base, "source": "train", "metric": name, "value": value})
        for suite, score in sorted(run.eval.items()):
            rows.append({**base, "source": "eval", "metric": f"game/{suite}/success", "value": score.value,
                         "n": score.n})  # fmt: skip
    return rows


def _key(row: dict[str, Any]) -> tuple[str, str, str]:
    return row["setting"], row["source"], row["metric"]


def final_rows(values: Sequence[dict[str, Any]], modes: Sequence[str]) -> list[dict[str, Any]]:
    """Per (setting, source, metric, mode): mean and 95% t-interval of the final values across seeds."""
    rows = []
    for key in sorted({_key(v) for v in values}):
        for mode in modes:
            picked = [v["value"] for v in values if _key(v) == key and v["mode"] == mode]
            if picked:
                setting, source, metric = key
                rows.append({"setting": setting, "source": source, "metric": metric, "mode": mode,
                             **_ci(mean_ci(picked))})  # fmt: skip
    return rows


def paired_rows(
    values: Sequence[dict[str, Any]], modes: Sequence[str], resamples: int
) -> list[dict[str, Any]]:
    """Per setting, metric and pair of modes (a, b): the mean of a − b over seeds both have, bootstrap 95% CI."""
    by_seed: dict[tuple[tuple[str, str, str], str], dict[int, float]] = {}
    for v in values:
        by_seed.setdefault((_key(v), v["mode"]), {})[v["seed"]] = v["value"]
    rows = []
    for key in sorted({_key(v) for v in values}):
        for a, b in itertools.combinations(modes, 2):
            first, second = by_seed.get((key, a), {}), by_seed.get((key, b), {})
            seeds = sorted(set(first) & set(second))
            if not seeds:
                continue
            diffs = [first[s] - second[s] for s in seeds]
            setting, source, metric = key
            rows.append({"setting": setting, "source": source, "metric": metric, "mode_a": a, "mode_b": b,
                         **_ci(bootstrap_ci(diffs, resamples)), "a_better": sum(d > 0 for d in diffs),
                         "seeds": " ".join(str(s) for s in seeds)})  # fmt: skip
    return rows


def reference_rows(runs: Sequence[RunData]) -> list[dict[str, Any]]:
    """Reference policies gift eval reported next to the runs (the same for every run; the first one kept)."""
    seen: dict[tuple[str, str, str], dict[str, Any]] = {}
    for run in runs:
        for label, scores in run.references.items():
            for suite, score in scores.items():
                key = (run.cell.setting, label, suite)
                seen.setdefault(
                    key,
                    {
                        "setting": key[0],
                        "reference": label,
                        "metric": f"game/{suite}/success",
                        "mean": score.value,
                        "low": score.low,
                        "high": score.high,
                        "n": score.n,
                    },
                )
    return list(seen.values())  # fmt: skip


def _ci(ci: Interval) -> dict[str, Any]:
    return {"mean": ci.mean, "low": ci.low, "high": ci.high, "n": ci.n}


def _interval(row: dict[str, Any]) -> str:
    return Interval(row["mean"], row["low"], row["high"], row["n"]).format()


# ------------------------------------------------------------------------------------------------ writing
def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r)) or ["empty"]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            )


def _table(rows: Sequence[dict[str, Any]], modes: Sequence[str], label: str = "mode") -> list[str]:
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    lines = ["| " + " | ".join([label, *metrics]) + " |", "|" + "---|" * (len(metrics) + 1)]
    for mode in modes:
        cells = {r["metric"]: _interval(r) for r in rows if r.get(label) == mode}
        if cells:
            lines.append("| " + " | ".join([mode, *(cells.get(m, "n/a") for m in metrics)]) + " |")
    return lines


def markdown(study: Study, finals: list, paired: list, references: list, status: dict[str, str],
             figures: dict[str, str]) -> str:  # fmt: skip
    done = sum(1 for s in status.values() if s == "done")
    lines = [f"# Study {study.name}", "", f"Runs finished: {done} of {len(status)} "
             f"({len(study.settings)} setting(s) × {len(study.modes)} mode(s) × {len(study.seeds)} seed(s)).", "",
             "Values: mean [95% t-interval across seeds] (n = seeds). `train` = mean of a run's last "
             f"{study.final_steps} training steps; `eval` = held-out success from `gift eval`.", ""]  # fmt: skip
    for setting in study.settings:
        lines += [f"## {setting}", ""]
        for source, title in (("eval", "Held-out evaluation"), ("train", "Final training steps")):
            rows = [r for r in finals if r["setting"] == setting and r["source"] == source]
            if rows:
                lines += [f"### {title}", "", *_table(rows, study.modes), ""]
        refs = [r for r in references if r["setting"] == setting]
        if refs:
            names = list(dict.fromkeys(r["reference"] for r in refs))
            lines += ["Reference policies (gift eval):", "", *_table(refs, names, "reference"), ""]
        pairs = [r for r in paired if r["setting"] == setting]
        if pairs:
            lines += ["### Paired differences (a − b, same seed; 95% bootstrap interval over seeds)", "",
                      "| source | metric | a − b | difference | a better |", "|---|---|---|---|---|"]  # fmt: skip
            for r in pairs:
                lines.append(f"| {r['source']} | {r['metric']} | {r['mode_a']} − {r['mode_b']} | "
                             f"{_interval(r)} | {r['a_better']}/{r['n']} |")  # fmt: skip
            lines.append("")
        if setting in figures:
            lines += [f"![{setting}]({figures[setting]})", ""]
    missing = [name for name, s in status.items() if s != "done"]
    if missing:
        lines += ["Not finished (left out above): " + ", ".join(f"{n} ({status[n]})" for n in missing), ""]
    return "\n".join(lines)
