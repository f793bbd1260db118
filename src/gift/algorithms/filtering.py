"""Variance-based group filtering: train only on the groups whose rewards disagree the most.

A group whose members all earn the same reward has zero advantage everywhere and contributes no policy gradient,
only noise in the loss normaliser and wasted compute. RAGEN's StarPO-S (Wang et al. 2025, "RAGEN: Understanding
Self-Evolution in LLM Agents via Multi-Turn Reinforcement Learning") therefore keeps the groups with the largest
in-group reward std; GIFT's StarPO* keeps the top 25% of groups each step (the paper's trajectory filtering), ranked globally
across tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gift.algorithms.advantages import group_stats
from gift.errors import ConfigError, check_range

__all__ = ["GroupFilterResult", "filter_groups", "groups_to_keep"]

# int(0.29 * 100) == 28 in floating point; a tiny slack makes exact products round as written.
_FLOOR_SLACK = 1e-9


@dataclass(frozen=True)
class GroupFilterResult:
    """Which trajectories survive the filter, plus counts for logging."""

    keep_mask: Tensor  # [N] bool, True for trajectories of kept groups
    kept_groups: tuple[int, ...]  # group ids kept, largest std first
    group_ids: tuple[int, ...]  # every group id, in order of first appearance
    group_std: tuple[float, ...]  # unbiased reward std of each group in `group_ids` (0 for singletons)
    n_groups: int
    n_kept: int
    n_zero_std: int  # groups whose std <= zero_std_tol, among all groups

    def metrics(self) -> dict[str, float]:
        """Plain floats for a metrics logger."""
        kept = set(self.kept_groups)
        kept_std = [s for g, s in zip(self.group_ids, self.group_std, strict=True) if g in kept]
        return {
            "n_groups": float(self.n_groups),
            "n_kept": float(self.n_kept),
            "n_zero_std": float(self.n_zero_std),
            "zero_std_fraction": self.n_zero_std / self.n_groups if self.n_groups else 0.0,
            "kept_trajectories": float(int(self.keep_mask.sum())),
            "kept_std_mean": sum(kept_std) / len(kept_std) if kept_std else 0.0,
        }


def groups_to_keep(n_groups: int, keep_ratio: float, min_groups: int = 1) -> int:
    """max(int(keep_ratio * n_groups), min_groups), capped at n_groups; e.g. 8 groups at 0.25 keep 2."""
    check_range("keep_ratio", keep_ratio, low=0.0, high=1.0)
    if isinstance(min_groups, bool) or not isinstance(min_groups, int) or min_groups < 0:
        raise ConfigError(f"min_groups={min_groups!r} must be a non-negative integer")
    return min(n_groups, max(int(keep_ratio * n_groups + _FLOOR_SLACK), min_groups))


def filter_groups(
    rewards: Tensor,
    group_ids: Tensor,
    keep_ratio: float = 0.25,
    min_groups: int = 1,
    *,
    drop_zero_std: bool = False,
    zero_std_tol: float = 1e-6,
) -> GroupFilterResult:
    """Keep the `groups_to_keep(n_groups, keep_ratio, min_groups)` groups with the largest reward std.

    Ties in std are broken by first appearance in `group_ids` (a stable ranking), so the result is reproducible.
    keep_ratio=1.0 keeps every group. With the paper's rule (drop_zero_std=False) a zero-variance group is ranked
    last and survives only when fewer than keep_ratio of all groups have any variance; drop_zero_std=True removes
    such groups (std <= zero_std_tol, which is also where GRPO sets advantages to 0) even then, so the result may
    keep no group at all and the caller must be ready to skip the update.
    """
    check_range("zero_std_tol", zero_std_tol, low=0.0)
    stats = group_stats(rewards, group_ids)
    ids = [int(g) for g in stats.group_ids.tolist()]
    stds = [float(s) for s in stats.std.tolist()]
    n_groups = len(ids)
    n_keep = groups_to_keep(n_groups, keep_ratio, min_groups)

    ranked = sorted(range(n_groups), key=lambda g: -stds[g])  # sorted() is stable: ties keep first appearance
    chosen = ranked[:n_keep]
    if drop_zero_std:
        chosen = [g for g in chosen if stds[g] > zero_std_tol]

    keep_positions = torch.zeros(n_groups, dtype=torch.bool, device=stats.index.device)
    if chosen:
        keep_positions[torch.tensor(chosen, dtype=torch.long, device=stats.index.device)] = True
    return GroupFilterResult(
        keep_mask=keep_positions[stats.index],
        kept_groups=tuple(ids[g] for g in chosen),
        group_ids=tuple(ids),
        group_std=tuple(stds),
        n_groups=n_groups,
        n_kept=len(chosen),
        n_zero_std=sum(1 for s in stds if s <= zero_std_tol),
    )
