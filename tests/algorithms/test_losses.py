"""Policy loss, aggregation, entropy, KL and log-prob helpers against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from gift.algorithms import (
    LOSS_AGG_MODES,
    PolicyLossConfig,
    aggregate,
    entropy_from_logits,
    gather_logprobs,
    k3_kl,
    loss_normaliser,
    policy_loss,
)
from gift.errors import ConfigError

ONE = torch.ones(1, 1)


def _single(ratio: float, advantage: float, **options):
    """Loss, metrics and d loss / d logprob for one token with the given ratio (old log-prob 0)."""
    logprobs = torch.full((1, 1), math.log(ratio), requires_grad=True)
    loss, metrics = policy_loss(logprobs, torch.zeros(1, 1), torch.full((1, 1), advantage), ONE, **options)
    loss.backward()
    return float(loss.detach()), metrics, float(logprobs.grad)


# ---- clip / clip-higher / dual-clip branches --------------------------------------------------------------


def test_positive_advantage_above_upper_clip():
    # A=+1, ratio 1.5: l1 = -1.5, l2 = -clip(1.5, 0.8, 1.28) = -1.28, max = -1.28; clipped, so no gradient
    loss, metrics, grad = _single(1.5, 1.0)
    assert loss == pytest.approx(-1.28)
    assert metrics["pg_clipfrac"] == 1.0 and metrics["pg_clipfrac_lower"] == 0.0
    assert grad == 0.0


def test_positive_advantage_below_lower_bound_is_not_clipped():
    # A=+1, ratio 0.5: l1 = -0.5, l2 = -0.8, max = -0.5 (unclipped); d(-A * ratio)/d logp = -A * ratio = -0.5
    loss, metrics, grad = _single(0.5, 1.0)
    assert loss == pytest.approx(-0.5)
    assert metrics["pg_clipfrac"] == 0.0
    assert grad == pytest.approx(-0.5)


def test_negative_advantage_below_lower_clip():
    # A=-1, ratio 0.5: l1 = 0.5, l2 = 0.8, max = 0.8 (clipped); dual bound 3 is not reached
    loss, metrics, grad = _single(0.5, -1.0)
    assert loss == pytest.approx(0.8)
    assert metrics["pg_clipfrac"] == 1.0 and metrics["pg_clipfrac_lower"] == 0.0
    assert grad == 0.0


def test_negative_advantage_inside_range():
    # A=-2, ratio 1.2: l1 = 2.4, l2 = 2 * clip(1.2) = 2.4; gradient -A * ratio = 2.4
    loss, metrics, grad = _single(1.2, -2.0)
    assert loss == pytest.approx(2.4)
    assert metrics["pg_clipfrac"] == 0.0
    assert grad == pytest.approx(2.4)


def test_dual_clip_caps_negative_advantage_loss():
    # A=-1, ratio 5: l1 = 5, l2 = 1.28, max = 5; dual-clip min(5, -A * 3) = 3, with no gradient
    loss, metrics, grad = _single(5.0, -1.0)
    assert loss == pytest.approx(3.0)
    assert metrics["pg_clipfrac_lower"] == 1.0 and metrics["pg_clipfrac"] == 0.0
    assert grad == 0.0
    # without dual-clip the loss is the unbounded 5 and the gradient -A * ratio = 5
    loss, metrics, grad = _single(5.0, -1.0, dual_clip=None)
    assert loss == pytest.approx(5.0) and grad == pytest.approx(5.0)
    assert metrics["pg_clipfrac_lower"] == 0.0


def test_dual_clip_ignores_positive_advantage():
    # A=+1, ratio 5: l1 = -5, l2 = -1.28, max = -1.28; the dual bound -A * 3 = -3 must not apply
    loss, _, _ = _single(5.0, 1.0)
    assert loss == pytest.approx(-1.28)


def test_clip_higher_versus_symmetric_clip():
    # A=+1, ratio 1.25: symmetric 0.2 clips to 1.2 (loss -1.2); clip-higher 0.28 leaves it (loss -1.25)
    loss_sym, metrics_sym, _ = _single(1.25, 1.0, clip_high=0.2)
    loss_dapo, metrics_dapo, _ = _single(1.25, 1.0)
    assert loss_sym == pytest.approx(-1.2) and metrics_sym["pg_clipfrac"] == 1.0
    assert loss_dapo == pytest.approx(-1.25) and metrics_dapo["pg_clipfrac"] == 0.0


def test_huge_log_ratio_stays_finite():
    logprobs = torch.tensor([[0.0, 0.0]], requires_grad=True)
    old = torch.tensor([[-500.0, 500.0]])  # log-ratios +500 and -500, clamped to +-20 before exp
    loss, metrics = policy_loss(logprobs, old, torch.tensor([[-1.0, 1.0]]), torch.ones(1, 2))
    loss.backward()
    # token 1: A=-1, ratio e^20 -> dual-clip 3; token 2: A=+1, ratio e^-20 -> -e^-20; mean of the two
    assert float(loss.detach()) == pytest.approx((3.0 - math.exp(-20)) / 2)
    assert math.isfinite(metrics["ratio_mean"]) and bool(torch.isfinite(logprobs.grad).all())


def test_ratio_one_gives_minus_mean_advantage():
    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, -9.0]])
    adv = torch.tensor([[0.5, 0.5, 99.0], [-1.0, 2.0, 99.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    loss, metrics = policy_loss(logprobs, logprobs.clone(), adv, mask, entropy_coef=0.0)
    assert float(loss) == pytest.approx(-(0.5 + 0.5 - 1.0 + 2.0) / 4)
    assert metrics["ratio_mean"] == pytest.approx(1.0) and metrics["ppo_kl"] == pytest.approx(0.0)
    assert metrics["pg_clipfrac"] == 0.0 and metrics["n_tokens"] == 4.0


def test_per_sequence_advantages_are_spread():
    logprobs = torch.zeros(2, 3)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    spread, _ = policy_loss(logprobs, logprobs, torch.tensor([[2.0] * 3, [-1.0] * 3]), mask)
    per_seq, _ = policy_loss(logprobs, logprobs, torch.tensor([2.0, -1.0]), mask)
    assert float(per_seq) == float(spread) == pytest.approx(-(3 * 2.0 - 1.0) / 4)


def test_padding_garbage_is_ignored():
    logprobs = torch.tensor([[-1.0, float("-inf")]], requires_grad=True)
    old = torch.tensor([[-1.0, float("nan")]])
    loss, metrics = policy_loss(logprobs, old, torch.tensor([[1.0, float("nan")]]), torch.tensor([[1, 0]]))
    loss.backward()
    assert float(loss.detach()) == pytest.approx(-1.0)
    assert logprobs.grad.tolist() == [[-1.0, 0.0]]
    assert all(math.isfinite(v) for v in metrics.values())


# ---- aggregation ------------------------------------------------------------------------------------------

# Per-token values on a ragged mask; masked-out positions hold 100 so that any leak is obvious.
VALUES = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 100.0, 100.0, 100.0], [100.0] * 4])
MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]])  # third sequence is empty


def test_token_mean():
    assert float(aggregate(VALUES, MASK, "token-mean")) == pytest.approx((1 + 2 + 3 + 4) / 4)


def test_seq_mean_token_mean():
    # sequence means 2 and 4; the empty sequence does not count
    assert float(aggregate(VALUES, MASK, "seq-mean-token-mean")) == pytest.approx((2 + 4) / 2)


def test_seq_mean_token_sum_norm():
    # token sums 6 and 4, each divided by the constant length (T = 4 by default, or norm_length), mean over 2
    assert float(aggregate(VALUES, MASK, "seq-mean-token-sum-norm")) == pytest.approx((6 / 4 + 4 / 4) / 2)
    got = aggregate(VALUES, MASK, "seq-mean-token-sum-norm", norm_length=10)
    assert float(got) == pytest.approx((6 / 10 + 4 / 10) / 2)


def test_explicit_normaliser_replaces_own_count():
    assert float(aggregate(VALUES, MASK, "token-mean", normaliser=20)) == pytest.approx(10 / 20)
    assert float(aggregate(VALUES, MASK, "seq-mean-token-mean", normaliser=4)) == pytest.approx(6 / 4)


def test_aggregate_ignores_nan_padding():
    values = VALUES.clone()
    values[MASK == 0] = float("nan")
    for mode in LOSS_AGG_MODES:
        torch.testing.assert_close(aggregate(values, MASK, mode), aggregate(VALUES, MASK, mode))


def test_loss_normaliser_counts():
    assert loss_normaliser(MASK, "token-mean") == 4.0
    assert loss_normaliser(MASK, "seq-mean-token-mean") == 2.0
    assert loss_normaliser(MASK, "seq-mean-token-sum-norm") == 2.0


def test_empty_mask_gives_zero_loss():
    for mode in LOSS_AGG_MODES:
        assert float(aggregate(VALUES, torch.zeros_like(MASK), mode)) == 0.0


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_policy_loss_uses_the_aggregation_mode(mode):
    # ratio 1 makes the per-token loss -A, so A = -VALUES reproduces the aggregation tests
    zeros = torch.zeros(3, 4)
    loss, _ = policy_loss(zeros, zeros, -VALUES, MASK, loss_agg=mode, entropy_coef=0.0)
    torch.testing.assert_close(loss, aggregate(VALUES, MASK, mode))


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_micro_batches_accumulate_to_the_full_batch_gradient(mode):
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(4, 5, 3, generator=gen)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 0, 0]])
    old = -torch.rand(4, 5, generator=gen) - 0.5
    ref = -torch.rand(4, 5, generator=gen) - 0.5
    adv = torch.randn(4, 5, generator=gen)
    options = {"loss_agg": mode, "entropy_coef": 0.01, "kl_coef": 0.1, "norm_length": 5}

    def loss_of(weight, rows, width, normaliser=None):
        logits = features[rows, :width] @ weight
        logprobs = -torch.nn.functional.softplus(logits)  # a log-probability that depends on the weight
        entropy = torch.sigmoid(logits)
        loss, _ = policy_loss(
            logprobs, old[rows, :width], adv[rows, :width], mask[rows, :width],
            entropy=entropy, ref_logprobs=ref[rows, :width], normaliser=normaliser, **options,
        )  # fmt: skip
        return loss

    weight = torch.tensor([0.3, -0.2, 0.5], requires_grad=True)
    full_grad = torch.autograd.grad(loss_of(weight, slice(0, 4), 5), weight)[0]

    total = loss_normaliser(mask, mode)
    # micro-batch 1 = sequence 0 (width 5); micro-batch 2 = sequences 1..3 with the padding column cut off
    accumulated = torch.zeros(3)
    for rows, width in ((slice(0, 1), 5), (slice(1, 4), 4)):
        accumulated += torch.autograd.grad(loss_of(weight, rows, width, normaliser=total), weight)[0]
    torch.testing.assert_close(accumulated, full_grad)

    # without the shared normaliser each micro-batch averages on its own, which gives a different gradient
    naive = sum(
        torch.autograd.grad(loss_of(weight, r, w), weight)[0] for r, w in ((slice(0, 1), 5), (slice(1, 4), 4))
    )
    assert not torch.allclose(naive / 2, full_grad)


# ---- entropy and KL ---------------------------------------------------------------------------------------


def test_entropy_of_uniform_and_one_hot():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, float("-inf"), float("-inf"), float("-inf")]])
    entropy = entropy_from_logits(logits)
    assert entropy.tolist() == pytest.approx([math.log(4), 0.0])
    # a nearly one-hot distribution from large finite logits: no overflow, entropy ~ 0
    assert float(entropy_from_logits(torch.tensor([1000.0, 0.0, 0.0]))) == pytest.approx(0.0, abs=1e-6)


def test_entropy_two_outcomes():
    # logits (0, ln 3) -> p = (1/4, 3/4); H = -(1/4 ln 1/4 + 3/4 ln 3/4)
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert float(entropy_from_logits(torch.tensor([0.0, math.log(3)]))) == pytest.approx(expected)


def test_entropy_gradient_finite_with_banned_tokens():
    logits = torch.tensor([[1.0, 2.0, float("-inf")]], requires_grad=True)
    entropy_from_logits(logits).sum().backward()
    assert bool(torch.isfinite(logits.grad).all()) and float(logits.grad[0, 2]) == 0.0


def test_entropy_chunked_matches_and_keeps_shape():
    logits = torch.randn(2, 5, 11, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    full = entropy_from_logits(logits)
    assert full.shape == (2, 5) and full.dtype == torch.float32
    torch.testing.assert_close(entropy_from_logits(logits, chunk_size=3), full)


def test_entropy_bonus_in_loss():
    zeros = torch.zeros(1, 2)
    entropy = torch.tensor([[1.0, 3.0]])
    loss, metrics = policy_loss(zeros, zeros, torch.ones(1, 2), torch.ones(1, 2), entropy=entropy)
    # -mean(A) - 0.001 * mean(entropy) = -1 - 0.001 * 2
    assert float(loss) == pytest.approx(-1.002)
    assert metrics["entropy"] == pytest.approx(2.0)


def test_k3_values():
    logp = torch.tensor([-1.0, -2.0, -0.1])
    assert k3_kl(logp, logp).tolist() == [0.0, 0.0, 0.0]
    # ref - logp = ln 2: e^{ln 2} - ln 2 - 1 = 1 - ln 2
    assert float(k3_kl(torch.tensor(-math.log(2)), torch.tensor(0.0))) == pytest.approx(1 - math.log(2))
    # ref - logp = -1: e^-1 + 1 - 1 = e^-1
    assert float(k3_kl(torch.tensor(0.0), torch.tensor(-1.0))) == pytest.approx(math.exp(-1))
    gen = torch.Generator().manual_seed(2)
    random = k3_kl(torch.randn(1000, generator=gen) * 5, torch.randn(1000, generator=gen) * 5)
    assert bool((random >= 0).all()) and float(random.max()) <= 10.0


def test_kl_penalty_in_loss():
    logp = torch.tensor([[-math.log(2), 0.0]])
    ref = torch.tensor([[0.0, 0.0]])
    loss, metrics = policy_loss(
        logp, logp, torch.zeros(1, 2), torch.ones(1, 2), ref_logprobs=ref, kl_coef=0.5
    )
    # pg loss 0; kl per token (1 - ln 2, 0), token-mean (1 - ln 2) / 2, times 0.5
    assert float(loss) == pytest.approx(0.5 * (1 - math.log(2)) / 2)
    assert metrics["kl"] == pytest.approx((1 - math.log(2)) / 2)


def test_kl_coef_needs_reference():
    zeros = torch.zeros(1, 1)
    with pytest.raises(ValueError, match="ref_logprobs"):
        policy_loss(zeros, zeros, zeros, ONE, kl_coef=0.1)


# ---- log-probs ---------------------------------------------------------------------------------------------


def test_gather_logprobs_hand_computed():
    # logits (0, ln 3): log p(token 1) = ln(3/4), log p(token 0) = ln(1/4)
    logits = torch.tensor([[[0.0, math.log(3)], [0.0, math.log(3)]]])
    got = gather_logprobs(logits, torch.tensor([[1, 0]]))
    assert got[0].tolist() == pytest.approx([math.log(0.75), math.log(0.25)])


def test_gather_logprobs_matches_log_softmax_and_chunks():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 4, 50, generator=gen) * 10
    ids = torch.randint(0, 50, (3, 4), generator=gen)
    expected = torch.log_softmax(logits, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(gather_logprobs(logits, ids), expected)
    torch.testing.assert_close(gather_logprobs(logits, ids, chunk_size=5), expected)
    assert gather_logprobs(logits.to(torch.bfloat16), ids).dtype == torch.float32


def test_gather_logprobs_bad_ids():
    with pytest.raises(ValueError, match="token ids"):
        gather_logprobs(torch.zeros(2, 5), torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="vocabulary"):
        gather_logprobs(torch.zeros(2, 5), torch.tensor([0, 1, 2]))


# ---- options ----------------------------------------------------------------------------------------------


def test_config_round_trip_and_validation():
    cfg = PolicyLossConfig(clip_high=0.2, loss_agg="seq-mean-token-mean")
    zeros = torch.zeros(1, 1)
    loss, _ = policy_loss(zeros + math.log(1.25), zeros, ONE, ONE, **cfg.as_kwargs())
    assert float(loss) == pytest.approx(-1.2)
    for bad in (
        {"loss_agg": "sum"},
        {"clip_low": 1.5},
        {"dual_clip": 0.5},
        {"dual_clip": 1.0},
        {"kl_coef": -1.0},
    ):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            PolicyLossConfig(**bad)
    with pytest.raises(ConfigError, match="loss_agg"):
        policy_loss(zeros, zeros, zeros, ONE, loss_agg="seq-sum")
