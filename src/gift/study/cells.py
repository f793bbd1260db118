"""The runs of a study: one `Cell` per (setting, mode, seed), its `gift train` / `gift eval` commands, its state.

A cell is plain picklable data, so the same `run_cell` runs it in a local worker thread or inside a Slurm job.
Every cell's training config is validated when the study is planned, so a bad override fails before any run.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gift.errors import ConfigError
from gift.study.evaluate import eval_argv, eval_suites
from gift.study.schema import Study

DONE, EVALUATE, RESUME, FRESH = "done", "evaluate", "resume", "fresh"


@dataclass(frozen=True)
class Cell:
    setting: str
    mode: str
    seed: int
    name: str
    run_dir: str
    config_path: str | None
    overrides: tuple[str, ...]
    """Every override of the run, the study's own (run folder, threads) last."""
    steps: int
    games: tuple[str, ...]
    threads: int
    log: str
    eval: dict[str, Any] | None = field(default=None)
    """Arguments of `eval_argv` without the run folder, or None when the run gets no held-out evaluation."""

    @property
    def eval_dir(self) -> str:
        return str(Path(self.run_dir) / "eval")


def _config_games(cfg: Any) -> tuple[str, ...]:
    from gift.compose import PRESETS

    if cfg.task.games:
        return tuple(g if isinstance(g, str) else str(g["id"]) for g in cfg.task.games)
    return tuple(PRESETS[cfg.task.preset])


def _cell_overrides(study: Study, setting: str, mode: str, seed: int) -> list[str]:
    items = [*study.overrides, *study.settings[setting], f"task.mode={mode}"]
    for entry in study.overrides_per_cell:
        if all(chosen is None or value in chosen for chosen, value in
               ((entry.settings, setting), (entry.modes, mode), (entry.seeds, seed))):  # fmt: skip
            items += entry.overrides
    return items + [item.replace("{seed}", str(seed)) for item in study.seed_overrides]


def plan_cells(study: Study) -> list[Cell]:
    """Every run of the study, each config validated (a one-line ConfigError names the run)."""
    from gift.config import default_config_path, load_config

    runs = study.folder / "runs"
    cells = []
    for setting in study.settings:
        for mode in study.modes:
            for seed in study.seeds:
                name = f"{setting}-{mode}-s{seed}"
                overrides = _cell_overrides(study, setting, mode, seed)
                overrides += [f"train.run_dir={runs}", f"train.run_name={name}",
                              f"train.threads={study.threads_per_run}", "train.progress=false"]  # fmt: skip
                try:
                    cfg = load_config(study.base_config or default_config_path(), overrides)
                except ConfigError as err:
                    raise ConfigError(f"run {name}: {err}") from None
                cells.append(_cell(study, setting, mode, seed, name, overrides, cfg))
    return cells


def _cell(
    study: Study, setting: str, mode: str, seed: int, name: str, overrides: list[str], cfg: Any
) -> Cell:
    games = _config_games(cfg)
    suites = eval_suites(games, study.eval.suites)
    run_dir = str(study.folder / "runs" / name)
    evaluation = None
    if study.eval.episodes > 0 and suites:
        evaluation = {
            "suites": suites,
            "episodes": study.eval.episodes,
            "max_new_tokens": study.eval.max_new_tokens or cfg.rollout.max_new_tokens,
            "temperature": study.eval.temperature,
            "extra": list(study.eval.args),
        }
    log = str(study.folder / "logs" / f"{name}.log")
    return Cell(setting, mode, seed, name, run_dir, study.base_config, tuple(overrides), cfg.train.steps,
                games, study.threads_per_run, log, evaluation)  # fmt: skip


# --------------------------------------------------------------------------------------------------- state
def trained_steps(run_dir: str | Path) -> int:
    """Step of the run's latest complete checkpoint, 0 without one (read like gift.checkpoint, without torch)."""
    root = Path(run_dir) / "checkpoints"
    pointer = root / "latest"
    if not pointer.is_file():
        return 0
    folder = root / pointer.read_text().strip()
    if not (folder / "trainer.pt").is_file():
        return 0
    try:
        return int(folder.name.removeprefix("step-"))
    except ValueError:
        return 0


def cell_state(cell: Cell) -> str:
    """done, evaluate (trained, held-out evaluation missing), resume (a checkpoint short of the end) or fresh."""
    steps = trained_steps(cell.run_dir)
    if steps >= cell.steps and (Path(cell.run_dir) / "summary.json").is_file():
        if cell.eval is None or (Path(cell.eval_dir) / "results.json").is_file():
            return DONE
        return EVALUATE
    return RESUME if steps > 0 else FRESH


def train_command(cell: Cell, resume: bool) -> list[str]:
    """`gift train` arguments of the cell; resuming passes the same config and overrides (the config is unchanged)."""
    command = ["train"]
    if resume:
        command += ["--resume", cell.run_dir]
    if cell.config_path is not None:
        command.append(cell.config_path)
    return command + list(cell.overrides)


def eval_command(cell: Cell) -> list[str]:
    """`gift eval` arguments of the cell's held-out evaluation."""
    assert cell.eval is not None
    return ["eval", *eval_argv(cell.run_dir, cell.eval_dir, **cell.eval)]


def _environment(threads: int) -> dict[str, str]:
    """The parent's environment with every thread pool capped, so runs together stay within the core budget."""
    env = dict(os.environ)
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[key] = str(threads)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def run_cell(cell: Cell) -> dict[str, Any]:
    """Bring one run to done: train (fresh or resumed from its checkpoint), then evaluate. Output goes to the log."""
    state = cell_state(cell)
    result: dict[str, Any] = {"name": cell.name, "action": "skipped" if state == DONE else state,
                              "returncode": 0, "seconds": 0.0}  # fmt: skip
    if state == DONE:
        return result
    start = time.monotonic()
    Path(cell.log).parent.mkdir(parents=True, exist_ok=True)
    commands = [] if state == EVALUATE else [train_command(cell, resume=state == RESUME)]
    if cell.eval is not None:
        commands.append(eval_command(cell))
    # One interpreter runs `gift train` then `gift eval` (see gift.study.worker): torch is imported once per run.
    worker = [sys.executable, "-m", "gift.study.worker", json.dumps(commands)]
    with open(cell.log, "a") as log:
        log.write("".join(f"$ gift {shlex.join(c)}\n" for c in commands))
        log.flush()
        done = subprocess.run(worker, stdout=log, stderr=subprocess.STDOUT, env=_environment(cell.threads))
    result["returncode"] = done.returncode
    result["seconds"] = round(time.monotonic() - start, 1)
    return result
