"""Seconds per training step one step off (`train.max_staleness=1`) against the on-policy loop, same run.

    python bench/async_steps.py               # tiny model, a few minutes on 2 cores
    python bench/async_steps.py --quick       # smoke run
    python bench/async_steps.py --model embedded --threads 1

Both runs train `gift.trainer.train` on the same single-turn game, model, batch and seeds; only
`train.max_staleness` differs. On-policy a step is rollout + update; one step off the next step's rollouts are
played on a frozen copy of the weights while the update runs, so a step costs about max(rollout, update) when
the machine has a core for each (`--threads` per side: torch threads of the trainer; the rollout thread uses
the same pool size). The first step of every run is a warm-up and is excluded; runs alternate so that load
changes on a shared machine hit both. Reported: mean step time of each and the ratio staleness-1 / on-policy.

Two scenarios: `matrix` (single-turn, scripted opponent: rollout and update both compute, and with a tiny model
both mostly Python, which one interpreter lock serialises) and `tictactoe` against a loopback
OpenAI-compatible opponent that answers after `--latency` s (`bench/latency_server.py`), the slow-LLM-opponent
case the overlap is for.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
from pathlib import Path
from typing import Any

from _common import (
    machine,
    print_header,
    quiet_transformers,
    ratio_text,
    resolve_bench_model,
    versions,
    write_results,
)
from latency_server import LatencyServer

SCENARIOS = ("matrix", "tictactoe")


def run_once(
    args: argparse.Namespace, model_path: str, workdir: Path, staleness: int, index: int, game: str, url: str
) -> dict:
    from gift.config import load_config
    from gift.metrics import read_metrics
    from gift.trainer import train

    batch = args.groups * args.group_size
    overrides = [
        f"model.name={model_path}",
        "model.dtype=float32",
        "task.mode=single",
        f"task.games=[{game}-v0]",
        f"task.groups={args.groups}",
        f"task.group_size={args.group_size}",
        f"rollout.max_new_tokens={args.max_new_tokens}",
        "rollout.max_context=2048",
        "algo.keep_ratio=1.0",
        f"algo.mini_batch_size={batch}",
        f"algo.micro_batch_size={args.micro_batch}",
        f"train.steps={args.steps}",
        f"train.max_staleness={staleness}",
        f"train.run_dir={workdir}",
        f"train.run_name={game}-s{staleness}-{index}",
        f"train.save_every={args.steps + 1}",
        f"train.sample_every={args.steps + 1}",
        "train.progress=false",
        "train.plots=false",
        "train.tensorboard=false",
        "train.device=cpu",
    ]
    if args.threads:
        overrides.append(f"train.threads={args.threads}")
    cfg = load_config(None, overrides)
    if game == "tictactoe":
        opponent = {"kind": "openai", "base_url": url, "model": "bench", "concurrency": 64}
        cfg.task.game_options = {"tictactoe-v0": {"opponent": opponent}}
    with contextlib.redirect_stdout(io.StringIO()):
        run_dir = train(cfg)
    rows = read_metrics(run_dir / "metrics.jsonl")[1:]
    return {
        "step_times": [r["train/step_time"] for r in rows],
        "rollout_times": [r["train/rollout_time"] for r in rows],
        "update_times": [r["train/update_time"] for r in rows],
        "is_masked_frac": [r.get("train/is_masked_frac") for r in rows],
        "mismatch_kl": [r.get("train/mismatch_kl") for r in rows],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="tiny", help="tiny (default), embedded or a model folder")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side, alternating")
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--micro-batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default)")
    parser.add_argument("--latency", type=float, default=0.3, help="tictactoe opponent endpoint latency, s")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated: matrix,tictactoe")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 steps, one run each")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.repeats, args.max_new_tokens = 3, 1, 16
    import torch

    quiet_transformers()
    mach, vers = machine(torch), versions(["torch", "transformers"])
    print_header("training step: one step off vs on-policy", "quick" if args.quick else "default", mach, vers)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, LatencyServer(args.latency) as server:
        work = Path(tmp)
        model_path = resolve_bench_model(args.model, work)
        for game in args.scenarios.split(","):
            runs: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
            for index in range(args.repeats):
                for staleness in (0, 1):
                    runs[staleness].append(
                        run_once(args, model_path, work, staleness, index, game, server.base_url)
                    )
            results[game] = summarise(game, runs)
    write_results(
        "async_steps",
        args.quick,
        {"machine": mach, "versions": vers, "args": vars(args), "scenarios": results},
    )


def summarise(game: str, runs: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for staleness, results in runs.items():
        steps = [t for r in results for t in r["step_times"]]
        summary[staleness] = {
            "step_s": statistics.fmean(steps),
            "step_s_std": statistics.stdev(steps) if len(steps) > 1 else 0.0,
            "rollout_s": statistics.fmean(t for r in results for t in r["rollout_times"]),
            "update_and_wait_s": statistics.fmean(t for r in results for t in r["update_times"]),
        }
        s = summary[staleness]
        print(
            f"{game} max_staleness={staleness}: step {s['step_s']:.3f} ± {s['step_s_std']:.3f} s "
            f"(rollout {s['rollout_s']:.3f} s, update + wait {s['update_and_wait_s']:.3f} s)"
        )
    ratio = summary[1]["step_s"] / summary[0]["step_s"]
    speed = ratio_text(summary[0]["step_s"], summary[1]["step_s"])
    print(f"{game}: step time one step off / on-policy = {ratio:.2f} ({speed} speed-up)")
    return {"summary": summary, "ratio": ratio, "runs": runs}


if __name__ == "__main__":
    main()
