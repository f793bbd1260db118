"""What a run needs that is not in its config: its model, a GPU it asks for and the optional packages it uses.

Checked before any model loads, each missing piece is one line saying what is missing and how to get it.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from gift.config import Config
from gift.errors import ConfigError
from gift.models import EMBEDDED, check_hub_model_cached

_EXTRAS = {
    "wandb": "pip install wandb",
    "deepspeed": "pip install 'gift-rl[gpu]' (or pip install deepspeed)",
    "vllm": "pip install 'gift-rl[gpu]' (or pip install vllm), on a machine with a GPU",
}


def _require(package: str, why: str) -> None:
    if importlib.util.find_spec(package) is None:
        raise ConfigError(f"{why} needs the package {package!r}, which is not installed: {_EXTRAS[package]}")


def check_environment(cfg: Config) -> None:
    """One-line `ConfigError` for a requested device that is not there or an optional extra not installed."""
    name = cfg.model.name
    if name != EMBEDDED and not Path(name).expanduser().exists():
        check_hub_model_cached(name)
    if cfg.train.wandb_project:
        _require("wandb", f"train.wandb_project={cfg.train.wandb_project!r}")
    if cfg.rollout.backend == "vllm":
        _require("vllm", "rollout.backend='vllm'")
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        _require("deepspeed", "a DeepSpeed launch (accelerate config with deepspeed_config)")
    if cfg.train.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                "train.device='cuda' but torch sees no CUDA GPU on this machine; use train.device=auto or cpu "
                f"(torch {torch.__version__}, built {'with' if torch.version.cuda else 'without'} CUDA)"
            )
