"""Variance-based group filtering: ranking, ties, rounding, minimums, zero-variance groups."""

from __future__ import annotations

import pytest
import torch

from gift.algorithms import filter_groups, groups_to_keep
from gift.errors import ConfigError


def _batch(groups: dict[int, list[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards and group ids, group members contiguous, groups in dict order."""
    ids = [g for g, rs in groups.items() for _ in rs]
    rewards = [r for rs in groups.values() for r in rs]
    return torch.tensor(rewards), torch.tensor(ids)


# Eight groups of two; the unbiased std of a pair (a, b) is |a - b| / sqrt(2).
EIGHT = {
    0: [0.0, 0.0],  # std 0
    1: [0.0, 0.5],  # 0.354
    2: [0.0, 1.0],  # 0.707  <- largest
    3: [1.0, 1.0],  # 0
    4: [0.2, 0.3],  # 0.071
    5: [1.0, 0.2],  # 0.566  <- second
    6: [0.5, 0.5],  # 0
    7: [0.4, 0.1],  # 0.212
}


def test_keeps_the_largest_std_groups():
    rewards, ids = _batch(EIGHT)
    result = filter_groups(rewards, ids, keep_ratio=0.25)  # int(0.25 * 8) = 2 groups
    assert result.kept_groups == (2, 5)
    assert result.keep_mask.tolist() == [g in (2, 5) for g in ids.tolist()]
    assert (result.n_groups, result.n_kept, result.n_zero_std) == (8, 2, 3)
    assert result.group_std[2] == pytest.approx(2**-0.5)
    metrics = result.metrics()
    assert metrics["kept_trajectories"] == 4.0
    assert metrics["zero_std_fraction"] == pytest.approx(3 / 8)
    assert metrics["kept_std_mean"] == pytest.approx((1.0 + 0.8) / 2 / 2**0.5)


def test_ranking_order_for_half():
    rewards, ids = _batch(EIGHT)
    assert filter_groups(rewards, ids, keep_ratio=0.5).kept_groups == (2, 5, 1, 7)


def test_ties_broken_by_first_appearance_not_by_id():
    # every group has std 1/sqrt(2); ids appear in the order 9, 2, 5, 1
    rewards, ids = _batch({9: [0.0, 1.0], 2: [1.0, 0.0], 5: [0.0, 1.0], 1: [1.0, 0.0]})
    assert filter_groups(rewards, ids, keep_ratio=0.5).kept_groups == (9, 2)
    # interleaved members: first appearance of group 4 (position 0) beats group 8 (position 1)
    result = filter_groups(torch.tensor([0.0, 1.0, 1.0, 0.0]), torch.tensor([4, 8, 4, 8]), keep_ratio=0.5)
    assert result.kept_groups == (4,)
    assert result.keep_mask.tolist() == [True, False, True, False]


@pytest.mark.parametrize(
    ("n_groups", "ratio", "min_groups", "expected"),
    [
        (8, 0.25, 1, 2),  # 8 * 0.25 = 2
        (7, 0.25, 1, 1),  # 1.75 floors to 1
        (3, 0.25, 1, 1),  # 0.75 floors to 0, raised to min_groups
        (3, 0.25, 0, 0),
        (8, 0.25, 3, 3),  # min_groups wins
        (2, 0.25, 5, 2),  # capped at the number of groups
        (100, 0.29, 1, 29),  # 0.29 * 100 is 28.999999999999996 in floating point
        (16, 1.0, 1, 16),
        (0, 0.25, 1, 0),
    ],
)
def test_groups_to_keep(n_groups, ratio, min_groups, expected):
    assert groups_to_keep(n_groups, ratio, min_groups) == expected


def test_min_groups_applies_to_filtering():
    rewards, ids = _batch({0: [0.0, 1.0], 1: [0.0, 0.5], 2: [1.0, 1.0]})
    assert filter_groups(rewards, ids, keep_ratio=0.25, min_groups=1).kept_groups == (0,)
    assert filter_groups(rewards, ids, keep_ratio=0.25, min_groups=2).kept_groups == (0, 1)


def test_keep_ratio_one_keeps_everything():
    rewards, ids = _batch(EIGHT)
    result = filter_groups(rewards, ids, keep_ratio=1.0)
    assert result.n_kept == 8 and bool(result.keep_mask.all())


def test_zero_std_groups_survive_only_when_too_few_vary():
    # 8 groups, only one has variance: top-2 must take a zero-std group (the first one to appear)
    rewards, ids = _batch({g: ([0.0, 1.0] if g == 6 else [1.0, 1.0]) for g in range(8)})
    assert filter_groups(rewards, ids).kept_groups == (6, 0)
    dropped = filter_groups(rewards, ids, drop_zero_std=True)
    assert dropped.kept_groups == (6,) and dropped.n_kept == 1
    assert dropped.keep_mask.tolist() == [g == 6 for g in ids.tolist()]
    assert dropped.n_zero_std == 7


def test_drop_zero_std_can_keep_nothing():
    rewards, ids = _batch({0: [1.0, 1.0], 1: [0.0, 0.0]})
    result = filter_groups(rewards, ids, keep_ratio=1.0, drop_zero_std=True)
    assert result.n_kept == 0 and not bool(result.keep_mask.any())
    assert result.metrics()["kept_std_mean"] == 0.0


def test_singleton_groups_have_zero_std():
    result = filter_groups(torch.tensor([5.0, 0.0, 1.0]), torch.tensor([0, 1, 1]), keep_ratio=0.5)
    assert result.group_std == (0.0, pytest.approx(2**-0.5))
    assert result.kept_groups == (1,)
    assert result.n_zero_std == 1


@pytest.mark.parametrize(
    "kwargs", [{"keep_ratio": 1.5}, {"keep_ratio": -0.1}, {"min_groups": -1}, {"min_groups": 1.5}]
)
def test_bad_options(kwargs):
    rewards, ids = _batch(EIGHT)
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        filter_groups(rewards, ids, **kwargs)
