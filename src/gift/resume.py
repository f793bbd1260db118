"""Choosing what a resumed run starts from: a verified checkpoint of this run, with the settings it was trained
with (`gift.checkpoint`, `gift.runfolder`)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from gift.config import Config
from gift.runfolder import check_resume_settings, read_run_id

# The config each checkpoint keeps (`gift.checkpoint.CONFIG`; that module imports torch, this one must not).
CONFIG = "gift_config.json"


def _warn(line: str) -> None:
    """Warnings from one process only (every process verifies the same files)."""
    if os.environ.get("RANK", "0") == "0":
        print(line, file=sys.stderr, flush=True)


def open_checkpoint(run_dir: Path, cfg: Config) -> tuple[Path, str | None]:
    """The checkpoint to resume `run_dir` from and the run's id; one-line errors for anything unusable."""
    from gift.checkpoint import CheckpointError, resume_checkpoint

    run_id = read_run_id(run_dir)
    if run_id is None and (run_dir / "run.json").exists():
        _warn(
            f"warning: {run_dir / 'run.json'} is unreadable; checkpoints are not checked against the run id"
        )
    ckpt = resume_checkpoint(run_dir / "checkpoints", run_id, warn=_warn)
    try:
        saved = json.loads((ckpt / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{ckpt / CONFIG} is unreadable: {type(err).__name__}") from None
    check_resume_settings(saved, cfg)
    if run_id is None:
        run_id = json.loads((ckpt / "manifest.json").read_text(encoding="utf-8")).get("run_id") or None
    return ckpt, run_id


def resume_config_path(resume: str | os.PathLike) -> str:
    """The config a `--resume RUN_DIR` without a config file reads: the run's `config.yaml`, else (missing or
    damaged) the one saved in its latest checkpoint, with a warning."""
    from gift.config import load_config
    from gift.errors import ConfigError

    run_dir = Path(resume)
    saved = run_dir / "config.yaml"
    try:
        load_config(saved)
        return str(saved)
    except ConfigError as err:
        problem = str(err)
    ckpts = sorted((run_dir / "checkpoints").glob(f"step-*/{CONFIG}"))
    ckpt = ckpts[-1].parent if ckpts else None
    if ckpt is None:
        raise ConfigError(f"--resume {str(resume)!r}: {problem}, and no checkpoint holds a config")
    _warn(f"warning: {problem}; using the config saved in {ckpt / CONFIG}")
    return str(ckpt / CONFIG)
