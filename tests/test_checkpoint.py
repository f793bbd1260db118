"""Checkpoints: written atomically (a crash mid-write leaves the previous one valid), pruned, and RNG-exact."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from gift.checkpoint import (
    LATEST,
    latest_checkpoint,
    load_trainer_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


class CrashingModel:
    """Writes half a weights file, then dies, like a process killed or a disk filling up mid-save."""

    def save_pretrained(self, folder: str | Path, **_: object) -> None:
        (Path(folder) / "model.safetensors").write_bytes(b"\x00" * 10)
        raise OSError("disk full")


def _save(root: Path, step: int, model, keep: int = 2) -> Path:
    return save_checkpoint(root, step, model, None, {"note": f"step {step}"}, {"run": "test"}, keep=keep)


def test_checkpoint_holds_weights_trainer_state_and_config(tmp_path, tiny_model):
    model, tokenizer = tiny_model
    root = tmp_path / "checkpoints"
    path = save_checkpoint(root, 3, model, tokenizer, {"sampler": {"step": 3}}, {"seed": 7}, keep=2)
    assert path == root / "step-000003"
    assert latest_checkpoint(root) == path
    assert (root / LATEST).read_text().strip() == "step-000003"
    saved = load_file(path / "model.safetensors")
    for name, tensor in model.state_dict().items():
        if name in saved:
            assert torch.equal(saved[name], tensor), name
    state = load_trainer_state(path)
    assert state["step"] == 3 and state["sampler"] == {"step": 3}
    assert (path / "gift_config.json").read_text().count('"seed": 7') == 1
    assert (path / "tokenizer.json").is_file()


def test_crash_while_writing_keeps_previous_checkpoint(tmp_path, tiny_model):
    model, _ = tiny_model
    root = tmp_path / "checkpoints"
    good = _save(root, 1, model)
    with pytest.raises(OSError, match="disk full"):
        _save(root, 2, CrashingModel())
    assert latest_checkpoint(root) == good
    assert (root / LATEST).read_text().strip() == "step-000001"
    assert not (root / "step-000002").exists()
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".")]
    assert leftovers == [], f"temporary folders left behind: {leftovers}"
    # The surviving checkpoint is complete and loadable.
    assert load_trainer_state(good)["step"] == 1
    assert load_file(good / "model.safetensors")


HARD_KILL = """
import os, sys
from pathlib import Path
from gift.checkpoint import save_checkpoint

class DiesMidWrite:
    def save_pretrained(self, folder, **_):
        (Path(folder) / "model.safetensors").write_bytes(bytes(10))
        os._exit(9)  # no exception, no cleanup: a SIGKILL or a power cut in the middle of the write

save_checkpoint(sys.argv[1], 2, DiesMidWrite(), None, {}, {}, keep=1)
"""


def test_hard_kill_mid_write_leaves_no_step_folder_and_no_false_checkpoint(tmp_path, tiny_model):
    model, _ = tiny_model
    root = tmp_path / "checkpoints"
    good = _save(root, 1, model, keep=1)
    repo = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(repo / "src"), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-c", HARD_KILL, str(root)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 9, result.stderr
    assert not (root / "step-000002").exists(), "a half-written checkpoint sits under its final name"
    assert latest_checkpoint(root) == good
    leftovers = [p for p in root.iterdir() if p.name.startswith(".step-")]
    assert len(leftovers) == 1  # the hidden temporary folder the killed process never renamed
    # The next save neither resumes from nor counts the leftover; keep=1 prunes only real checkpoints.
    _save(root, 3, model, keep=1)
    assert sorted(p.name for p in root.glob("step-*")) == ["step-000003"]
    assert latest_checkpoint(root) == root / "step-000003"


def test_latest_pointing_at_incomplete_folder_means_no_checkpoint(tmp_path):
    root = tmp_path / "checkpoints"
    (root / "step-000005").mkdir(parents=True)
    (root / LATEST).write_text("step-000005")
    assert latest_checkpoint(root) is None
    assert latest_checkpoint(tmp_path / "missing") is None


def test_keep_checkpoints_prunes_oldest(tmp_path, tiny_model):
    model, _ = tiny_model
    root = tmp_path / "checkpoints"
    for step in (1, 2, 3, 4):
        _save(root, step, model, keep=2)
    assert sorted(p.name for p in root.glob("step-*")) == ["step-000003", "step-000004"]
    assert latest_checkpoint(root) == root / "step-000004"


def test_saving_the_same_step_again_replaces_it(tmp_path, tiny_model):
    """A run resumed from an older checkpoint rewrites later steps; the old folder must not survive half-mixed."""
    model, _ = tiny_model
    root = tmp_path / "checkpoints"
    _save(root, 2, model)
    (root / "step-000002" / "extra.txt").write_text("from the first attempt")
    _save(root, 2, model)
    assert not (root / "step-000002" / "extra.txt").exists()
    assert latest_checkpoint(root) == root / "step-000002"


def test_rng_state_round_trip_replays_every_generator():
    saved = rng_state()
    first = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    set_rng_state(saved)
    again = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    assert first == again


def test_checkpoints_get_ordinary_permissions(tmp_path, tiny_model):
    """Shared clusters: a checkpoint must be as readable as any folder its owner creates (the umask decides)."""
    model, _ = tiny_model
    root = tmp_path / "checkpoints"
    path = _save(root, 1, model)
    reference_dir = tmp_path / "plain"
    reference_dir.mkdir()
    reference_file = tmp_path / "plain.txt"
    reference_file.write_text("x")
    assert path.stat().st_mode & 0o777 == reference_dir.stat().st_mode & 0o777
    assert (root / LATEST).stat().st_mode & 0o777 == reference_file.stat().st_mode & 0o777


def test_an_engine_folder_written_by_every_process_moves_into_the_checkpoint(tmp_path, tiny_model):
    model, _ = tiny_model
    root = tmp_path / "ckpts"
    staged = root / ".engine-step-000004"
    (staged / "state").mkdir(parents=True)
    (staged / "state" / "rank-0.pt").write_bytes(b"partition 0")
    (staged / "state" / "rank-1.pt").write_bytes(b"partition 1")
    path = save_checkpoint(root, 4, model, None, {}, {}, keep=2, engine_dir=staged)
    assert not staged.exists()
    assert (path / "engine" / "state" / "rank-1.pt").read_bytes() == b"partition 1"
    assert latest_checkpoint(root) == path
