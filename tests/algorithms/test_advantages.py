"""Advantage estimators against hand-computed values."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gift.algorithms import ADVANTAGE_ESTIMATORS, compute_advantages, group_stats
from gift.errors import ConfigError

# Three groups, interleaved so that indexing mistakes show:
#   group 7: rewards 1.0, 0.0, 0.5 (positions 0, 2, 4)  mean 0.5, unbiased var (0.25 + 0.25 + 0) / 2 = 0.25, std 0.5
#   group 3: rewards 1.0, 1.0      (positions 1, 5)     zero std
#   group 9: reward 0.7            (position 3)          singleton
REWARDS = torch.tensor([1.0, 1.0, 0.0, 0.7, 0.5, 1.0])
GROUPS = torch.tensor([7, 3, 7, 9, 7, 3])


def test_grpo_hand_computed():
    adv = compute_advantages(REWARDS, GROUPS, "grpo", eps=1e-6)
    scale = 0.5 / (0.5 + 1e-6)  # (R - mean) / (std + eps) with |R - mean| = std = 0.5
    expected = torch.tensor([scale, 0.0, -scale, 0.0, 0.0, 0.0])
    torch.testing.assert_close(adv, expected)
    assert adv.dtype == torch.float32


def test_grpo_uneven_group():
    # rewards 0, 1, 1, 1: mean 0.75; unbiased var = (0.75^2 + 3 * 0.25^2) / 3 = 0.75 / 3 = 0.25; std 0.5
    adv = compute_advantages(torch.tensor([0.0, 1.0, 1.0, 1.0]), torch.tensor([0, 0, 0, 0]), "grpo", eps=0.0)
    torch.testing.assert_close(adv, torch.tensor([-1.5, 0.5, 0.5, 0.5]))


def test_grpo_group_with_std_below_eps_is_zero():
    # std of (1, 1 + 1e-8) is ~7e-9 <= eps: the whole group gets 0 rather than a blown-up +-0.7
    adv = compute_advantages(
        torch.tensor([1.0, 1.0 + 1e-8], dtype=torch.float64), torch.tensor([0, 0]), "grpo"
    )
    assert adv.tolist() == [0.0, 0.0]


def test_drgrpo_hand_computed():
    # R - group mean: group 7 -> 0.5, -0.5, 0.0; group 3 -> 0, 0; singleton -> 0.7 - 0.7 = 0
    adv = compute_advantages(REWARDS, GROUPS, "drgrpo")
    torch.testing.assert_close(adv, torch.tensor([0.5, 0.0, -0.5, 0.0, 0.0, 0.0]))


def test_rloo_hand_computed():
    # group 7: 1 - (0 + 0.5) / 2 = 0.75; 0 - (1 + 0.5) / 2 = -0.75; 0.5 - (1 + 0) / 2 = 0
    adv = compute_advantages(REWARDS, GROUPS, "rloo")
    torch.testing.assert_close(adv, torch.tensor([0.75, 0.0, -0.75, 0.0, 0.0, 0.0]))
    # rewards 0, 1, 1, 1: 0 - 1 = -1; 1 - (0 + 1 + 1) / 3 = 1/3
    adv = compute_advantages(torch.tensor([0.0, 1.0, 1.0, 1.0]), torch.tensor([5, 5, 5, 5]), "rloo")
    torch.testing.assert_close(adv, torch.tensor([-1.0, 1 / 3, 1 / 3, 1 / 3]))


@pytest.mark.parametrize("estimator", sorted(ADVANTAGE_ESTIMATORS))
def test_singletons_get_zero(estimator):
    adv = compute_advantages(torch.tensor([3.0, -2.0, 0.1]), torch.tensor([0, 1, 2]), estimator)
    assert adv.tolist() == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("estimator", sorted(ADVANTAGE_ESTIMATORS))
def test_empty_batch(estimator):
    adv = compute_advantages(torch.zeros(0), torch.zeros(0, dtype=torch.long), estimator)
    assert adv.shape == (0,) and adv.dtype == torch.float32


def test_group_stats_first_appearance_order():
    stats = group_stats(REWARDS, GROUPS)
    assert stats.group_ids.tolist() == [7, 3, 9]
    assert stats.index.tolist() == [0, 1, 0, 2, 0, 1]
    assert stats.count.tolist() == [3, 2, 1]
    torch.testing.assert_close(stats.mean, torch.tensor([0.5, 1.0, 0.7], dtype=torch.float64))
    torch.testing.assert_close(stats.std, torch.tensor([0.5, 0.0, 0.0], dtype=torch.float64))


def test_unknown_estimator_names_the_choices():
    with pytest.raises(ConfigError, match="'grpo'.*'drgrpo'.*'rloo'"):
        compute_advantages(REWARDS, GROUPS, "ppo")


def test_bad_inputs():
    with pytest.raises(ValueError, match="6 entries"):
        compute_advantages(REWARDS, GROUPS[:5])
    with pytest.raises(ValueError, match="integer"):
        compute_advantages(REWARDS, GROUPS.float())
    with pytest.raises(ValueError, match="finite"):
        compute_advantages(torch.tensor([1.0, float("nan")]), torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="1-D"):
        compute_advantages(REWARDS.reshape(2, 3), GROUPS.reshape(2, 3))
    with pytest.raises(ConfigError, match="eps"):
        compute_advantages(REWARDS, GROUPS, eps=-1.0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.sampled_from([0.0, 0.5, 1.0, -0.1, 0.9])),
        min_size=1,
        max_size=20,
    )
)
def test_estimator_identities(samples):
    groups = torch.tensor([g for g, _ in samples])
    rewards = torch.tensor([r for _, r in samples])
    grpo = compute_advantages(rewards, groups, "grpo")
    dr = compute_advantages(rewards, groups, "drgrpo")
    rloo = compute_advantages(rewards, groups, "rloo")
    for g in groups.unique():
        members = groups == g
        n = int(members.sum())
        # centred estimators sum to 0 within each group
        assert abs(float(grpo[members].sum())) < 1e-4
        assert abs(float(dr[members].sum())) < 1e-5
        # leave-one-out = n / (n - 1) * (R - mean)
        if n > 1:
            torch.testing.assert_close(rloo[members], dr[members] * n / (n - 1), atol=1e-5, rtol=1e-5)
        else:
            assert float(rloo[members]) == 0.0
        # GRPO advantages of a varied group have unit (unbiased) std
        if n > 1 and float(rewards[members].std()) > 1e-3:
            assert abs(float(grpo[members].std()) - 1.0) < 1e-3
