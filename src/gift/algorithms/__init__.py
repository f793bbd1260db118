"""StarPO* algorithm pieces as small pure torch functions: advantages, group filtering, policy loss.

The rollout loop computes trajectory rewards, calls `filter_groups` and `compute_advantages`; the trainer spreads
the advantages over sampled tokens and minimises `policy_loss` (the paper's RL algorithm, StarPO*).
"""

from gift.algorithms.advantages import (
    ADVANTAGE_ESTIMATORS,
    AdvantageEstimator,
    GroupStats,
    compute_advantages,
    drgrpo_advantages,
    group_stats,
    grpo_advantages,
    rloo_advantages,
)
from gift.algorithms.filtering import GroupFilterResult, filter_groups, groups_to_keep
from gift.algorithms.losses import (
    LOSS_AGG_MODES,
    PolicyLossConfig,
    aggregate,
    entropy_from_logits,
    gather_logprobs,
    k3_kl,
    loss_normaliser,
    policy_loss,
)

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "LOSS_AGG_MODES",
    "AdvantageEstimator",
    "GroupFilterResult",
    "GroupStats",
    "PolicyLossConfig",
    "aggregate",
    "compute_advantages",
    "drgrpo_advantages",
    "entropy_from_logits",
    "filter_groups",
    "gather_logprobs",
    "group_stats",
    "groups_to_keep",
    "grpo_advantages",
    "k3_kl",
    "loss_normaliser",
    "policy_loss",
    "rloo_advantages",
]
