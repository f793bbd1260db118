"""The trainer's DeepSpeed ZeRO-2 and ZeRO-3 paths on CPU (one process), when deepspeed is installed; skipped
otherwise.

DeepSpeed is a GPU extra and not in the CPU requirements; `pip install deepspeed` runs these tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_distributed import COMMON, CONFIGS, REPO, _env, _launch
from tests.test_fsdp_cpu import _assert_close, _weights

pytest.importorskip("deepspeed")


def _launch_cmd(*extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(CONFIGS / "deepspeed-zero2-cpu.yaml"),
        *extra,
        "-m",
        "gift",
        "train",
    ]


@pytest.mark.slow
def test_zero2_trains_checkpoints_and_resumes_exactly_in_one_cpu_process(tiny_model_dir, tmp_path):
    args = [f"model.name={tiny_model_dir}", *COMMON, f"train.run_dir={tmp_path}", "train.run_name=ds"]
    _launch([*_launch_cmd(), *args, "train.steps=2"], "DeepSpeed ZeRO-2 on CPU")
    run = tmp_path / "ds"
    final = [json.loads(line) for line in (run / "work" / "rank-0.jsonl").read_text().splitlines()][-1]
    assert final["engine"] == "DEEPSPEED"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["train/optimizer_steps"] == 3.0 for r in rows)  # 6 trajectories / mini-batches of 2
    assert all(r["train/grad_norm"] > 0 for r in rows)  # DeepSpeed's engine reports the norm it clipped

    assert (run / "checkpoints" / "step-000002" / "engine").is_dir(), "DeepSpeed's optimizer partitions"
    resumed = _launch([*_launch_cmd(), "--resume", str(run), "train.steps=3"], "DeepSpeed resume")
    assert "AdamW moments restart" not in resumed.stdout + resumed.stderr
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]

    # The same three steps without a break: the same weights (the optimizer state came back whole).
    _launch([*_launch_cmd(), *args, "train.steps=3", "train.run_name=straight"], "DeepSpeed, 3 steps")
    final = f"checkpoints/step-{3:06d}"
    _assert_close(_weights(run / final), _weights(tmp_path / "straight" / final), atol=0.0)


@pytest.mark.slow
def test_several_cpu_processes_under_deepspeed_stop_with_one_line(tiny_model_dir, tmp_path):
    cmd = [
        *_launch_cmd("--num_processes", "2"),
        f"model.name={tiny_model_dir}",
        *COMMON,
        f"train.run_dir={tmp_path}",
        "train.steps=1",
    ]
    result = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=240)
    assert result.returncode != 0
    assert "2 processes were launched but accelerate set up 1" in result.stderr
    assert "ddp-cpu.yaml" in result.stderr
    assert not list(tmp_path.glob("*/checkpoints/step-*")), "no process may train alone"


@pytest.mark.slow
def test_zero3_generates_with_a_whole_copy_and_trains_like_one_plain_process(tiny_model_dir, tmp_path):
    """ZeRO-3 partitions the model as it loads; rollouts, old log-probs and checkpoints use the whole copy."""
    args = [
        f"model.name={tiny_model_dir}",
        *COMMON,
        "algo.ppo_epochs=2",
        "train.steps=2",
        f"train.run_dir={tmp_path}",
    ]
    _launch([*_launch_cmd("--zero_stage", "3"), *args, "train.run_name=z3"], "DeepSpeed ZeRO-3 on CPU")
    final = [
        json.loads(line) for line in (tmp_path / "z3" / "work" / "rank-0.jsonl").read_text().splitlines()
    ][-1]
    assert final["engine"] == "DEEPSPEED" and final["sharded"] is True
    plain = subprocess.run(
        [sys.executable, "-m", "gift", "train", *args, "train.run_name=plain"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert plain.returncode == 0, plain.stderr[-3000:]
    step = "checkpoints/step-000002"
    z3, one = _weights(tmp_path / "z3" / step), _weights(tmp_path / "plain" / step)
    _assert_close(z3, one, atol=1e-5)
    assert max((z3[k] - v).abs().max().item() for k, v in _weights(Path(tiny_model_dir)).items()) > 1e-3

    # Resumed for a third step, it matches three straight ZeRO-3 steps: the partitions came back.
    zero3 = _launch_cmd("--zero_stage", "3")
    resumed = _launch([*zero3, "--resume", str(tmp_path / "z3"), "train.steps=3"], "ZeRO-3 resume")
    assert "AdamW moments restart" not in resumed.stdout + resumed.stderr
    _launch([*zero3, *args, "train.steps=3", "train.run_name=z3-straight"], "ZeRO-3, 3 steps")
    step = "checkpoints/step-000003"
    _assert_close(_weights(tmp_path / "z3" / step), _weights(tmp_path / "z3-straight" / step), atol=0.0)
