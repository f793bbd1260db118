"""FSDP2 on two CPU processes (gloo), launched with configs/accelerate/fsdp-cpu.yaml: the weights are really
sharded, training gives the DDP run's weights, replicas agree, and a resumed run (whole AdamW state gathered
from the shards into the checkpoint) is exact."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

from tests.test_distributed import COMMON, CONFIGS, _launch, _lines

STEPS = 2


def _train(config: str, tiny_model_dir: str, run_dir: Path, *extra: str, resume: Path | None = None) -> str:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / config)]
    cmd += ["-m", "gift", "train"]
    if resume is not None:
        cmd += ["--resume", str(resume), f"train.steps={STEPS}"]
    else:
        cmd += [f"model.name={tiny_model_dir}", *COMMON, "task.base_seed=500", f"train.steps={STEPS}"]
        cmd += ["train.save_every=1", "algo.ppo_epochs=2", f"train.run_dir={run_dir.parent}"]
        cmd += [f"train.run_name={run_dir.name}", *extra]
    result = _launch(cmd, f"{config} {' '.join(extra)}")
    return result.stdout + result.stderr


def _finals(run_dir: Path) -> list[dict]:
    return [
        next(r for r in _lines(run_dir / "work" / f"rank-{rank}.jsonl") if r.get("final")) for rank in (0, 1)
    ]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    assert files, f"no weights in {folder}"
    return {k: v for f in files for k, v in load_file(f).items()}


def _assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=atol, msg=name)


@pytest.mark.slow
def test_fsdp_shards_trains_like_ddp_and_resumes_exactly(tiny_model_dir, tmp_path):
    fsdp = tmp_path / "fsdp"
    _train("fsdp-cpu.yaml", tiny_model_dir, fsdp)
    finals = _finals(fsdp)
    total = sum(v.numel() for v in _weights(Path(tiny_model_dir)).values())
    assert all(f["engine"] == "FSDP" and f["sharded"] for f in finals), finals
    held = [f["parameters_held"] for f in finals]
    assert sum(held) == total and max(held) < total, f"each process holds a shard: {held} of {total}"
    assert finals[0]["digest"] == finals[1]["digest"], "the generation copies diverged"
    last = _weights(fsdp / "checkpoints" / f"step-{STEPS:06d}")
    moved = max((last[k] - v).abs().max().item() for k, v in _weights(Path(tiny_model_dir)).items())
    assert moved > 1e-3, "training did not change the weights"
    rows = _lines(fsdp / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2] and all(r["train/trajectories"] == 6 for r in rows)

    # The same run under DDP: the same weights up to summation order.
    ddp = tmp_path / "ddp"
    _train("ddp-cpu.yaml", tiny_model_dir, ddp)
    assert [f["engine"] for f in _finals(ddp)] == ["MULTI_CPU", "MULTI_CPU"]
    _assert_close(last, _weights(ddp / "checkpoints" / f"step-{STEPS:06d}"), atol=1e-5)

    # Resume from step 1: the whole optimizer state goes back into the shards, so step 2 is bit-identical.
    resumed = tmp_path / "resumed"
    shutil.copytree(fsdp, resumed)
    shutil.rmtree(resumed / "checkpoints" / f"step-{STEPS:06d}")
    (resumed / "checkpoints" / "latest").write_text("step-000001")
    out = _train("fsdp-cpu.yaml", tiny_model_dir, resumed, resume=resumed)
    assert "AdamW moments restart" not in out
    assert _finals(resumed)[0]["digest"] == finals[0]["digest"], "resume is not exact"
    assert [r["step"] for r in _lines(resumed / "metrics.jsonl")] == [1, 2]


@pytest.mark.slow
def test_fsdp_with_lora_and_a_kl_reference_matches_ddp(tiny_model_dir, tmp_path):
    extra = ("model.lora={r: 4}", "algo.kl_coef=0.05")
    _train("fsdp-cpu.yaml", tiny_model_dir, tmp_path / "fsdp", *extra)
    _train("ddp-cpu.yaml", tiny_model_dir, tmp_path / "ddp", *extra)
    finals = _finals(tmp_path / "fsdp")
    assert finals[0]["sharded"] and finals[0]["digest"] == finals[1]["digest"]
    step = f"step-{STEPS:06d}"
    fsdp, ddp = (
        _weights(tmp_path / "fsdp" / "checkpoints" / step),
        _weights(tmp_path / "ddp" / "checkpoints" / step),
    )
    assert all("lora" in name for name in fsdp), "a LoRA checkpoint holds the adapter only"
    assert max(v.abs().max().item() for k, v in fsdp.items() if "lora_B" in k) > 1e-3, "the adapter trained"
    _assert_close(fsdp, ddp, atol=1e-5)
