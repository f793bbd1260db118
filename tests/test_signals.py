"""Stopping: a worker exits when its launcher dies; SIGTERM becomes a stop request polled per step."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gift.signals import StopRequest

WORKER = """
import sys, time
from gift.signals import exit_with_parent
exit_with_parent()
open(sys.argv[1], "w").write("ready")
time.sleep(120)
"""

LAUNCHER = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
print(child.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
def test_a_worker_exits_when_its_launcher_is_killed(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(repo / "src"), os.environ.get("PYTHONPATH")])),
    }
    ready = tmp_path / "ready"
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, WORKER, str(ready)], env=env, stdout=subprocess.PIPE, text=True
    )
    worker = int(launcher.stdout.readline())
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    launcher.kill()  # SIGKILL: the launcher cannot clean up after itself
    launcher.wait()
    deadline = time.monotonic() + 30
    while True:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        # A zombie of a reparented child is reaped by init; check its state.
        status = (
            Path(f"/proc/{worker}/stat").read_text().split()[2]
            if Path(f"/proc/{worker}/stat").exists()
            else "X"
        )
        if status in ("Z", "X"):
            break
        assert time.monotonic() < deadline, "the worker kept running after its launcher died"
        time.sleep(0.1)


def test_sigterm_is_a_stop_request_and_handlers_are_restored():
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert stop.signal_name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before
