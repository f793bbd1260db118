"""Checks between training steps: a run never saves a checkpoint of non-finite weights.

A too-large learning rate, entropy or KL coefficient turns the loss, the gradients and then the weights into
inf/NaN; training on from there only writes garbage. Every process checks and the verdict is all-reduced, so all
of them stop at the same step with the same one-line `TrainingStopped`.
"""

from __future__ import annotations

import math
from typing import Any

from gift.errors import TrainingStopped

_WATCHED = ("loss", "pg_loss", "grad_norm", "grad_norm_max")


def _first_non_finite(update: dict[str, float], model: Any) -> str | None:
    import torch

    for key in _WATCHED:
        value = update.get(key)
        if isinstance(value, float) and not math.isfinite(value):
            return f"{'gradient norm' if key.startswith('grad') else key} = {value}"
    with torch.no_grad():
        for name, param in model.named_parameters():
            if not bool(torch.isfinite(param).all()):
                return f"weight {name}"
    return None


def stop_if_not_finite(accelerator: Any, update: dict[str, float], model: Any, step: int) -> None:
    """Raise `TrainingStopped` on every process when any process saw a non-finite loss, gradient or weight."""
    import torch

    problem = _first_non_finite(update, model)
    flag = torch.tensor([0.0 if problem is None else 1.0], device=accelerator.device)
    if accelerator.num_processes > 1:
        flag = accelerator.reduce(flag, reduction="max")
    if float(flag.item()) > 0:
        raise TrainingStopped(
            f"training stopped at step {step}: non-finite {problem or 'values on another process'}; no checkpoint "
            "of it was written (lower algo.lr, algo.entropy_coef or algo.kl_coef and start again, or resume an "
            "earlier checkpoint)"
        )
