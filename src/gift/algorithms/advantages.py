"""Trajectory-level advantage estimators for critic-free, group-based policy gradients.

Every estimator maps one scalar reward per trajectory (the sum of its step rewards, format penalties included) and
a group id per trajectory (rollouts that share a task seed form a group) to one advantage per trajectory. The
caller spreads that advantage over every sampled token of the trajectory (see the paper's advantage computation): GIFT uses no
turn-level credit assignment.

Singleton groups get advantage 0 under every estimator: a lone sample has no in-group baseline, so any non-zero
value would be pure reward scale. (verl's GRPO passes a singleton's score through unchanged; that case never
arises in GIFT, whose groups have 16 members.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import Tensor

from gift.errors import check_choice, check_range

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "AdvantageEstimator",
    "GroupStats",
    "compute_advantages",
    "drgrpo_advantages",
    "group_stats",
    "grpo_advantages",
    "rloo_advantages",
]


@dataclass(frozen=True)
class GroupStats:
    """Per-group reward statistics, groups listed in order of first appearance.

    `index[i]` is the position (in `group_ids`) of trajectory i's group, so `mean[index]` broadcasts a group
    statistic back to trajectories. Statistics are float64 so that tiny spreads survive the subtraction.
    """

    group_ids: Tensor  # [G] original ids, first-appearance order
    index: Tensor  # [N] long, position of each trajectory's group in `group_ids`
    count: Tensor  # [G] long
    total: Tensor  # [G] float64, sum of rewards
    mean: Tensor  # [G] float64
    std: Tensor  # [G] float64, unbiased (n - 1); 0 for singleton groups


def _check_inputs(rewards: Tensor, group_ids: Tensor) -> tuple[Tensor, Tensor]:
    rewards = torch.as_tensor(rewards)
    group_ids = torch.as_tensor(group_ids)
    if rewards.dim() != 1 or group_ids.dim() != 1:
        raise ValueError(
            f"rewards and group_ids must be 1-D (one entry per trajectory); got shapes "
            f"{tuple(rewards.shape)} and {tuple(group_ids.shape)}"
        )
    if rewards.shape != group_ids.shape:
        raise ValueError(f"rewards has {rewards.numel()} entries but group_ids has {group_ids.numel()}")
    if group_ids.is_floating_point() or group_ids.is_complex() or group_ids.dtype == torch.bool:
        raise ValueError(f"group_ids must be an integer tensor, got dtype {group_ids.dtype}")
    rewards = rewards.to(torch.float64)
    if not bool(torch.isfinite(rewards).all()):
        raise ValueError("rewards contain NaN or inf; every trajectory needs a finite reward")
    return rewards, group_ids.to(torch.long)


def group_stats(rewards: Tensor, group_ids: Tensor) -> GroupStats:
    """Count, mean and unbiased std of the rewards of each group (shared by estimators and filtering)."""
    rewards, group_ids = _check_inputs(rewards, group_ids)
    device = rewards.device
    n = rewards.numel()
    uniq, inverse = torch.unique(group_ids, return_inverse=True)
    n_groups = uniq.numel()
    positions = torch.arange(n, device=device)
    first_seen = torch.full((n_groups,), n, dtype=torch.long, device=device)
    first_seen = first_seen.scatter_reduce(0, inverse, positions, reduce="amin")
    order = torch.argsort(first_seen)  # first-appearance order; the values are distinct, so no ties
    rank = torch.empty_like(order)
    rank[order] = torch.arange(n_groups, device=device)
    index = rank[inverse]

    count = torch.bincount(index, minlength=n_groups)
    total = torch.zeros(n_groups, dtype=torch.float64, device=device).index_add_(0, index, rewards)
    mean = total / count.clamp(min=1)
    squares = (rewards - mean[index]) ** 2
    sum_squares = torch.zeros(n_groups, dtype=torch.float64, device=device).index_add_(0, index, squares)
    std = torch.where(count > 1, sum_squares / (count - 1).clamp(min=1), 0.0).sqrt()
    return GroupStats(uniq[order], index, count, total, mean, std)


def grpo_advantages(rewards: Tensor, group_ids: Tensor, eps: float = 1e-6) -> Tensor:
    """(R - group mean) / (group std + eps), and 0 for the whole group when its std <= eps.

    Group-normalised advantage of GRPO (Shao et al. 2024, "DeepSeekMath"), as used by RAGEN's StarPO and GIFT's
    StarPO* (verl `adv_estimator=grpo`, normalisation grouped by env seed). The std is unbiased, as torch's.
    """
    stats = group_stats(rewards, group_ids)
    r = torch.as_tensor(rewards).to(torch.float64)
    std = stats.std[stats.index]
    centred = r - stats.mean[stats.index]
    advantages = torch.where(std > eps, centred / (std + eps), 0.0)
    return advantages.to(torch.float32)


def drgrpo_advantages(rewards: Tensor, group_ids: Tensor, eps: float = 1e-6) -> Tensor:
    """R - group mean, without std normalisation.

    Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical Perspective") drops the std
    division, which otherwise up-weights groups whose rewards barely differ. `eps` is accepted for a uniform
    signature and unused.
    """
    del eps
    stats = group_stats(rewards, group_ids)
    r = torch.as_tensor(rewards).to(torch.float64)
    return (r - stats.mean[stats.index]).to(torch.float32)


def rloo_advantages(rewards: Tensor, group_ids: Tensor, eps: float = 1e-6) -> Tensor:
    """R_i - mean of the other members of its group (leave-one-out baseline); 0 for singletons.

    REINFORCE Leave-One-Out (Kool et al. 2019, "Buy 4 REINFORCE Samples, Get a Baseline for Free!"; Ahmadian et
    al. 2024, "Back to Basics: Revisiting REINFORCE-Style Optimization for Learning from Human Feedback"): the
    baseline does not depend on the sample itself, so the gradient estimate stays unbiased. `eps` is unused.
    """
    del eps
    stats = group_stats(rewards, group_ids)
    r = torch.as_tensor(rewards).to(torch.float64)
    count = stats.count[stats.index]
    others_mean = (stats.total[stats.index] - r) / (count - 1).clamp(min=1)
    return torch.where(count > 1, r - others_mean, 0.0).to(torch.float32)


AdvantageEstimator = Callable[[Tensor, Tensor, float], Tensor]

ADVANTAGE_ESTIMATORS: Mapping[str, AdvantageEstimator] = MappingProxyType(
    {
        "grpo": grpo_advantages,
        "drgrpo": drgrpo_advantages,
        "rloo": rloo_advantages,
    }
)


def compute_advantages(
    rewards: Tensor, group_ids: Tensor, estimator: str = "grpo", eps: float = 1e-6
) -> Tensor:
    """One float32 advantage per trajectory with the named estimator (see `ADVANTAGE_ESTIMATORS`).

    rewards: [N] trajectory rewards; group_ids: [N] integer group labels (any values, any order).
    """
    check_choice("advantage estimator", estimator, ADVANTAGE_ESTIMATORS)
    check_range("eps", eps, low=0.0)
    return ADVANTAGE_ESTIMATORS[estimator](rewards, group_ids, eps)
