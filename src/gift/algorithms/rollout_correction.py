"""Importance-sampling correction for the gap between the sampler's log-probs and the trainer's.

The policy loss assumes the replies were sampled from the weights it scores. They were not quite: a vLLM engine
computes log-probs with other kernels and precision, and a one-step-off rollout (`train.max_staleness: 1`)
was sampled with the previous step's weights. Per sampled token, with the trainer's log-prob at the start of the
update (PPO's old policy) and the sampler's,

    rho = exp(trainer - sampler)

multiplies that token's policy-gradient loss (detached), as in TRL's `GRPOTrainer`
(`vllm_importance_sampling_correction`, modes and cap from `grpo_config.py`) and verl's rollout correction:

- `token_truncate`: rho clipped to [floor, cap] (truncated IS, "TIS", Yao et al. 2025).
- `token_mask`: tokens whose rho leaves [floor, cap] get weight 0, the others keep rho.
- `sequence_truncate` / `sequence_mask`: the same with one ratio per trajectory, exp(sum of its tokens' log
  ratios), spread over its tokens (masked IS, "MIS"; TRL's default is `sequence_mask` with cap 3, no floor).
- `geometric_mask`: drop the trajectories whose geometric-mean ratio exp(mean log ratio) leaves `band`, keep
  the others with weight 1 (SkyRL's recommended geometric sequence masking, band [0.99, 1.01]).

A trajectory is every sampled token of the episode, all turns together.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gift.algorithms.losses import LOG_RATIO_LIMIT, k3_kl

IS_MODES = (
    "off",
    "token_truncate",
    "token_mask",
    "sequence_truncate",
    "sequence_mask",
    "geometric_mask",
)


@dataclass(frozen=True)
class CorrectionSettings:
    mode: str = "off"
    cap: float = 3.0
    floor: float | None = None
    band: tuple[float, float] = (0.99, 1.01)


def importance_weights(
    trainer_logprobs: Tensor, sampled_logprobs: Tensor, mask: Tensor, settings: CorrectionSettings
) -> tuple[Tensor | None, Tensor]:
    """Per-token weights [B, T] for the policy loss (None when `mode` is off) and statistics.

    The statistics are one tensor [masked units, units, ratio sum, ratio max, mismatch-KL sum, tokens], where
    a unit is a token in token modes and a trajectory otherwise, ratios are per unit, and the mismatch KL is
    the k3 estimate of KL(sampler || trainer) per token (prime-rl's `mismatch_kl`). Sums, so that micro-batches
    add up (`summarise`).
    """
    trained = mask > 0
    zero = torch.zeros((), dtype=torch.float32, device=trainer_logprobs.device)
    log_ratio = torch.where(trained, trainer_logprobs.float() - sampled_logprobs.float(), zero)
    log_ratio = log_ratio.clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT).detach()
    kl = torch.where(trained, k3_kl(sampled_logprobs.float(), trainer_logprobs.float()), zero)
    tokens = trained.sum()
    sequence = settings.mode.startswith(("sequence", "geometric"))
    if sequence:
        has_tokens = trained.any(dim=-1)
        per_seq = log_ratio.sum(dim=-1)
        if settings.mode == "geometric_mask":
            per_seq = per_seq / trained.sum(dim=-1).clamp(min=1)
        unit_ratio, units = torch.exp(per_seq), has_tokens
    else:
        unit_ratio, units = torch.exp(log_ratio), trained
    low, high = _bounds(settings)
    outside = units & ((unit_ratio < low) | (unit_ratio > high))
    weights = None
    if settings.mode != "off":
        if settings.mode.endswith("truncate"):
            unit_weight = unit_ratio.clamp(min=low, max=high)
        elif settings.mode == "geometric_mask":
            unit_weight = (~outside).float()
        else:
            unit_weight = torch.where(outside, zero, unit_ratio)
        weights = unit_weight[:, None].expand_as(log_ratio) if sequence else unit_weight
        weights = torch.where(trained, weights, zero)
    masked = outside.sum() if settings.mode.endswith("mask") else zero
    ratios = torch.where(units, unit_ratio, zero)
    stats = torch.stack(
        [
            masked.float(),
            units.sum().float(),
            ratios.sum(),
            ratios.max() if ratios.numel() else zero,
            kl.sum(),
            tokens.float(),
        ]
    )
    return weights, stats


def _bounds(settings: CorrectionSettings) -> tuple[float, float]:
    if settings.mode == "geometric_mask":
        return settings.band
    return (0.0 if settings.floor is None else settings.floor), settings.cap


def summarise(stats: list[Tensor]) -> dict[str, float]:
    """Update metrics from the statistics of every micro-batch: one device sync."""
    if not stats:
        return {}
    total = torch.stack(stats)
    masked, units, ratio_sum, _, kl_sum, tokens = total.sum(dim=0).tolist()
    ratio_max = float(total[:, 3].max())
    if not units:
        return {}
    return {
        "is_masked_frac": masked / units,
        "is_ratio_mean": ratio_sum / units,
        "is_ratio_max": ratio_max,
        "mismatch_kl": kl_sum / max(tokens, 1.0),
    }
