"""Token-level clipped policy-gradient loss of StarPO* (GRPO in PPO form, DAPO clip-higher, no KL by default).

All tensors are [B, T]: B sampled sequences, T token positions, `mask` = 1 on the tokens the policy sampled
(assistant turns only). Computation happens in float32 whatever the input dtype, and values at masked-out
positions are ignored even when they are NaN or inf (padding often carries garbage log-probs).

Gradient accumulation: pass `normaliser=loss_normaliser(full_mask, loss_agg)` (the mini-batch total, or the sum of
`loss_normaliser` over its micro-batches) to every micro-batch call; the summed micro-batch gradients then equal
the gradient of one call on the whole mini-batch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from gift.errors import ConfigError, check_choice, check_range

__all__ = [
    "LOSS_AGG_MODES",
    "PolicyLossConfig",
    "aggregate",
    "entropy_from_logits",
    "gather_logprobs",
    "k3_kl",
    "loss_normaliser",
    "policy_loss",
]

LOSS_AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")
LOG_RATIO_LIMIT = 20.0  # exp(±20) stays finite in float32; beyond it the token is clipped anyway
KL_LIMIT = 10.0  # k3 values above this carry no useful signal, only overflow risk (verl clamps the same way)


@dataclass(frozen=True)
class PolicyLossConfig:
    """Options of `policy_loss`; `policy_loss(..., **cfg.as_kwargs())` applies them.

    clip_low, clip_high: decoupled PPO clip range [1 - clip_low, 1 + clip_high] on the importance ratio (PPO,
        Schulman et al. 2017; "clip-higher" with 0.2 / 0.28 from DAPO, Yu et al. 2025), so that unlikely tokens
        with positive advantage may gain more probability per step, which keeps entropy from collapsing.
    dual_clip: bound c on the loss of negative-advantage tokens, -A * c (dual-clip PPO, Ye et al. 2020,
        "Mastering Complex Control in MOBA Games with Deep Reinforcement Learning"); None disables it.
    loss_agg: "token-mean" (DAPO's token-level loss and verl's default, used by GIFT's code),
        "seq-mean-token-mean" (per-trajectory mean then mean over trajectories: the paper's Eq. 5), or
        "seq-mean-token-sum-norm" (Dr. GRPO, Liu et al. 2025: token sum / a constant length, mean over sequences).
    entropy_coef: weight of the entropy bonus (0.001 in GIFT); applied only when entropies are passed.
    kl_coef: weight of the k3 KL penalty to a reference policy (Schulman 2020, "Approximating KL Divergence");
        0.0 in GIFT (DAPO removes it), in which case no reference model is needed.
    norm_length: the constant length for "seq-mean-token-sum-norm"; None uses T of each call, which varies with
        padding, so set it (e.g. to the maximum response length) for the Dr. GRPO behaviour.
    """

    clip_low: float = 0.2
    clip_high: float = 0.28
    dual_clip: float | None = 3.0
    loss_agg: str = "token-mean"
    entropy_coef: float = 0.001
    kl_coef: float = 0.0
    norm_length: int | None = None

    def __post_init__(self) -> None:
        check_range("clip_low", self.clip_low, low=0.0, high=1.0)
        check_range("clip_high", self.clip_high, low=0.0)
        if self.dual_clip is not None:
            check_range("dual_clip", self.dual_clip, low=1.0)
            if self.dual_clip == 1.0:
                raise ConfigError(
                    "dual_clip=1.0 is not allowed; use a value > 1 or None to disable dual-clip"
                )
        check_choice("loss_agg", self.loss_agg, LOSS_AGG_MODES)
        check_range("entropy_coef", self.entropy_coef)
        check_range("kl_coef", self.kl_coef, low=0.0)
        if self.norm_length is not None and (
            isinstance(self.norm_length, bool)
            or not isinstance(self.norm_length, int)
            or self.norm_length < 1
        ):
            raise ConfigError(f"norm_length={self.norm_length!r} must be a positive integer or None")

    def as_kwargs(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _masked(values: Tensor, mask: Tensor) -> Tensor:
    """values with masked-out positions replaced by 0 (gradient-safe even if those positions are NaN/inf)."""
    return torch.where(mask != 0, values, torch.zeros((), dtype=values.dtype, device=values.device))


def _as_divisor(value: float | Tensor, name: str) -> float | Tensor:
    if isinstance(value, Tensor):
        return value.to(torch.float32).clamp(min=torch.finfo(torch.float32).tiny)
    check_range(name, value, low=0.0)
    return value if value > 0 else 1.0  # an empty batch: the numerator is 0 too


def loss_normaliser(mask: Tensor, loss_agg: str = "token-mean") -> float:
    """What `loss_agg` divides by: masked tokens for "token-mean", non-empty sequences for the seq-mean modes."""
    check_choice("loss_agg", loss_agg, LOSS_AGG_MODES)
    if loss_agg == "token-mean":
        return float(mask.to(torch.float32).sum())
    return float((mask.to(torch.float32).sum(dim=-1) > 0).sum())


def aggregate(
    values: Tensor,
    mask: Tensor,
    loss_agg: str = "token-mean",
    *,
    normaliser: float | Tensor | None = None,
    norm_length: int | None = None,
) -> Tensor:
    """Reduce per-token values [B, T] to a scalar with the `loss_agg` mode (see `PolicyLossConfig`).

    `normaliser` replaces this call's own denominator (`loss_normaliser(mask, loss_agg)`) by a mini-batch total.
    Empty sequences (no masked token) count for nothing in the seq-mean modes.
    """
    check_choice("loss_agg", loss_agg, LOSS_AGG_MODES)
    if values.shape != mask.shape:
        raise ValueError(
            f"values {tuple(values.shape)} and mask {tuple(mask.shape)} must have the same shape"
        )
    weights = mask.to(values.dtype)
    weighted = _masked(values, mask) * weights
    if loss_agg == "token-mean":
        own = weights.sum()
        total = weighted.sum()
    else:
        if values.dim() != 2:
            raise ValueError(f"{loss_agg!r} needs [B, T] inputs, got shape {tuple(values.shape)}")
        seq_tokens = weights.sum(dim=-1)
        if loss_agg == "seq-mean-token-mean":
            per_seq = weighted.sum(dim=-1) / torch.where(seq_tokens > 0, seq_tokens, 1.0)
        else:
            per_seq = weighted.sum(dim=-1) / float(norm_length or values.shape[-1])
        own = (seq_tokens > 0).sum().to(values.dtype)
        total = per_seq.sum()
    if normaliser is None:
        return total / own.clamp(min=torch.finfo(values.dtype).tiny)
    return total / _as_divisor(normaliser, "normaliser")


def k3_kl(logprobs: Tensor, ref_logprobs: Tensor) -> Tensor:
    """Per-token k3 estimate of KL(policy || reference): exp(ref - logp) - (ref - logp) - 1, always >= 0.

    Schulman 2020, "Approximating KL Divergence": unbiased for samples from the policy and never negative. The
    log-difference is clamped to ±20 and the result to [0, 10] so that one extreme token cannot overflow.
    """
    diff = (ref_logprobs.float() - logprobs.float()).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    return (torch.exp(diff) - diff - 1.0).clamp(min=0.0, max=KL_LIMIT)


def _row_chunks(flat: Tensor, chunk_size: int | None) -> list[Tensor]:
    if chunk_size is None:
        return [flat]
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"chunk_size={chunk_size!r} must be a positive integer or None")
    return list(flat.split(chunk_size, dim=0))


def entropy_from_logits(logits: Tensor, chunk_size: int | None = None) -> Tensor:
    """Entropy of softmax(logits) over the last dim, in float32: [..., V] -> [...].

    Works from log_softmax, so large logits do not overflow and -inf logits (banned tokens) contribute exactly 0
    with a finite gradient. `chunk_size` rows at a time bound the float32 temporaries for large vocabularies.
    """
    flat = logits.reshape(-1, logits.shape[-1])
    parts = []
    for chunk in _row_chunks(flat, chunk_size):
        logp = torch.log_softmax(chunk.float(), dim=-1)
        p = logp.exp()
        safe_logp = torch.where(p > 0, logp, torch.zeros((), dtype=logp.dtype, device=logp.device))
        parts.append(-(p * safe_logp).sum(dim=-1))
    return torch.cat(parts).reshape(logits.shape[:-1])


def gather_logprobs(logits: Tensor, token_ids: Tensor, chunk_size: int | None = None) -> Tensor:
    """log softmax(logits)[token_ids] in float32: [..., V] and [...] -> [...].

    Computed as logit[token] - logsumexp(logits), which never materialises the full log-softmax table;
    `chunk_size` rows at a time bound the float32 copy of the logits.
    """
    if logits.shape[:-1] != token_ids.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} must be token_ids {tuple(token_ids.shape)} plus a vocabulary dim"
        )
    vocab = logits.shape[-1]
    ids = token_ids.reshape(-1).long()
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
        raise ValueError(
            f"token ids must lie in [0, {vocab}), got range [{int(ids.min())}, {int(ids.max())}]"
        )
    flat = logits.reshape(-1, vocab)
    id_chunks = [ids] if chunk_size is None else list(ids.split(chunk_size))
    parts = []
    for chunk, chunk_ids in zip(_row_chunks(flat, chunk_size), id_chunks, strict=True):
        chunk = chunk.float()
        picked = chunk.gather(-1, chunk_ids.unsqueeze(-1)).squeeze(-1)
        parts.append(picked - torch.logsumexp(chunk, dim=-1))
    return torch.cat(parts).reshape(token_ids.shape)


def _local_mean(values: Tensor, mask: Tensor) -> float:
    """Masked mean over this call's tokens, for logging."""
    weights = mask.to(torch.float32)
    count = float(weights.sum())
    return float((_masked(values.detach().float(), mask) * weights).sum()) / count if count else math.nan


def policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    dual_clip: float | None = 3.0,
    loss_agg: str = "token-mean",
    entropy: Tensor | None = None,
    entropy_coef: float = 0.001,
    ref_logprobs: Tensor | None = None,
    kl_coef: float = 0.0,
    normaliser: float | Tensor | None = None,
    norm_length: int | None = None,
    is_weights: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Clipped policy-gradient loss to minimise, and metrics.

    Per token, with ratio = exp(logprobs - old_logprobs):
        l1 = -A * ratio, l2 = -A * clip(ratio, 1 - clip_low, 1 + clip_high), l = max(l1, l2),
        and for A < 0 with dual-clip: l = min(l, -A * dual_clip).
    loss = agg(l) - entropy_coef * agg(entropy) + kl_coef * agg(k3_kl(logprobs, ref_logprobs)).

    advantages: [B, T] (already spread over tokens) or [B] (one per sequence, spread here). entropy: per-token
    entropies with gradient (see `entropy_from_logits`); without it there is no entropy bonus. `is_weights`
    ([B, T], detached) multiply each token's policy-gradient loss: the sampler-to-trainer importance correction
    (`gift.algorithms.rollout_correction`); the normaliser is unchanged, as in TRL. Metrics are floats:
    loss, pg_loss, entropy and kl are this call's aggregated values (its share of the mini-batch when
    `normaliser` is given); pg_clipfrac, pg_clipfrac_lower (dual-clip), ppo_kl (mean old - new log-prob),
    ratio_mean, entropy_mean and kl_mean are means over this call's masked tokens (weight them by n_tokens).
    """
    config = PolicyLossConfig(clip_low, clip_high, dual_clip, loss_agg, entropy_coef, kl_coef, norm_length)
    if logprobs.dim() != 2:
        raise ValueError(f"logprobs must be [B, T], got shape {tuple(logprobs.shape)}")
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1).expand(logprobs.shape)
    for name, tensor in (("old_logprobs", old_logprobs), ("advantages", advantages), ("mask", mask)):
        if tensor.shape != logprobs.shape:
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}, expected {tuple(logprobs.shape)}")
    if kl_coef > 0 and ref_logprobs is None:
        raise ValueError(f"kl_coef={kl_coef} needs ref_logprobs; pass them or set kl_coef=0")

    logp = _masked(logprobs.float(), mask)
    old = _masked(old_logprobs.float(), mask).detach()
    adv = _masked(advantages.float(), mask).detach()
    log_ratio = (logp - old).clamp(-LOG_RATIO_LIMIT, LOG_RATIO_LIMIT)
    ratio = torch.exp(log_ratio)

    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1.0 - config.clip_low, 1.0 + config.clip_high)
    per_token = torch.maximum(unclipped, clipped)
    dual_active = torch.zeros_like(per_token, dtype=torch.bool)
    if config.dual_clip is not None:
        bound = -adv * config.dual_clip
        dual_active = (adv < 0) & (per_token > bound)
        per_token = torch.where(adv < 0, torch.minimum(per_token, bound), per_token)
    if is_weights is not None:
        if is_weights.shape != logprobs.shape:
            raise ValueError(f"is_weights has shape {tuple(is_weights.shape)}, expected {tuple(logprobs.shape)}")
        per_token = per_token * _masked(is_weights.float(), mask).detach()

    def agg(values: Tensor) -> Tensor:
        return aggregate(values, mask, config.loss_agg, normaliser=normaliser, norm_length=config.norm_length)

    pg_loss = agg(per_token)
    loss = pg_loss
    metrics: dict[str, float] = {
        "pg_loss": float(pg_loss.detach()),
        "pg_clipfrac": _local_mean((clipped > unclipped).float(), mask),
        "pg_clipfrac_lower": _local_mean(dual_active.float(), mask),
        "ppo_kl": _local_mean(-log_ratio, mask),
        "ratio_mean": _local_mean(ratio, mask),
        "n_tokens": float(mask.to(torch.float32).sum()),
    }
    if entropy is not None:
        if entropy.shape != logprobs.shape:
            raise ValueError(f"entropy has shape {tuple(entropy.shape)}, expected {tuple(logprobs.shape)}")
        entropy_agg = agg(entropy.float())
        loss = loss - config.entropy_coef * entropy_agg
        metrics["entropy"] = float(entropy_agg.detach())
        metrics["entropy_mean"] = _local_mean(entropy, mask)
    if ref_logprobs is not None:
        if ref_logprobs.shape != logprobs.shape:
            raise ValueError(
                f"ref_logprobs has shape {tuple(ref_logprobs.shape)}, expected {tuple(logprobs.shape)}"
            )
        kl = k3_kl(logp, _masked(ref_logprobs.float(), mask).detach())
        kl_agg = agg(kl)
        loss = loss + config.kl_coef * kl_agg
        metrics["kl"] = float(kl_agg.detach())
        metrics["kl_mean"] = _local_mean(kl, mask)
    metrics["loss"] = float(loss.detach())
    return loss, metrics
