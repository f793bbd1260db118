"""Importance-sampling correction on hand-computed ratios: every mode, the bounds, the metrics, the loss."""

from __future__ import annotations

import math

import pytest
import torch

from gift.algorithms.losses import policy_loss
from gift.algorithms.rollout_correction import CorrectionSettings, importance_weights, summarise

LN2, LN4 = math.log(2.0), math.log(4.0)
SEQUENCE_MASK = CorrectionSettings(mode="sequence_mask")


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two trajectories of two sampled tokens and a padding column holding garbage.

    Log ratios trainer - sampler: A = [ln 2, ln 2] (token ratios 2, 2; sequence ratio 4),
    B = [ln 4, ln 0.5] (token ratios 4, 0.5; sequence ratio 2).
    """
    sampled = torch.tensor([[-2.0, -1.0, float("nan")], [-2.0, -1.0, 0.0]])
    trainer = sampled + torch.tensor([[LN2, LN2, 0.0], [LN4, -LN2, float("inf")]])
    trainer[0, 2] = float("nan")
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    return trainer, sampled, mask


def weights(mode: str, **options) -> list[list[float]]:
    trainer, sampled, mask = batch()
    w, _ = importance_weights(trainer, sampled, mask, CorrectionSettings(mode=mode, **options))
    return [[round(v, 5) for v in row[:2]] for row in w.tolist()]


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("token_truncate", [[2.0, 2.0], [3.0, 0.5]]),
        ("token_mask", [[2.0, 2.0], [0.0, 0.5]]),
        ("sequence_truncate", [[3.0, 3.0], [2.0, 2.0]]),
        ("sequence_mask", [[0.0, 0.0], [2.0, 2.0]]),
    ],
)
def test_each_mode_weights_the_tokens_as_computed_by_hand(mode, expected):
    assert weights(mode, cap=3.0) == expected


def test_a_floor_bounds_the_ratio_from_below():
    assert weights("token_truncate", cap=3.0, floor=0.6) == [[2.0, 2.0], [3.0, 0.6]]
    assert weights("token_mask", cap=3.0, floor=0.6) == [[2.0, 2.0], [0.0, 0.0]]


def test_geometric_mask_keeps_only_trajectories_whose_mean_log_ratio_stays_in_the_band():
    sampled = torch.tensor([[-1.0, -1.0], [-1.0, -1.0], [-1.0, -1.0]])
    # Geometric means: exp(0) = 1 (kept, although one token's ratio is e^0.005), exp(0.015) (out), sqrt 2 (out).
    trainer = sampled + torch.tensor([[0.005, -0.005], [0.01, 0.02], [LN2, 0.0]])
    mask = torch.ones_like(sampled)
    w, stats = importance_weights(trainer, sampled, mask, CorrectionSettings(mode="geometric_mask"))
    assert w.tolist() == [[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]
    assert summarise([stats])["is_masked_frac"] == pytest.approx(2 / 3)


def test_metrics_masked_fraction_ratio_mean_and_max_and_mismatch_kl():
    trainer, sampled, mask = batch()
    _, seq = importance_weights(trainer, sampled, mask, CorrectionSettings(mode="sequence_mask"))
    _, tok = importance_weights(trainer, sampled, mask, CorrectionSettings(mode="token_mask"))
    # k3 = r - ln r - 1 per token: A 2 - ln 2 - 1 (twice), B 4 - ln 4 - 1 and 0.5 - ln 0.5 - 1.
    kl = (2 * (1 - LN2) + (3 - LN4) + (-0.5 + LN2)) / 4
    assert summarise([seq]) == pytest.approx(
        {"is_masked_frac": 0.5, "is_ratio_mean": 3.0, "is_ratio_max": 4.0, "mismatch_kl": kl}
    )
    assert summarise([tok]) == pytest.approx(
        {"is_masked_frac": 0.25, "is_ratio_mean": 2.125, "is_ratio_max": 4.0, "mismatch_kl": kl}
    )
    # Micro-batches add up: the two rows scored apart give the figures of the whole batch.
    parts = [
        importance_weights(trainer[i : i + 1], sampled[i : i + 1], mask[i : i + 1], SEQUENCE_MASK)[1]
        for i in range(2)
    ]
    assert summarise(parts) == pytest.approx(summarise([seq]))


def test_off_gives_no_weights_but_still_measures_the_mismatch():
    trainer, sampled, mask = batch()
    w, stats = importance_weights(trainer, sampled, mask, CorrectionSettings(mode="off"))
    assert w is None
    assert summarise([stats])["is_masked_frac"] == 0.0
    assert summarise([stats])["is_ratio_max"] == pytest.approx(4.0)


def test_the_weights_multiply_each_tokens_policy_gradient_loss():
    trainer, sampled, mask = batch()
    w, _ = importance_weights(trainer, sampled, mask, CorrectionSettings(mode="token_mask"))
    logprobs = torch.zeros(2, 3, requires_grad=True)
    adv = torch.tensor([1.0, -1.0])
    loss, _ = policy_loss(logprobs, logprobs.detach(), adv, mask, entropy_coef=0.0, is_weights=w)
    # Ratio 1 everywhere: per token -A, times the weights [2, 2] and [0, 0.5], over 4 tokens.
    assert float(loss.detach()) == pytest.approx((-2.0 - 2.0 + 0.0 + 0.5) / 4)
    loss.backward()
    torch.testing.assert_close(logprobs.grad, torch.tensor([[-0.5, -0.5, 0.0], [0.0, 0.125, 0.0]]))
