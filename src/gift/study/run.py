"""`gift study STUDY.yaml`: validate the whole grid, bring every run to done (skip, resume or start), aggregate.

gift study studies/nested-vs-mixed-cpu.yaml              # run what is missing, then write the report
gift study studies/nested-vs-mixed-cpu.yaml --dry-run    # list the runs and what each would do
gift study studies/x.yaml --aggregate-only               # tables and figures from the runs so far
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from gift.study.cells import DONE, Cell, cell_state, plan_cells, train_command
from gift.study.curves import read_run
from gift.study.executors import local_workers, run_local, submit
from gift.study.plots import write_figure
from gift.study.report import (
    curve_rows,
    final_rows,
    markdown,
    paired_rows,
    reference_rows,
    run_values,
    write_csv,
)
from gift.study.schema import Study, load_study


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def aggregate(study: Study, cells: Sequence[Cell]) -> dict[str, Path]:
    """Write the study's CSV tables, Markdown report and figures from the finished runs; return the paths."""
    folder = study.folder
    folder.mkdir(parents=True, exist_ok=True)
    status = {cell.name: cell_state(cell) for cell in cells}
    runs = [data for cell in cells if status[cell.name] == DONE and (data := read_run(cell)) is not None]
    curves = curve_rows(runs, study.smooth)
    values = run_values(runs, study.final_steps)
    finals = final_rows(values, study.modes)
    paired = paired_rows(values, study.modes, study.bootstrap)
    references = reference_rows(runs)
    paths = {name: folder / f"{name}.csv" for name in ("curves", "runs", "final", "paired")}
    for name, rows in (("curves", curves), ("runs", values), ("final", finals), ("paired", paired)):
        write_csv(paths[name], rows)
    figures = {}
    for setting in study.settings:
        png = folder / f"curves-{setting}.png"
        if write_figure(png, f"{study.name} · {setting}", [r for r in curves if r["setting"] == setting],
                        study.modes):  # fmt: skip
            figures[setting] = png.name
            paths[f"figure-{setting}"] = png
    paths["markdown"] = folder / "report.md"
    paths["markdown"].write_text(markdown(study, finals, paired, references, status, figures))
    return paths


def _write_plan(study: Study, cells: Sequence[Cell]) -> None:
    """The resolved study and every run's overrides, next to the results (what exactly was compared)."""
    study.folder.mkdir(parents=True, exist_ok=True)
    (study.folder / "study.yaml").write_text(yaml.safe_dump(study.model_dump(mode="json"), sort_keys=False))
    plan = [{"name": c.name, "setting": c.setting, "mode": c.mode, "seed": c.seed, "config": c.config_path,
             "overrides": list(c.overrides), "eval": c.eval} for c in cells]  # fmt: skip
    (study.folder / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")


def _dry_run(cells: Sequence[Cell], log: Callable[[str], None]) -> int:
    for cell in cells:
        state = cell_state(cell)
        log(f"{cell.name}: {state}")
        if state != DONE:
            log("  gift " + shlex.join(train_command(cell, resume=state == "resume")))
    return 0


def run_study(
    path: str | Path,
    dry_run: bool = False,
    aggregate_only: bool = False,
    wait: bool = True,
    log: Callable[[str], None] = _log,
) -> int:
    """The `gift study` command; returns the exit status (1 when a run failed)."""
    study = load_study(path)
    cells = plan_cells(study)
    if dry_run:
        return _dry_run(cells, log)
    _write_plan(study, cells)
    todo = [c for c in cells if cell_state(c) != DONE]
    log(
        f"study {study.name}: {len(cells)} run(s), {len(cells) - len(todo)} already done, folder {study.folder}"
    )
    results = []
    if todo and not aggregate_only:
        if study.executor == "local":
            results = run_local(todo, local_workers(study), log)
        else:
            results = submit(study, todo, wait, log)
            if not wait:
                log("not waiting; run the same command again to aggregate once the jobs are done")
                return 0
    paths = aggregate(study, cells)
    log(f"wrote {paths['markdown']} and {', '.join(p.name for k, p in paths.items() if k != 'markdown')}")
    failed = [r["name"] for r in results if r["returncode"] != 0]
    if failed:
        log(f"{len(failed)} run(s) failed: {', '.join(failed)}; see {study.folder / 'logs'}")
        return 1
    return 0
