"""DeepSpeed's own checkpoint files (`engine/`) are unpickled in full by DeepSpeed, so they are scanned first:
the globals DeepSpeed writes pass, anything else is refused in one line without running (deepspeed need not be
installed: the files below name the same globals as DeepSpeed's, written by stand-in classes of those names)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gift.checkpoint import ENGINE_DIR, CheckpointError, check_engine_files, resume_checkpoint
from tests.test_checkpoint_safety import Payload, _rehash, two_checkpoints  # noqa: F401 (a fixture)

# Classes with DeepSpeed's module paths and shapes (an int enum, dataclasses, loss scalers holding a dtype).
STAND_INS = {
    "deepspeed/runtime/zero/config.py": "import enum\nclass ZeroStageEnum(int, enum.Enum):\n    gradients = 2\n",
    "deepspeed/runtime/fp16/loss_scaler.py": (
        "import torch\n"
        "class LossScaler:\n    def __init__(self):\n        self.cur_scale, self.dynamic = 1.0, False\n"
        "class DynamicLossScaler(LossScaler):\n    def __init__(self):\n        super().__init__()\n"
        "        self.dynamic, self.dtype, self.last_overflow_iter = True, torch.bfloat16, -1\n"
    ),
    "deepspeed/utils/tensor_fragment.py": (
        "from dataclasses import dataclass\n@dataclass\nclass fragment_address:\n    numel: int\n    start: int\n"
    ),
    "deepspeed/runtime/engine.py": "class DeepSpeedEngine:\n    pass\n",
}

WRITER = """
import collections, sys, torch
from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
from deepspeed.runtime.zero.config import ZeroStageEnum
from deepspeed.utils.tensor_fragment import fragment_address
from deepspeed.runtime.engine import DeepSpeedEngine

tag = sys.argv[1] + "/state"
shapes = collections.OrderedDict(w=torch.Size([4, 2]))
torch.save({"module": collections.OrderedDict(w=torch.ones(4, 2)), "buffer_names": [], "optimizer": None,
            "param_shapes": [shapes], "sparse_tensor_module_names": set(), "global_steps": 2,
            "ds_config": {"zero_optimization": {"stage": 2}}, "ds_version": "0.19.8"},
           f"{tag}/mp_rank_00_model_states.pt")
for rank, scaler in enumerate((LossScaler(), DynamicLossScaler())):
    optim = {"loss_scaler": scaler, "dynamic_loss_scale": rank == 1, "zero_stage": ZeroStageEnum.gradients,
             "base_optimizer_state": {"state": {0: {"exp_avg": torch.zeros(3)}}, "param_groups": [{"lr": 1e-6}]},
             "single_partition_of_fp32_groups": [torch.zeros(3)], "group_paddings": [0], "partition_count": [2],
             "param_slice_mappings": [collections.OrderedDict(w=fragment_address(numel=3, start=0))]}
    torch.save({"optimizer_state_dict": optim, "ds_version": "0.19.8"},
               f"{tag}/zero_pp_rank_{rank}_mp_rank_00_optim_states.pt")
torch.save({"engine": DeepSpeedEngine()}, f"{tag}/other.pt")
"""


@pytest.fixture(scope="module")
def deepspeed_like(tmp_path_factory) -> Path:
    """An `engine/` folder as DeepSpeed writes it (model states, two ZeRO-2 optimizer partitions), plus
    `state/other.pt` naming a DeepSpeed class no checkpoint holds."""
    root = tmp_path_factory.mktemp("deepspeed-like")
    for name, text in STAND_INS.items():
        (root / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "src" / name).write_text(text)
    for package in ("deepspeed", "deepspeed/runtime", "deepspeed/runtime/zero", "deepspeed/runtime/fp16",
                    "deepspeed/utils"):  # fmt: skip
        (root / "src" / package / "__init__.py").touch()
    engine = root / ENGINE_DIR
    (engine / "state").mkdir(parents=True)
    (engine / "latest").write_text("state")
    (engine / "zero_to_fp32.py").write_text("# DeepSpeed copies its recovery script here; nothing loads it\n")
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    subprocess.run([sys.executable, "-c", WRITER, str(engine)], check=True, env=env, timeout=120)
    return engine


def _one_line(folder: Path) -> str:
    with pytest.raises(CheckpointError) as err:
        check_engine_files(folder)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_what_deepspeed_writes_passes_and_anything_else_is_refused(deepspeed_like, tmp_path):
    other = deepspeed_like / "state" / "other.pt"
    message = _one_line(deepspeed_like)
    assert str(other) in message and "'deepspeed.runtime.engine.DeepSpeedEngine'" in message
    other.rename(tmp_path / "other.pt")
    try:
        check_engine_files(deepspeed_like)  # model states and both optimizer partitions pass
    finally:
        (tmp_path / "other.pt").rename(other)


def test_a_crafted_engine_file_is_refused_without_running(tmp_path):
    marker = tmp_path / "payload-ran"
    (tmp_path / "engine" / "state").mkdir(parents=True)
    crafted = tmp_path / "engine" / "state" / "mp_rank_00_model_states.pt"
    torch.save({"module": {"w": torch.ones(2)}, "optimizer": Payload(marker)}, crafted)
    message = _one_line(tmp_path / "engine")
    assert str(crafted) in message and "'builtins.exec'" in message and "could run code" in message
    assert not marker.exists(), "scanning the file ran its payload"


@pytest.mark.parametrize("content", [b"not a checkpoint", b""])
def test_an_engine_file_that_cannot_be_scanned_is_refused(tmp_path, content):
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "zero_pp_rank_0_mp_rank_00_optim_states.pt").write_bytes(content)
    assert "cannot be checked" in _one_line(tmp_path / "engine")


def test_resume_skips_a_checkpoint_with_a_crafted_engine_file(two_checkpoints, tmp_path):  # noqa: F811
    root, first, second = two_checkpoints
    marker = tmp_path / "payload-ran"
    (second / ENGINE_DIR / "state").mkdir(parents=True)
    torch.save({"x": Payload(marker)}, second / ENGINE_DIR / "state" / "mp_rank_00_model_states.pt")
    manifest = json.loads((second / "manifest.json").read_text())
    manifest["files"]["engine/state/mp_rank_00_model_states.pt"] = {}
    (second / "manifest.json").write_text(json.dumps(manifest))
    _rehash(second)  # a crafted folder comes with a manifest that matches it
    warnings: list[str] = []
    assert resume_checkpoint(root, "run-a", warn=warnings.append) == first
    assert len(warnings) == 1 and "could run code" in warnings[0] and "step-000002" in warnings[0]
    assert not marker.exists()
