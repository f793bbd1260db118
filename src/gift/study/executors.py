"""Running a study's cells: locally, several at a time within a core budget, or as Slurm jobs through submitit."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from gift.study.cells import Cell, run_cell
from gift.study.schema import SlurmSettings, Study

Log = Callable[[str], None]


def _report(log: Log, index: int, total: int, result: dict[str, Any]) -> None:
    status = "ok" if result["returncode"] == 0 else f"FAILED (exit {result['returncode']})"
    log(f"[{index}/{total}] {result['name']}: {result['action']} {status} {result['seconds']:.0f}s")


def local_workers(study: Study) -> int:
    """Runs at once: the core budget divided by each run's threads (at least one)."""
    if study.cores is not None:
        cores = study.cores
    elif hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))  # the cores this process may use, not the machine's
    else:
        cores = os.cpu_count() or 1
    return max(1, cores // study.threads_per_run)


def run_local(cells: Sequence[Cell], workers: int, log: Log) -> list[dict[str, Any]]:
    """Each cell in a worker thread that waits on its `gift train` / `gift eval` subprocesses."""
    results = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_cell, cell) for cell in cells]
        try:
            for index, future in enumerate(as_completed(futures), start=1):
                results.append(future.result())
                _report(log, index, len(cells), results[-1])
        except KeyboardInterrupt:
            # Ctrl-C reached the running runs too (same process group); start no queued one. A rerun resumes.
            for future in futures:
                future.cancel()
            raise
    return results


class CellJob:
    """A Slurm job of one cell. On the time-limit (or preemption) signal submitit calls `checkpoint`, which
    requeues the same cell: the requeued job finds the run's last checkpoint and resumes from it."""

    def __call__(self, cell: Cell) -> dict[str, Any]:
        return run_cell(cell)

    def checkpoint(self, cell: Cell) -> Any:
        import submitit

        return submitit.helpers.DelayedSubmission(CellJob(), cell)


def _executor(folder: Path, slurm: SlurmSettings, threads: int, name: str) -> Any:
    import submitit

    executor = submitit.AutoExecutor(folder=str(folder), cluster=slurm.cluster)
    params: dict[str, Any] = {
        "name": name,
        "timeout_min": slurm.time,
        "gpus_per_node": slurm.gpus_per_node,
        "cpus_per_task": slurm.cpus_per_task or threads,
        "tasks_per_node": 1,
        "nodes": 1,
    }
    if slurm.mem_gb is not None:
        params["mem_gb"] = slurm.mem_gb
    if slurm.cluster == "slurm":
        params["slurm_array_parallelism"] = slurm.array_parallelism
        optional = {"slurm_partition": slurm.partition, "slurm_account": slurm.account,
                    "slurm_qos": slurm.qos, "slurm_constraint": slurm.constraint}  # fmt: skip
        params.update({k: v for k, v in optional.items() if v is not None})
        if slurm.setup:
            params["slurm_setup"] = list(slurm.setup)
        if slurm.additional_parameters:
            params["slurm_additional_parameters"] = dict(slurm.additional_parameters)
    executor.update_parameters(**params)
    return executor


def submit_jobs(study: Study, cells: Sequence[Cell]) -> list[Any]:
    """One submitit job per cell (a job array on Slurm); their ids go to jobs.json."""
    folder = study.folder / "slurm"
    executor = _executor(folder, study.slurm, study.threads_per_run, f"gift-study-{study.name}")
    with executor.batch():
        jobs = [executor.submit(CellJob(), cell) for cell in cells]
    ids = {cell.name: str(job.job_id) for cell, job in zip(cells, jobs, strict=True)}
    (study.folder / "jobs.json").write_text(json.dumps(ids, indent=2) + "\n")
    return jobs


def submit(study: Study, cells: Sequence[Cell], wait: bool, log: Log) -> list[dict[str, Any]]:
    """Submit every cell; with `wait`, block until the jobs end and return their results."""
    jobs = submit_jobs(study, cells)
    log(f"submitted {len(jobs)} job(s) ({study.slurm.cluster}); logs in {study.folder / 'slurm'}")
    if not wait:
        return []
    results = []
    for index, (cell, job) in enumerate(zip(cells, jobs, strict=True), start=1):
        try:
            results.append(job.result())
        except Exception as exc:  # a failed job: report it, keep waiting for the others
            results.append({"name": cell.name, "action": "job", "returncode": 1, "seconds": 0.0,
                            "error": " ".join(str(exc).split())[-500:]})  # fmt: skip
        _report(log, index, len(cells), results[-1])
    return results
