"""The run folder: where a run lives, who may write it, and what a resume may change.

A new run never writes over an existing run folder unless `train.overwrite=true`; the run's id (`run.json`)
ties every checkpoint to its run, so a `latest` pointer or a checkpoint copied from another run is refused.
`config.yaml` and `metrics.jsonl` rewrites are atomic (`gift.fileio`).
"""

from __future__ import annotations

import json
import shutil
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from gift.config import Config, config_to_dict
from gift.errors import ConfigError
from gift.fileio import write_text_atomic
from gift.redact import find_redacted

RUN_FILE = "run.json"
# Settings a resumed run applies as given; any other change is refused (it would be recorded but not trained).
RESUMABLE_CHANGES = (
    "train.steps",
    "train.save_every",
    "train.keep_checkpoints",
    "train.sample_every",
    "train.samples_per_save",
    "train.tensorboard",
    "train.wandb_project",
    "train.progress",
    "train.plots",
    "train.threads",
    "train.run_dir",
    "train.run_name",
    "train.overwrite",
    "rollout.max_batch",
    "rollout.kv_cache_mb",
)
_RUN_MARKERS = (RUN_FILE, "config.yaml", "metrics.jsonl", "checkpoints")


def new_run_dir(cfg: Config, config_name: str | None) -> Path:
    """The folder of a new run; an existing run there is refused unless `train.overwrite` asks to replace it."""
    name = cfg.train.run_name or f"{config_name or 'run'}-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir = Path(cfg.train.run_dir) / name
    if run_dir.exists() and any(run_dir.iterdir()):
        if not any((run_dir / m).exists() for m in _RUN_MARKERS):
            raise ConfigError(
                f"train.run_name={name!r}: {run_dir} exists and is not a run folder; choose another name"
            )
        if not cfg.train.overwrite:
            raise ConfigError(
                f"train.run_name={name!r}: the run {run_dir} exists; resume it with --resume {run_dir}, "
                "choose another train.run_name, or replace it with train.overwrite=true"
            )
    return run_dir


def read_run_id(run_dir: Path) -> str | None:
    """The run's id from `run.json`, or None when the file is missing or unreadable."""
    try:
        data = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    run_id = data.get("run_id") if isinstance(data, dict) else None
    return run_id if isinstance(run_id, str) and run_id else None


def prepare_run_folder(run_dir: Path, cfg: Config, start: int, run_id: str | None, fresh: bool) -> str:
    """Create (or, with `fresh` and overwrite, replace) the folder, write run.json and config.yaml atomically,
    drop metric rows after `start`. Main process only. Returns the run id."""
    if fresh and cfg.train.overwrite and run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    run_id = run_id or uuid.uuid4().hex
    write_text_atomic(run_dir / RUN_FILE, json.dumps({"run_id": run_id}) + "\n")
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
    from gift.metrics import truncate_after

    truncate_after(run_dir / "metrics.jsonl", start)
    return run_id


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict) and data and prefix.count(".") < 1:
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: data}


def check_resume_settings(saved: dict[str, Any], cfg: Config) -> None:
    """Refuse, in one line, a resume whose settings differ from the checkpoint's in a way it would not apply."""
    masked = find_redacted(cfg.model_dump(mode="json"))
    if masked:
        raise ConfigError(
            f"--resume: {masked} holds a masked credential (secrets are never saved); give it again as {masked}=VALUE"
        )
    before, after = _flat(saved), _flat(config_to_dict(cfg))
    for key in sorted(set(before) | set(after)):
        if key in RESUMABLE_CHANGES or before.get(key) == after.get(key):
            continue
        raise ConfigError(
            f"--resume: {key} was {before.get(key)!r} and is now {after.get(key)!r}; a resumed run keeps its "
            f"settings except {', '.join(RESUMABLE_CHANGES)} (start a new run to change it)"
        )
