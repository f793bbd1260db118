"""Shared helpers of the bench scripts: machine report, repeated timing, result files.

Every script measures its baseline in the same process, on the same inputs, and prints ours/baseline ratios;
timings never live in tests. Results also go to bench/results/<name>.json (git-ignored).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
REPO_ROOT = BENCH_DIR.parent

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if str(REPO_ROOT / "src") not in sys.path:
    # Run from a checkout without installing: `python bench/<name>.py` from the repo root.
    sys.path.insert(1, str(REPO_ROOT / "src"))


def versions(packages: Sequence[str]) -> dict[str, str]:
    """Installed versions of `packages` (or "absent")."""
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def machine(torch_module: Any = None) -> dict[str, Any]:
    """Cores this process may use, torch threads (when torch is loaded) and the CPU model."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": _cpu_model(),
    }
    if torch_module is not None:
        info["torch_threads"] = torch_module.get_num_threads()
        info["cuda"] = bool(torch_module.cuda.is_available())
        if info["cuda"]:
            info["gpu"] = torch_module.cuda.get_device_name(0)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def print_header(title: str, mode: str, mach: dict[str, Any], vers: dict[str, str]) -> None:
    print(f"== {title} ({mode}) ==")
    threads = mach.get("torch_threads", "-")
    gpu = f", gpu {mach['gpu']}" if mach.get("gpu") else ""
    print(
        f"machine: {mach['usable_cores']} usable cores of {mach['cpu_count']} ({mach['cpu_model']}), "
        f"torch threads {threads}{gpu}"
    )
    print("versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()))


@dataclass
class Timing:
    """Per-repeat values of one measurement (e.g. steps/s), with their mean and spread."""

    values: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else float("nan")

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def text(self, fmt: str = ",.0f") -> str:
        return f"{self.mean:{fmt}} ± {self.std:{fmt}}"

    def as_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "values": list(self.values)}


def repeat(fn: Callable[[], float], repeats: int, warmup: int = 1) -> Timing:
    """Call `fn` `warmup` times untimed, then `repeats` times; `fn` returns its own measured value."""
    for _ in range(warmup):
        fn()
    return Timing([fn() for _ in range(repeats)])


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def peak_rss_mb() -> float:
    """Peak resident memory of this process since start or the last `PeakMemory` reset (MiB)."""
    status = _proc_status("VmHWM")
    return status if status is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rss_mb() -> float:
    """Resident memory now (MiB); falls back to the peak where /proc is missing."""
    status = _proc_status("VmRSS")
    return status if status is not None else peak_rss_mb()


def _proc_status(key: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return None


def _reset_peak_rss() -> bool:
    """Linux lets a process reset its own peak-RSS mark (clear_refs 5), so phases get separate peaks."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class PeakMemory:
    """Peak memory of a block: extra resident MiB above the start (CPU) and peak allocated MiB (CUDA).

    Without a resettable peak (non-Linux) the CPU figure is the process-lifetime peak minus the start.
    """

    def __init__(self, torch_module: Any = None) -> None:
        self.torch = torch_module
        self.start_rss = self.peak_rss = self.extra_mb = 0.0
        self.cuda_peak_mb: float | None = None
        self.resettable = False

    def __enter__(self) -> PeakMemory:
        self.resettable = _reset_peak_rss()
        self.start_rss = rss_mb()
        if self.torch is not None and self.torch.cuda.is_available():
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak_rss = peak_rss_mb()
        self.extra_mb = max(0.0, self.peak_rss - self.start_rss)
        if self.torch is not None and self.torch.cuda.is_available():
            self.torch.cuda.synchronize()
            self.cuda_peak_mb = self.torch.cuda.max_memory_allocated() / 2**20

    def as_dict(self) -> dict[str, Any]:
        return {
            "rss_start_mb": self.start_rss,
            "rss_peak_mb": self.peak_rss,
            "rss_extra_mb": self.extra_mb,
            "cuda_peak_mb": self.cuda_peak_mb,
            "peak_resettable": self.resettable,
        }


def ratio_text(ours: float, base: float) -> str:
    return f"{ours / base:.2f}x" if base > 0 else "n/a"


def write_results(name: str, quick: bool, payload: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}{'-quick' if quick else ''}.json"
    payload = {"benchmark": name, "mode": "quick" if quick else "default", "time": time.time(), **payload}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print(f"results written to {path.relative_to(REPO_ROOT)}")
    return path


def resolve_bench_model(name: str, workdir: Path) -> str:
    """A model folder for `--model`: "tiny" (built now, deterministic), "embedded" (SmolLM2-135M) or a path."""
    if name == "tiny":
        from gift.models import build_tiny_model

        return str(build_tiny_model(workdir / "tiny-model"))
    from gift.models import resolve_model

    return resolve_model(name)


def quiet_transformers() -> None:
    """No progress bars or advisory warnings in benchmark output."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
