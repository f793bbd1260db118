"""Checkpoints that make resume exact, written atomically.

A checkpoint folder holds the model (or only the LoRA adapter), the tokenizer, `trainer.pt` (optimizer,
scheduler, step, the task sampler's seed counter, every RNG state) and `gift_config.json`; under DeepSpeed also
`engine/`, DeepSpeed's own checkpoint with every process's optimizer partition. It is written to a hidden
temporary folder and renamed into place, then `latest` is replaced atomically, so a crash mid-write leaves the
previous checkpoint valid and `latest` never points at a half-written folder.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

LATEST = "latest"
ENGINE_DIR = "engine"


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _hidden_sibling(path: Path) -> Path:
    """A fresh hidden name next to `path`. Created with plain mkdir/open, so the umask applies (mkdtemp and
    mkstemp would make checkpoints readable by their owner only)."""
    return path.parent / f".{path.name}-{uuid.uuid4().hex[:12]}"


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = _hidden_sibling(path)
    with open(tmp, "x") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_checkpoint(
    ckpt_root: str | os.PathLike,
    step: int,
    model: Any,
    tokenizer: Any,
    trainer_state: dict[str, Any],
    config: dict[str, Any],
    keep: int = 2,
    engine_dir: Path | None = None,
) -> Path:
    """Write `ckpt_root/step-XXXXXX` atomically, point `latest` at it, keep the newest `keep` checkpoints.

    `engine_dir`: a folder every process has already written (a DeepSpeed checkpoint with each process's
    optimizer partition), moved in as `engine/` before the checkpoint becomes visible.
    """
    root = Path(ckpt_root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:06d}"
    tmp = _hidden_sibling(final)
    tmp.mkdir()
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        torch.save({**trainer_state, "step": step, "rng": rng_state()}, tmp / "trainer.pt")
        (tmp / "gift_config.json").write_text(json.dumps(config, indent=2))
        if engine_dir is not None:
            os.replace(engine_dir, tmp / ENGINE_DIR)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _write_text_atomic(root / LATEST, final.name)
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(ckpt_root: str | os.PathLike) -> Path | None:
    """The folder `latest` points at, or None when there is no complete checkpoint."""
    root = Path(ckpt_root)
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    return path if (path / "trainer.pt").is_file() else None


def load_trainer_state(ckpt: str | os.PathLike) -> dict[str, Any]:
    """The optimizer/scheduler/sampler/RNG state saved next to the weights (RNGs are not applied here)."""
    return torch.load(Path(ckpt) / "trainer.pt", map_location="cpu", weights_only=False)
