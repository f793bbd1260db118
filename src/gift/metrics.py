"""Metrics sinks: `metrics.jsonl` always, TensorBoard when installed, Weights & Biases when configured."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from gift.fileio import write_text_atomic


class MetricsLogger:
    """Append one JSON line per step; mirror scalars to TensorBoard / W&B when available."""

    def __init__(
        self,
        run_dir: str | Path,
        tensorboard: bool = True,
        wandb_project: str | None = None,
        config: dict[str, Any] | None = None,
        run_name: str | None = None,
        enabled: bool = True,
        resume_step: int = 0,
    ) -> None:
        """`resume_step`: the step a resumed run continues after; TensorBoard hides the events it logged after
        that step before the kill (its `purge_step`), so no step shows twice."""
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self._tb = None
        self._wandb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                SummaryWriter = None
            if SummaryWriter is not None:
                purge = resume_step + 1 if resume_step else None
                self._tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"), purge_step=purge)
        if wandb_project:
            import wandb  # presence checked before the run starts (gift.preflight)

            self._wandb = wandb.init(project=wandb_project, name=run_name, config=config or {})

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: v for k, v in metrics.items() if isinstance(v, int | float | str | bool) or v is None}
        with self.path.open("a") as fh:
            fh.write(json.dumps({"step": step, **clean}, allow_nan=True) + "\n")
        scalars = {
            k: float(v) for k, v in clean.items() if isinstance(v, int | float) and not isinstance(v, bool)
        }
        if self._tb is not None:
            for key, value in scalars.items():
                if math.isfinite(value):
                    self._tb.add_scalar(key, value, step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log(scalars, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a metrics.jsonl; a truncated last line (killed run) is skipped."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def truncate_after(path: str | Path, step: int) -> None:
    """Drop rows logged after `step` (used on resume so metrics.jsonl has no duplicated steps), atomically."""
    p = Path(path)
    if not p.is_file():
        return
    keep = [json.dumps(r) for r in read_metrics(p) if r.get("step", 0) <= step]
    write_text_atomic(p, "".join(line + "\n" for line in keep))  # a kill mid-rewrite keeps the old file
