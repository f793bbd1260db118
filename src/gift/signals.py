"""Stopping a run cleanly: SIGTERM (what Slurm and Kubernetes send before a kill) is handled like Ctrl-C.

The first SIGTERM or Ctrl-C asks the loop to stop after the current step; the loop then writes a checkpoint and
exits with status 0, naming the folder to resume. A second Ctrl-C abandons the step at once. Processes agree on
stopping through one all-reduce per step, so a signal that reaches only some of them still stops all of them at
the same step. Workers of a launch also exit when their launcher dies (`exit_with_parent`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

_PR_SET_PDEATHSIG = 1


class StopRequest:
    """Context manager that turns SIGTERM/SIGINT into a request polled once per step (`should_stop`)."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.signal_name is None:
            self.signal_name = signal.Signals(signum).name
            if os.environ.get("RANK", "0") == "0":
                print(
                    f"\n{self.signal_name}: stopping after this step with a checkpoint (Ctrl-C again to abandon it)",
                    file=sys.stderr,
                    flush=True,
                )

    def should_stop(self, accelerator: Any) -> bool:
        """True on every process once any process was asked to stop (a collective: call it on all of them)."""
        import torch

        flag = torch.tensor([1.0 if self.signal_name else 0.0], device=accelerator.device)
        if accelerator.num_processes > 1:
            flag = accelerator.reduce(flag, reduction="max")
        stop = bool(flag.item() > 0)
        if stop and self.signal_name is None:
            self.signal_name = "a signal to another process"
        return stop


def exit_with_parent() -> None:
    """Linux: ask the kernel to send SIGTERM to this process when its parent (the launcher) dies, so that a killed
    `accelerate launch` or `torchrun` never leaves workers training on their own. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    parent = os.getppid()
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the launcher died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
