"""Runs under faults: a damaged latest checkpoint, a crafted checkpoint, changed settings on resume, a reused run
name, diverging training, SIGTERM, and credentials in the config (never written to the run folder)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gift.checkpoint import MANIFEST, TRAINER_STATE, latest_checkpoint
from gift.errors import ConfigError, TrainingStopped
from gift.metrics import read_metrics
from tests.test_checkpoint_safety import Payload, _rehash
from tests.test_trainer import digit_game, final_weights, one_thread, overrides, run  # noqa: F401  (fixtures)

SECRET_URL = "http://user:s3cret@127.0.0.1:9/v1"


def test_a_damaged_latest_checkpoint_resumes_from_the_previous_one_exactly(tiny_model_dir, tmp_path, capfd):
    straight = run(tiny_model_dir, tmp_path, "straight")
    split = run(tiny_model_dir, tmp_path, "split", "train.save_every=1", "train.steps=3")
    weights = split / "checkpoints" / "step-000003" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-300:-44] = bytes(256)  # 256 bytes of the weights zeroed: a silent disk error
    weights.write_bytes(bytes(data))
    capfd.readouterr()
    run(tiny_model_dir, tmp_path, "split", resume=split)
    err = capfd.readouterr().err
    assert "model.safetensors is damaged" in err and "resuming from step-000002 instead" in err
    a, b = final_weights(straight, 4), final_weights(split, 4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [r["step"] for r in read_metrics(split / "metrics.jsonl")] == [1, 2, 3, 4]


def test_resuming_a_crafted_checkpoint_runs_nothing(tiny_model_dir, tmp_path):
    out = run(tiny_model_dir, tmp_path, "shared", "train.steps=1")
    ckpt = latest_checkpoint(out / "checkpoints")
    marker = tmp_path / "payload-ran"
    torch.save({"step": 1, "scheduler": Payload(marker)}, ckpt / TRAINER_STATE)
    _rehash(ckpt)
    with pytest.raises(ConfigError, match="cannot be loaded safely") as err:
        run(tiny_model_dir, tmp_path, "shared", resume=out)
    assert "\n" not in str(err.value)
    assert not marker.exists()


def test_a_changed_setting_on_resume_is_refused_not_recorded(tiny_model_dir, tmp_path):
    out = run(tiny_model_dir, tmp_path, "lr", "train.steps=1")
    before = (out / "config.yaml").read_text()
    with pytest.raises(ConfigError, match=r"algo.lr was 0.01 and is now 0.02"):
        run(tiny_model_dir, tmp_path, "lr", "algo.lr=2e-2", resume=out)
    assert (out / "config.yaml").read_text() == before
    run(
        tiny_model_dir, tmp_path, "lr", "train.steps=2", resume=out
    )  # more steps is a change a resume applies
    assert latest_checkpoint(out / "checkpoints").name == "step-000002"


def test_an_existing_run_is_never_overwritten_unless_asked(tiny_model_dir, tmp_path):
    out = run(tiny_model_dir, tmp_path, "taken", "train.steps=1")
    rows = (out / "metrics.jsonl").read_text()
    with pytest.raises(ConfigError, match="exists; resume it with --resume"):
        run(tiny_model_dir, tmp_path, "taken", "train.steps=1")
    assert (out / "metrics.jsonl").read_text() == rows
    run(tiny_model_dir, tmp_path, "taken", "train.steps=1", "train.overwrite=true", "train.seed=5")
    assert (out / "metrics.jsonl").read_text() != rows


def test_a_diverging_run_stops_in_one_line_without_writing_a_checkpoint(tiny_model_dir, tmp_path):
    with pytest.raises(TrainingStopped, match="training stopped at step 1: non-finite") as err:
        run(tiny_model_dir, tmp_path, "nan", "algo.entropy_coef=1e38", "train.save_every=1")
    assert "\n" not in str(err.value)
    assert not list((tmp_path / "nan" / "checkpoints").glob("step-*"))


def test_credentials_in_urls_never_reach_the_run_folder(tiny_model_dir, tmp_path):
    out = run(
        tiny_model_dir, tmp_path, "secret", "train.steps=1", f"rollout.system_prompt='Endpoint {SECRET_URL}'"
    )
    for path in out.rglob("*"):
        if path.is_file():
            assert b"s3cret" not in path.read_bytes(), path


SIGTERM_RUN = """
import sys
from gift.trainer import main
sys.exit(main(None, sys.argv[1:]))
"""


def test_sigterm_stops_after_the_step_with_a_checkpoint_and_exit_0(tiny_model_dir, tmp_path):
    repo = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(repo / "src"), str(repo), os.environ.get("PYTHONPATH")])
        ),
    }
    args = overrides(tiny_model_dir, tmp_path, "preempted", "train.steps=100000", "train.save_every=100000")
    args = [a.replace("first-digit-test-v0", "matrix-v0") for a in args] + ["task.game_options={}"]
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_RUN, *args], env=env, stderr=subprocess.PIPE, text=True
    )
    metrics = tmp_path / "preempted" / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 1):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its first step"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-2000:]
    assert "stopped by SIGTERM" in err and f"resume with: gift train --resume {tmp_path / 'preempted'}" in err
    ckpt = latest_checkpoint(tmp_path / "preempted" / "checkpoints")
    last = read_metrics(metrics)[-1]["step"]
    assert ckpt is not None and json.loads((ckpt / MANIFEST).read_text())["step"] == last
