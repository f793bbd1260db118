"""Checkpoints that make resume exact, hold no executable pickles, and are verified before use.

A checkpoint folder `step-XXXXXX` holds the model (or only the LoRA adapter) and the tokenizer as written by
`save_pretrained` (weights in safetensors), `trainer.pt` (optimizer, scheduler, step, the task sampler's counter,
every RNG state: tensors and plain Python values only, read back with `torch.load(weights_only=True)`, so a
crafted file cannot run code), the frozen self-play opponent in `self_play.safetensors`, `gift_config.json`;
under DeepSpeed also `engine/`, DeepSpeed's own checkpoint, which DeepSpeed unpickles in full: its files are
scanned first and refused unless every global they name is one DeepSpeed writes (`check_engine_files`).
`manifest.json` lists the step, the run id and the
size and SHA-256 of every file; resume checks all of it (`resume_checkpoint`) and falls back to the newest
older checkpoint that passes, with a warning.

The folder is written under a hidden temporary name, fsynced and renamed into place, then `latest` is replaced
atomically: a kill mid-write leaves the previous checkpoint valid and `latest` never names a half-written folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gift.errors import ConfigError
from gift.fileio import fsync_dir, hidden_sibling, write_text_atomic

LATEST = "latest"
ENGINE_DIR = "engine"
MANIFEST = "manifest.json"
TRAINER_STATE = "trainer.pt"
SELF_PLAY = "self_play.safetensors"
CONFIG = "gift_config.json"
FORMAT = 1
_STEP_DIR = re.compile(r"step-(\d{6,})")
_REQUIRED = (TRAINER_STATE, CONFIG)


class CheckpointError(ConfigError):
    """A checkpoint that is damaged, incomplete, unsafe or from another run: one line naming the file."""


DEEPSPEED_GLOBALS = frozenset(
    {
        "deepspeed.runtime.zero.config.ZeroStageEnum",  # the ZeRO stage of an optimizer partition
        "deepspeed.runtime.fp16.loss_scaler.LossScaler",  # ZeRO-1/2/3 optimizers save their loss scaler
        "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
        "deepspeed.utils.tensor_fragment.fragment_address",  # parameter slice mappings (ZeRO-1/2, bf16)
    }
)
"""What DeepSpeed's checkpoint files hold beyond torch's weights-only set, from its source: the engine's
`_common_checkpoint_state` and `_save_zero_checkpoint`, and the `state_dict` of its ZeRO-1/2
(`stage_1_and_2.py`), ZeRO-3 (`stage3.py`) and bf16 optimizers. The rest is tensors, OrderedDicts of
`torch.Size`, sets, numbers, strings and the config as a dict. Checked against the files DeepSpeed 0.19.8
writes for ZeRO-2 and ZeRO-3 in fp32 and bf16 (the first three globals; fp16 adds the dynamic scaler)."""


# ------------------------------------------------------------------------------------------------ RNG
def rng_state() -> dict[str, Any]:
    """Every RNG state as tensors and plain Python values (loadable with `weights_only=True`)."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = torch.from_numpy(numpy_state["state"]["key"].astype(np.int64))
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = {
        **numpy_state["state"],
        "key": state["numpy"]["state"]["key"].numpy().astype(np.uint32),
    }
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------------------------------ save
def _file_digest(path: Path) -> str:
    with open(path, "rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
        os.fsync(fh.fileno())  # durable before the folder is renamed into place
    return digest


def _manifest(folder: Path, step: int, run_id: str) -> dict[str, Any]:
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        files[rel] = {"size": path.stat().st_size, "sha256": _file_digest(path)}
    return {"format": FORMAT, "step": step, "run_id": run_id, "files": files}


def clean_temporary(ckpt_root: str | os.PathLike, keep: Path | None = None) -> None:
    """Remove hidden folders and files left by writes that were killed (all but `keep`)."""
    root = Path(ckpt_root)
    if not root.is_dir():
        return
    for path in root.iterdir():
        if path.name.startswith(".") and path != keep:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def _write_contents(
    tmp: Path, model: Any, tokenizer: Any, state: dict[str, Any], config: dict[str, Any]
) -> None:
    from safetensors.torch import save_file

    model.save_pretrained(tmp, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(tmp)
    self_play = state.pop("self_play", None)
    if self_play is not None:
        # Clones: safetensors refuses tensors that share memory (tied embeddings).
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in self_play.items()}, tmp / SELF_PLAY)
    torch.save(state, tmp / TRAINER_STATE)
    (tmp / CONFIG).write_text(json.dumps(config, indent=2))


