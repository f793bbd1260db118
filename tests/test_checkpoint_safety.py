"""Checkpoints cannot run code, and a damaged one is never used: the manifest is checked and resume falls back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from gift.checkpoint import (
    LATEST,
    MANIFEST,
    TRAINER_STATE,
    CheckpointError,
    load_trainer_state,
    resume_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)
from gift.fileio import write_text_atomic


class Payload:
    """Unpickling this object runs code: it writes a marker file (a stand-in for anything an attacker wants)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def _save(root: Path, step: int, model, tokenizer, run_id: str = "run-a") -> Path:
    state = {"sampler": {"step": step}, "self_play": {"w": torch.ones(2)}}
    return save_checkpoint(root, step, model, tokenizer, state, {"seed": 0}, keep=3, run_id=run_id)


def _rehash(ckpt: Path) -> None:
    """Rewrite the manifest so it matches the folder: what someone crafting a folder would do."""
    import hashlib

    manifest = json.loads((ckpt / MANIFEST).read_text())
    for name in manifest["files"]:
        data = (ckpt / name).read_bytes()
        manifest["files"][name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (ckpt / MANIFEST).write_text(json.dumps(manifest))


@pytest.fixture()
def two_checkpoints(tmp_path, tiny_model):
    model, tokenizer = tiny_model
    root = tmp_path / "checkpoints"
    first, second = _save(root, 1, model, tokenizer), _save(root, 2, model, tokenizer)
    return root, first, second


def test_manifest_lists_every_file_with_size_and_hash(two_checkpoints):
    root, _, second = two_checkpoints
    manifest = verify_checkpoint(second, "run-a")
    assert manifest["step"] == 2 and manifest["run_id"] == "run-a"
    names = set(manifest["files"])
    assert {
        "model.safetensors",
        "tokenizer.json",
        "config.json",
        TRAINER_STATE,
        "self_play.safetensors",
    } <= names
    assert names == {p.relative_to(second).as_posix() for p in second.rglob("*") if p.is_file()} - {MANIFEST}
    assert resume_checkpoint(root, "run-a") == second
    assert torch.equal(load_trainer_state(second)["self_play"]["w"], torch.ones(2))


def test_a_crafted_pickle_payload_is_refused_and_never_runs(two_checkpoints, tmp_path):
    root, first, second = two_checkpoints
    marker = tmp_path / "payload-ran"
    torch.save({"step": 2, "optimizer": Payload(marker)}, second / TRAINER_STATE)
    _rehash(second)
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_trainer_state(second)
    warnings: list[str] = []
    assert resume_checkpoint(root, "run-a", warn=warnings.append) == first
    assert len(warnings) == 1 and TRAINER_STATE in warnings[0] and "step-000001" in warnings[0]
    assert not marker.exists(), "loading the checkpoint executed code"


@pytest.mark.parametrize(
    "damage",
    [
        "flip-weights",
        "truncate-weights",
        "delete-tokenizer",
        "delete-config",
        "trainer-from-other-step",
        "manifest",
    ],
)
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one_with_a_warning(two_checkpoints, damage):
    root, first, second = two_checkpoints
    weights = second / "model.safetensors"
    if damage == "flip-weights":
        data = bytearray(weights.read_bytes())
        for i in range(len(data) // 2, len(data) // 2 + 256):
            data[i] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "truncate-weights":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "delete-tokenizer":
        (second / "tokenizer.json").unlink()
    elif damage == "delete-config":
        (second / "config.json").unlink()
    elif damage == "trainer-from-other-step":
        shutil.copy(first / TRAINER_STATE, second / TRAINER_STATE)
        _rehash(second)  # even with a consistent manifest, weights of step 2 never pair with state of step 1
    else:
        (second / MANIFEST).write_text("{ not json")
    with pytest.raises(CheckpointError) as err:
        verify_checkpoint(second, "run-a")
    assert "\n" not in str(err.value) and str(second) in str(err.value)
    warnings: list[str] = []
    assert resume_checkpoint(root, "run-a", warn=warnings.append) == first
    assert len(warnings) == 1 and "resuming from step-000001 instead" in warnings[0]


def test_only_damaged_checkpoints_is_one_line_naming_the_file(two_checkpoints):
    root, first, second = two_checkpoints
    for ckpt in (first, second):
        (ckpt / "tokenizer.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"tokenizer\.json is damaged") as err:
        resume_checkpoint(root, "run-a")
    assert "\n" not in str(err.value)


def test_checkpoints_and_pointers_of_another_run_are_refused(tmp_path, tiny_model):
    model, tokenizer = tiny_model
    mine, theirs = tmp_path / "a" / "checkpoints", tmp_path / "b" / "checkpoints"
    own = _save(mine, 1, model, tokenizer, run_id="run-a")
    other = _save(theirs, 2, model, tokenizer, run_id="run-b")
    # A `latest` pointing into the other run is not followed.
    write_text_atomic(mine / LATEST, f"../../b/checkpoints/{other.name}")
    warnings: list[str] = []
    assert resume_checkpoint(mine, "run-a", warn=warnings.append) == own
    assert "latest" in warnings[0]
    # A checkpoint folder copied in from the other run is refused by its run id.
    shutil.copytree(other, mine / other.name)
    write_text_atomic(mine / LATEST, other.name)
    warnings.clear()
    assert resume_checkpoint(mine, "run-a", warn=warnings.append) == own
    assert "run-b" in warnings[0]


def test_temporary_folders_of_killed_writes_are_cleaned_on_the_next_save(two_checkpoints, tiny_model):
    root, _, _ = two_checkpoints
    (root / ".step-000003-deadbeef0000").mkdir()
    (root / ".latest-0123456789ab").write_text("step-000003")
    _save(root, 3, *tiny_model)
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []
