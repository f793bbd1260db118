"""Per-step training metrics from trajectory records and what a run leaves in its folder besides them: sample
trajectories, summary.json, plots, the end table.

Metric keys are the same whatever the mode, so that runs of different modes overlay in TensorBoard and W&B:

- `train/<metric>`: every trajectory of the step (reward, success, format_error_rate, turns, …).
- `game/<game-id>/<metric>`: each game played in the step, from the episodes' final info — a single game, a
  mixed or CST task, or a sub-game of a nested trajectory alike: `reward` (the game's terminal reward, 0 when it
  did not finish), `success`, `finished` (it reached a terminal reward) and `turns`. A game repeated inside one
  nested trajectory adds `#2`, `#3`, … to its id.
- `task/<task-name>/<metric>`: the trajectory-level figures of each task (a mixed or CST game, or a nested
  composite) when the run samples more than one task: what `train/` gives for all of them.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gift.answers import answer_diversity
from gift.compose import summarize_subgames
from gift.fileio import write_text_atomic
from gift.redact import redact_text

UPDATE_KEYS = {
    "entropy_mean": "train/entropy",
    "pg_clipfrac": "train/clip_frac",
    "pg_clipfrac_lower": "train/dual_clip_frac",
    "ppo_kl": "train/approx_kl",
    "kl_mean": "train/kl",
    "pg_loss": "train/pg_loss",
    "ratio_mean": "train/ratio",
    "grad_norm": "train/grad_norm",
    "grad_norm_max": "train/grad_norm_max",
    "optimizer_steps": "train/optimizer_steps",
    "logprob_gap": "train/logprob_gap",
    "is_masked_frac": "train/is_masked_frac",
    "is_ratio_mean": "train/is_ratio_mean",
    "is_ratio_max": "train/is_ratio_max",
    "mismatch_kl": "train/mismatch_kl",
}


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan


def outcome_metrics(records: Sequence[Mapping[str, Any]], prefix: str) -> dict[str, float]:
    """Reward, success, error rates and lengths of a set of trajectories (opponent failures excluded)."""
    valid = [r for r in records if not r["opponent_failed"]]
    turns = sum(r["num_turns"] for r in valid)
    replies = [n for r in records for n in r["reply_lengths"]]
    return {
        f"{prefix}/reward": _mean(r["total_reward"] for r in valid),
        f"{prefix}/success": _mean(float(r["success"]) for r in valid),
        f"{prefix}/format_error_rate": sum(r["format_errors"] for r in valid) / turns if turns else math.nan,
        f"{prefix}/invalid_rate": sum(r["invalid_actions"] for r in valid) / turns if turns else math.nan,
        f"{prefix}/opponent_failures": float(sum(bool(r["opponent_failed"]) for r in records)),
        f"{prefix}/reply_len": _mean(replies),
        f"{prefix}/turns": _mean(r["num_turns"] for r in valid),
        f"{prefix}/context_truncated": _mean(float(r["context_truncated"]) for r in records),
    }


def game_metrics(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """`game/<game-id>/{reward,success,finished,turns}` of every game in `records` (opponent failures excluded).

    Read from each episode's final info, which a plain game and a nested composite describe alike
    (`gift.compose.flatten_subgames`), so a game's figures do not depend on the training mode.
    """
    infos = [r["final_info"] for r in records if not r["opponent_failed"]]
    return {f"game/{k}": v for k, v in summarize_subgames(infos).items()}


def step_metrics(
    records: Sequence[Mapping[str, Any]],
    plan_stats: Sequence[Mapping[str, float]],
    update: Mapping[str, float],
    per_task: bool | None = None,
) -> dict[str, float]:
    """Everything logged for one step. `plan_stats` holds one filter summary per process.

    `per_task` adds `task/<name>/…` for each task of the step; by default when the step has more than one task
    (the trainer sets it for every run that samples several tasks, so that a CST step has it too).
    """
    metrics = outcome_metrics(records, "train")
    by_task: dict[str, list] = defaultdict(list)
    for r in records:
        by_task[r["task"]].append(r)
    if per_task if per_task is not None else len(by_task) > 1:
        for task, recs in by_task.items():
            metrics.update(outcome_metrics(recs, f"task/{task}"))
    metrics.update(game_metrics(records))
    metrics.update(answer_diversity(records))
    for key in ("groups_total", "groups_kept", "groups_zero_std", "dropped_opponent_failed"):
        metrics[f"train/{key}"] = float(sum(s.get(key, 0.0) for s in plan_stats))
    metrics["train/trajectories"] = float(len(records))
    for key, name in UPDATE_KEYS.items():
        if key in update:
            metrics[name] = float(update[key])
    return metrics


def driver_metrics(stats: Any, backend: Any) -> dict[str, float]:
    """This process's rollout counters: generation calls, other seats' calls per game, the prefix cache."""
    out: dict[str, float] = {
        "rollout/generate_calls": float(stats.generate_calls),
        "rollout/opponent_batches": float(stats.opponent_batches),
        "rollout/max_in_flight": float(stats.max_in_flight),
    }
    for game, seat in sorted(stats.per_game.items()):
        calls = max(seat.calls, 1)
        out.update(
            {
                f"opponent/{game}/calls": float(seat.calls),
                f"opponent/{game}/errors": float(seat.errors),
                f"opponent/{game}/rejected": float(seat.invalid),
                f"opponent/{game}/forfeits": float(seat.forfeits),
                f"opponent/{game}/latency_s": seat.latency_s / calls,
            }
        )
    if getattr(backend, "store", None) is not None:
        out.update(
            {
                "rollout/kv_hits": float(stats.kv_hits),
                "rollout/kv_cached_tokens": float(stats.kv_cached_tokens),
                "rollout/kv_prefilled_tokens": float(stats.kv_prefilled_tokens),
            }
        )
    return out


def summary_rows(rows: Sequence[Mapping[str, Any]], fraction: float = 0.2) -> list[dict[str, Any]]:
    """First-steps vs last-steps means of every reward/success/format metric (the end-of-run table)."""
    if not rows:
        return []
    window = max(1, int(len(rows) * fraction))
    keys = sorted({k for r in rows for k in r if k.endswith(("/reward", "/success", "/format_error_rate"))})
    out = []
    for key in keys:
        values = [
            (r["step"], r[key]) for r in rows if isinstance(r.get(key), int | float) and math.isfinite(r[key])
        ]
        if not values:
            continue
        first = _mean(v for _, v in values[:window])
        last = _mean(v for _, v in values[-window:])
        out.append({"metric": key, "first": first, "last": last, "steps": len(values), "window": window})
    return out


def save_samples(run_dir: Path, step: int, records: list[dict], count: int) -> None:
    """A few full trajectories (the first of each group first) as JSON lines, URL credentials masked."""
    seen, chosen = set(), []
    for rec in records:
        if rec["group_id"] not in seen:
            seen.add(rec["group_id"])
            chosen.append(rec)
    chosen = (chosen + [r for r in records if r not in chosen])[:count]
    out = run_dir / "samples"
    out.mkdir(exist_ok=True)
    lines = "".join(redact_text(json.dumps(rec, default=str)) + "\n" for rec in chosen)
    write_text_atomic(out / f"step-{step:06d}.jsonl", lines)


def finish_run(run_dir: Path, plots: bool, heldout: Mapping[str, Any] | None = None) -> None:
    """Plots, summary.json (first vs last steps, warnings, baselines, the held-out evaluation when `heldout`
    holds its seeds and the starting and trained models' results) and the end tables with the warnings."""
    from gift.heldout import heldout_section
    from gift.metrics import read_metrics

    metrics = read_metrics(run_dir / "metrics.jsonl")
    rows = summary_rows(metrics)
    warnings, baselines = run_end_checks(run_dir, metrics)
    summary: dict[str, Any] = {"metrics": rows, "warnings": warnings, "baselines": baselines}
    if heldout is not None and heldout.get("trained") is not None:
        summary["heldout"] = heldout_section(heldout["seeds"], heldout.get("start"), heldout["trained"], baselines)
    write_text_atomic(run_dir / "summary.json", json.dumps(summary, indent=2))
    if plots:
        from gift.plots import write_plots

        write_plots(run_dir)
    print_summary(rows, run_dir, warnings, summary.get("heldout"))


def run_end_checks(run_dir: Path, metrics: Sequence[Mapping[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    """Collapse and best-constant warnings with the baselines behind them; a failure to compute the baselines
    becomes a warning rather than losing the end of a finished run."""
    from gift.run_checks import run_baselines, run_games, run_warnings

    try:
        baselines = run_baselines(run_dir)
    except Exception as err:  # noqa: BLE001 - the run is over; report, do not crash
        return [f"trivial baselines could not be computed: {err}"], {}
    return run_warnings(metrics, baselines, run_games(metrics, baselines)), baselines


def print_summary(
    rows: list[dict], run_dir: Path, warnings: Sequence[str] = (), heldout: Mapping[str, Any] | None = None
) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"gift-rl run {run_dir.name}")
    for col in ("metric", "first steps", "last steps", "change"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for row in rows:
        table.add_row(
            row["metric"], f"{row['first']:.3f}", f"{row['last']:.3f}", f"{row['last'] - row['first']:+.3f}"
        )
    console = Console()
    console.print(table)
    if heldout:
        from gift.heldout import table_rows

        held = Table(title=f"held-out success, % [95% CI] ({heldout['episodes_per_task']} seeds per task)")
        for col in ("task / game", "starting model", "trained", "random", "best constant"):
            held.add_column(col, justify="left" if col == "task / game" else "right")
        for row in table_rows(heldout):
            held.add_row(*row)
        console.print(held)
    for text in warnings:
        console.print(f"[bold yellow]warning:[/] {text}", highlight=False)
    console.print(f"run folder: {run_dir}")