def save_checkpoint(
    ckpt_root: str | os.PathLike,
    step: int,
    model: Any,
    tokenizer: Any,
    trainer_state: dict[str, Any],
    config: dict[str, Any],
    keep: int = 2,
    engine_dir: Path | None = None,
    run_id: str = "",
) -> Path:
    """Write `ckpt_root/step-XXXXXX` atomically with its manifest, point `latest` at it, keep the newest `keep`.

    `engine_dir`: a folder every process has already written (a DeepSpeed checkpoint with each process's
    optimizer partition), moved in as `engine/` before the checkpoint becomes visible.
    """
    root = Path(ckpt_root)
    root.mkdir(parents=True, exist_ok=True)
    clean_temporary(root, keep=engine_dir)
    final = root / f"step-{step:06d}"
    tmp = hidden_sibling(final)
    tmp.mkdir()
    try:
        state = {**trainer_state, "step": step, "rng": rng_state()}
        _write_contents(tmp, model, tokenizer, state, config)
        if engine_dir is not None:
            os.replace(engine_dir, tmp / ENGINE_DIR)
        manifest = _manifest(tmp, step, run_id)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        _file_digest(tmp / MANIFEST)
        if final.exists():
            old = hidden_sibling(final)
            os.replace(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_text_atomic(root / LATEST, final.name)
    for old in _step_dirs(root)[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _step_dirs(root: Path) -> list[Path]:
    """Checkpoint folders, newest step first."""
    found = [p for p in root.glob("step-*") if p.is_dir() and _STEP_DIR.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(p.name.removeprefix("step-")), reverse=True)


# ------------------------------------------------------------------------------------------------ load
def _pointer(root: Path) -> Path | None:
    """The folder `latest` names, only when it is a checkpoint folder of this root (never a path elsewhere)."""
    try:
        name = (root / LATEST).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return root / name if _STEP_DIR.fullmatch(name) else None


def latest_checkpoint(ckpt_root: str | os.PathLike) -> Path | None:
    """The folder `latest` points at when it was completely written (has its manifest), else None."""
    path = _pointer(Path(ckpt_root))
    return path if path is not None and (path / MANIFEST).is_file() else None


def _read_manifest(ckpt: Path) -> dict[str, Any]:
    path = ckpt / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing (an incomplete or older checkpoint)") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{path} is unreadable: {type(err).__name__}") from None
    ok = (
        isinstance(manifest, dict)
        and manifest.get("format") == FORMAT
        and isinstance(manifest.get("files"), dict)
    )
    if not ok or not isinstance(manifest.get("step"), int):
        raise CheckpointError(f"{path} is not a checkpoint manifest of format {FORMAT}")
    return manifest


def verify_checkpoint(ckpt: str | os.PathLike, run_id: str | None = None) -> dict[str, Any]:
    """Check a checkpoint against its manifest (step, run, every file's size and hash); returns the manifest."""
    ckpt = Path(ckpt)
    manifest = _read_manifest(ckpt)
    step = int(ckpt.name.removeprefix("step-")) if _STEP_DIR.fullmatch(ckpt.name) else None
    if manifest["step"] != step:
        raise CheckpointError(
            f"{ckpt / MANIFEST} is for step {manifest['step']}, not the folder's step {step}"
        )
    if run_id and manifest.get("run_id") != run_id:
        raise CheckpointError(
            f"{ckpt} belongs to run {manifest.get('run_id')!r}, not to this run ({run_id!r})"
        )
    files = manifest["files"]
    for name in _REQUIRED:
        if name not in files:
            raise CheckpointError(f"{ckpt / MANIFEST} does not list {name}")
    if not any(name.endswith(".safetensors") for name in files):
        raise CheckpointError(f"{ckpt / MANIFEST} lists no weights (*.safetensors)")
    for name, entry in files.items():
        path = ckpt / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise CheckpointError(f"{ckpt / MANIFEST} names a file outside the checkpoint: {name!r}")
        if not path.is_file():
            raise CheckpointError(f"{path} is missing")
        if path.stat().st_size != entry.get("size") or _file_digest(path) != entry.get("sha256"):
            raise CheckpointError(f"{path} is damaged (its size or SHA-256 differs from the manifest)")
    if (ckpt / ENGINE_DIR).is_dir():
        check_engine_files(ckpt / ENGINE_DIR)
    state = load_trainer_state(ckpt)
    if state.get("step") != manifest["step"]:
        raise CheckpointError(
            f"{ckpt / TRAINER_STATE} is for step {state.get('step')}, not {manifest['step']}"
        )
    return manifest


def resume_checkpoint(
    ckpt_root: str | os.PathLike, run_id: str | None = None, warn: Callable[[str], None] = print
) -> Path:
    """The checkpoint to resume from: `latest` when it verifies, else the newest older one that does (with a
    warning naming what was wrong). Raises `CheckpointError` (one line) when none does."""
    root = Path(ckpt_root)
    candidates: list[Path] = []
    pointer = _pointer(root)
    if pointer is not None:
        candidates.append(pointer)
    candidates += [p for p in _step_dirs(root) if p not in candidates]
    problems: list[str] = []
    if pointer is None and (root / LATEST).exists():
        problems.append(f"{root / LATEST} does not name a checkpoint folder of this run")
    for ckpt in candidates:
        try:
            verify_checkpoint(ckpt, run_id)
        except CheckpointError as err:
            problems.append(str(err))
            continue
        if problems:
            warn(f"warning: {problems[0]}; resuming from {ckpt.name} instead")
        return ckpt
    if problems:
        raise CheckpointError(f"--resume: no usable checkpoint under {root}: {problems[0]}")
    raise CheckpointError(f"--resume: no complete checkpoint under {root}")


def check_engine_files(folder: str | os.PathLike) -> None:
    """Refuse DeepSpeed's own files (`engine/`) if loading them could run code.

    DeepSpeed reads them with full pickles (`weights_only=False`); scanning the pickles' globals first, without
    unpickling anything, lets through only torch's weights-only set and `DEEPSPEED_GLOBALS`.
    """
    from torch.serialization import get_unsafe_globals_in_checkpoint

    for path in sorted(Path(folder).rglob("*.pt")):
        try:
            found = get_unsafe_globals_in_checkpoint(path)
        except Exception as err:  # noqa: BLE001 - a file that cannot be scanned is not loaded either
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise CheckpointError(
                f"{path} cannot be checked (not a torch checkpoint file): {first}"
            ) from None
        unsafe = sorted(set(found) - DEEPSPEED_GLOBALS)
        if unsafe:
            raise CheckpointError(
                f"{path} names {unsafe[0]!r}, which DeepSpeed never writes: loading it could run code, "
                "so it is refused"
            )


def load_trainer_state(ckpt: str | os.PathLike) -> dict[str, Any]:
    """The optimizer/scheduler/sampler/RNG state saved next to the weights (RNGs are not applied here).

    `weights_only=True`: only tensors and plain containers are rebuilt, a pickle that would call anything is
    refused, so a shared or crafted run folder cannot run code on resume.
    """
    path = Path(ckpt) / TRAINER_STATE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing") from None
    except Exception as err:  # noqa: BLE001 - any refusal of the safe loader is the same user-facing fact
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise CheckpointError(
            f"{path} cannot be loaded safely (only tensors and plain data are allowed): {first}"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a trainer state")
    self_play = Path(ckpt) / SELF_PLAY
    if self_play.is_file():
        from safetensors.torch import load_file

        state["self_play"] = load_file(self_play)
    return state
