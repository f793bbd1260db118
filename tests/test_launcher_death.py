"""A real `accelerate launch` of two CPU workers (configs/accelerate/ddp-cpu.yaml) killed with SIGKILL: its
workers notice (parent-death signal, `gift.signals.exit_with_parent`), stop like on SIGTERM and exit, instead of
training on alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_distributed import COMMON, CONFIGS, _env

START_TIMEOUT = 240  # launch, two workers, the first step, on a busy machine
EXIT_TIMEOUT = 90  # the step in progress, a checkpoint, the exit


def _descendants(pid: int) -> list[int]:
    """Every live process below `pid` (Linux /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] not in ("Z", "X"):
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
def test_workers_exit_when_accelerate_launch_is_killed(tiny_model_dir, tmp_path):
    run = tmp_path / "orphans"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(CONFIGS / "ddp-cpu.yaml")]
    cmd += ["-m", "gift", "train", f"model.name={tiny_model_dir}", *COMMON, f"train.run_dir={tmp_path}"]
    cmd += ["train.run_name=orphans", "train.steps=100000", "train.save_every=100000"]
    log = (tmp_path / "launch.log").open("w")  # a file, not a pipe nobody reads once the launcher is gone
    launcher = subprocess.Popen(cmd, env=_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        metrics = run / "metrics.jsonl"
        while not (metrics.is_file() and metrics.read_text().count("\n") >= 1):
            assert launcher.poll() is None, (tmp_path / "launch.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the launched run did not make its first step"
            time.sleep(0.5)
        workers = [pid for pid in _descendants(launcher.pid) if "gift" in _cmdline(pid)]
        assert len(workers) == 2, f"expected two workers under the launcher, found {workers}"

        launcher.kill()  # SIGKILL: the launcher cannot stop its workers itself
        launcher.wait()
        deadline = time.monotonic() + EXIT_TIMEOUT
        while any(_alive(pid) for pid in workers):
            assert time.monotonic() < deadline, f"workers {workers} kept running after their launcher died"
            time.sleep(0.5)
        text = (tmp_path / "launch.log").read_text()
        assert "stopped by SIGTERM" in text, text[-3000:]  # they stopped like on SIGTERM, with a checkpoint
        assert (run / "checkpoints" / "latest").is_file()
    finally:
        log.close()
        try:
            os.killpg(launcher.pid, signal.SIGKILL)  # whatever is left of the launch's process group
        except ProcessLookupError:
            pass


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
