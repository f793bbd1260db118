"""The StarPO* update on a step's trajectories: advantages, group filtering, then PPO-clip mini-batches.

Kept small and top-to-bottom like CleanRL: `prepare_update` turns trajectories into per-trajectory advantages and
picks the groups to train on; `ppo_update` runs epochs × mini-batches × micro-batches of forward/backward with
gradient accumulation and one optimizer step per mini-batch.

`algo.mini_batch_size` is global (as TRL's global batch): each of N processes trains on 1/N of every mini-batch,
so a config makes the same optimizer steps on one process as on N with equal shares (`local_mini_batch`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from accelerate.utils import DistributedType

from gift.algorithms import compute_advantages, filter_groups, gather_logprobs, policy_loss
from gift.algorithms.losses import entropy_from_logits
from gift.algorithms.rollout_correction import CorrectionSettings, importance_weights, summarise
from gift.config import AlgorithmSettings
from gift.errors import ConfigError
from gift.rollout import Trajectory
from gift.shared_prefix import can_share, forward, plan_prefixes, shared_token_logprobs


@dataclass
class UpdatePlan:
    """The trajectories selected for the update and their advantages, plus filter statistics for metrics."""

    trajectories: list[Trajectory]
    advantages: list[float]
    stats: dict[str, float] = field(default_factory=dict)


def prepare_update(trajectories: Sequence[Trajectory], algo: AlgorithmSettings) -> UpdatePlan:
    """Drop opponent failures, compute group advantages, keep the top groups by reward std."""
    usable = [t for t in trajectories if not t.opponent_failed]
    stats = {"dropped_opponent_failed": float(len(trajectories) - len(usable))}
    if not usable:
        return UpdatePlan([], [], {**stats, "groups_total": 0.0, "groups_kept": 0.0})
    rewards = torch.tensor([t.total_reward for t in usable], dtype=torch.float32)
    group_ids = torch.tensor([t.group_id for t in usable], dtype=torch.long)
    advantages = compute_advantages(rewards, group_ids, estimator=algo.estimator)
    kept = filter_groups(rewards, group_ids, keep_ratio=algo.keep_ratio, drop_zero_std=algo.drop_zero_std)
    stats.update(
        groups_total=float(kept.n_groups),
        groups_kept=float(kept.n_kept),
        groups_zero_std=float(kept.n_zero_std),
    )
    mask = kept.keep_mask.tolist()
    chosen = [i for i, keep in enumerate(mask) if keep]
    return UpdatePlan([usable[i] for i in chosen], [float(advantages[i]) for i in chosen], stats)


def _pad_batch(trajs: Sequence[Trajectory], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Right-padded input ids, attention mask and the loss mask aligned with next-token targets."""
    width = max(len(t.input_ids) for t in trajs)
    ids = torch.full((len(trajs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(trajs), width), dtype=torch.long)
    mask = torch.zeros((len(trajs), width), dtype=torch.float32)
    for row, t in enumerate(trajs):
        n = len(t.input_ids)
        ids[row, :n] = torch.tensor(t.input_ids)
        attn[row, :n] = 1
        mask[row, :n] = torch.tensor(t.loss_mask, dtype=torch.float32)
    return {
        "input_ids": ids.to(device),
        "attention_mask": attn.to(device),
        "loss_mask": mask[:, 1:].to(device),
    }


def first_loss_position(loss_mask: torch.Tensor) -> int:
    """The first target position any row trains on (0 if none does), for skipping the prompt's logits."""
    trained = loss_mask.any(dim=0).nonzero()
    return int(trained[0, 0]) if trained.numel() else 0


def token_logprobs(
    model: Any,
    batch: dict[str, torch.Tensor],
    with_entropy: bool,
    share: bool = True,
    prefix_model: Any = None,
) -> tuple[torch.Tensor, Any]:
    """Log-probs of each next token (and the policy entropy there), shape [B, T-1].

    Logits are only computed from the first position any row trains on (`logits_to_keep`): the prompt before it
    is masked out of every loss, and its vocabulary-wide logits, log-softmax and entropy dominated the update's
    time and memory for long prompts. Positions before it hold 0.

    With `share`, rows that start with the same tokens (a group's prompt) run their common start once
    (`gift.shared_prefix`); every trained position gets the same value, untrained ones may hold 0 instead.
    `prefix_model` runs those prefixes: under DDP the bare module, while `model` is the wrapper that must run
    once per backward. Default: `model`.
    """
    ids = batch["input_ids"]
    if share:
        scorer = model if prefix_model is None else prefix_model
        plan = plan_prefixes(ids, batch["attention_mask"], batch["loss_mask"]) if can_share(scorer) else None
        shared = shared_token_logprobs(model, scorer, batch, plan, with_entropy) if plan else None
        if shared is not None:
            return shared
    start = first_loss_position(batch["loss_mask"])
    keep = ids.shape[1] - start
    out = forward(model, keep, input_ids=ids, attention_mask=batch["attention_mask"], use_cache=False)
    logits = out.logits[:, -keep:-1].float()
    logprobs = gather_logprobs(logits, ids[:, start + 1 :])
    entropy = entropy_from_logits(logits) if with_entropy else None
    if start:
        logprobs = torch.nn.functional.pad(logprobs, (start, 0))
        entropy = None if entropy is None else torch.nn.functional.pad(entropy, (start, 0))
    return logprobs, entropy


def local_mini_batch(algo: AlgorithmSettings, processes: int) -> int:
    """Each process's share of a mini-batch. `algo.mini_batch_size` counts trajectories per optimizer step over
    all processes, so that the number of optimizer steps does not depend on how many processes train."""
    size = algo.mini_batch_size
    if processes < 1 or size % processes:
        up = -(-size // max(processes, 1)) * max(processes, 1)
        raise ConfigError(
            f"algo.mini_batch_size={size} must be a multiple of the {processes} training processes (it counts "
            f"trajectories per optimizer step over all of them); use {up} or another multiple of {processes}"
        )
    return size // processes


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def ppo_update(
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    plan: UpdatePlan,
    algo: AlgorithmSettings,
    accelerator: Any,
    pad_id: int,
    step_seed: int,
    ref_model: Any = None,
    micro_batches_per_minibatch: Sequence[int] | None = None,
    spare: Trajectory | None = None,
    old_model: Any = None,
) -> dict[str, float]:
    """PPO epochs over the plan; returns averaged metrics. Every process must call this the same number of times.

    Each process cuts its own trajectories into mini-batches of `local_mini_batch` (its share of the global
    `algo.mini_batch_size`); one optimizer step per mini-batch, gradients averaged over the processes.

    `micro_batches_per_minibatch` (from `plan_shape`, identical on every process) fixes how many forward/backward
    passes each mini-batch makes; a process with fewer real micro-batches runs zero-weighted ones on a spare
    trajectory (`spare`, any trajectory of this process) so that distributed gradient synchronisation never
    waits for a missing backward.

    `old_model`, when given, holds the weights the rollouts were sampled with and scores the old-policy
    log-probs. Engines that shard the parameters (FSDP, ZeRO-3) need it: there every forward of `model` is a
    collective, so only the equal-count training passes may use it, and without prompt sharing (whose number
    of passes depends on each process's groups).
    """
    device = accelerator.device
    n = len(plan.trajectories)
    generator = torch.Generator().manual_seed(step_seed)
    shape = list(micro_batches_per_minibatch or [])
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    grad_norms: list[float] = []
    spares = plan.trajectories[:1] or ([spare] if spare is not None else [])
    deepspeed = getattr(accelerator, "distributed_type", None) == DistributedType.DEEPSPEED
    # The bare module, not the DDP wrapper: a wrapped forward may broadcast buffers (a collective), and
    # processes make different numbers of these passes, which would deadlock. It also runs shared prefixes.
    bare = accelerator.unwrap_model(model)
    share = algo.share_prefix
    train_share = share and old_model is None
    scorer = bare if old_model is None else old_model

    need_old = algo.ppo_epochs > 1 or len(shape) > 1
    old: list[torch.Tensor | None] = [None] * n
    if need_old and n:
        with torch.no_grad():
            for idx in _chunks(_by_group(list(range(n)), plan), algo.micro_batch_size):
                batch = _pad_batch([plan.trajectories[i] for i in idx], pad_id, device)
                lp, _ = token_logprobs(scorer, batch, with_entropy=False, share=share)
                for row, i in enumerate(idx):
                    old[i] = lp[row, : len(plan.trajectories[i].input_ids) - 1].detach()

    correction = correction_settings(algo)
    gaps: list[torch.Tensor] = []  # per first-epoch micro-batch: |sampling - trainer| log-prob sum, token count
    is_stats: list[torch.Tensor] = []
    for epoch in range(algo.ppo_epochs):
        order = torch.randperm(n, generator=generator).tolist() if n else []
        minibatches = _chunks(order, local_mini_batch(algo, accelerator.num_processes))
        for mb_index, micro_count in enumerate(shape):
            members = _by_group(minibatches[mb_index], plan) if mb_index < len(minibatches) else []
            micros = _chunks(members, algo.micro_batch_size)
            tokens = sum(sum(plan.trajectories[i].loss_mask) for i in members)
            # Global normaliser: DDP averages gradients over processes, so scale by the world size.
            total = torch.tensor([float(tokens)], device=device)
            total = float(accelerator.reduce(total, reduction="sum").item())
            normaliser = max(total, 1.0) / accelerator.num_processes
            for m in range(micro_count):
                idx = micros[m] if m < len(micros) else []
                real = bool(idx)
                trajs = [plan.trajectories[i] for i in idx] if real else spares
                if not trajs:
                    raise RuntimeError("ppo_update: a padding micro-batch needs a spare trajectory")
                batch = _pad_batch(trajs, pad_id, device)
                logprobs, entropy = token_logprobs(
                    model, batch, with_entropy=True, share=train_share, prefix_model=bare
                )
                width = logprobs.shape[1]
                adv = torch.tensor([plan.advantages[i] for i in idx] if real else [0.0], device=device)
                old_lp = torch.zeros_like(logprobs)
                if need_old and real:
                    for row, i in enumerate(idx):
                        o = old[i]
                        old_lp[row, : o.shape[0]] = o.to(device)
                else:
                    old_lp = logprobs.detach()
                ref_lp = None
                if ref_model is not None and algo.kl_coef > 0:
                    with torch.no_grad():
                        ref_lp, _ = token_logprobs(ref_model, batch, with_entropy=False, share=share)
                mask = batch["loss_mask"][:, :width] * (1.0 if real else 0.0)
                is_weights = None
                if real:
                    sampled = _sampled_logprobs(trajs, old_lp)
                    is_weights, stats = importance_weights(old_lp.detach(), sampled, mask, correction)
                    if epoch == 0:
                        gaps.append(_sampling_gap(sampled, old_lp, mask))
                        is_stats.append(stats)
                loss, metrics = policy_loss(
                    logprobs,
                    old_lp,
                    adv[:, None].expand_as(logprobs),
                    mask,
                    clip_low=algo.clip_low,
                    clip_high=algo.clip_high,
                    dual_clip=algo.dual_clip,
                    loss_agg=algo.loss_agg,
                    entropy=entropy,
                    entropy_coef=algo.entropy_coef,
                    ref_logprobs=ref_lp,
                    kl_coef=algo.kl_coef,
                    normaliser=normaliser
                    if algo.loss_agg == "token-mean"
                    else _seq_normaliser(members, accelerator),
                    is_weights=is_weights,
                )
                if deepspeed:
                    # DeepSpeed steps its optimizer inside backward at an accumulation boundary: the last pass.
                    accelerator.gradient_state._set_sync_gradients(m == micro_count - 1)
                # Keep the graph connected even when every token is masked (padding micro-batches).
                accelerator.backward(loss + 0.0 * logprobs.sum())
                if real:
                    w = float(metrics.get("n_tokens", 0.0))
                    for key, value in metrics.items():
                        if isinstance(value, float) and math.isfinite(value) and key != "n_tokens":
                            sums[key] = sums.get(key, 0.0) + value * w
                            weights[key] = weights.get(key, 0.0) + w
            # Under DeepSpeed this is the norm its engine clipped at (None when it has none to report).
            norm = accelerator.clip_grad_norm_(model.parameters(), algo.grad_clip)
            grad_norms.append(math.nan if norm is None else float(norm))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    if deepspeed:
        accelerator.gradient_state._set_sync_gradients(True)
    out = {k: sums[k] / weights[k] for k in sums if weights.get(k)}
    if grad_norms:
        out["grad_norm"] = sum(grad_norms) / len(grad_norms)
        out["grad_norm_max"] = max(grad_norms)
    out["optimizer_steps"] = float(len(grad_norms))
    if gaps:
        gap_sum, gap_tokens = torch.stack(gaps).sum(dim=0).tolist()  # one device sync for the whole update
        if gap_tokens:
            out["logprob_gap"] = gap_sum / gap_tokens
    out.update(summarise(is_stats))
    return out


def correction_settings(algo: AlgorithmSettings) -> CorrectionSettings:
    """The importance correction the update applies; "auto" is resolved by the trainer
    (`gift.config.correction_mode`), so a direct call with it applies none."""
    mode = "off" if algo.is_correction == "auto" else algo.is_correction
    return CorrectionSettings(mode=mode, cap=algo.is_cap, floor=algo.is_floor, band=tuple(algo.is_band))


def _sampled_logprobs(trajs: Sequence[Trajectory], old_lp: torch.Tensor) -> torch.Tensor:
    """The sampling log-probs aligned with the next-token targets of `old_lp` (0 where nothing was sampled)."""
    width = old_lp.shape[1]
    sampled = torch.zeros(old_lp.shape, dtype=old_lp.dtype)  # built on the host, moved once
    for row, t in enumerate(trajs):
        values = t.sampled_logprobs[1 : width + 1]
        sampled[row, : len(values)] = torch.tensor(values, dtype=old_lp.dtype)
    return sampled.to(old_lp.device)


def _sampling_gap(sampled: torch.Tensor, old_lp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[sum, count] of |log-prob at sampling − log-prob the update uses for the same weights| on trained tokens.

    Zero up to numerics when the rollouts were sampled from the trained weights at temperature 1; it grows with
    a generation engine that differs from the trainer (vLLM kernels, bf16) or stale engine weights — the
    training/inference mismatch that silently biases the PPO ratio. Logged as train/logprob_gap.
    """
    trained = (mask > 0).to(old_lp.dtype)
    diff = (sampled - old_lp.detach()).abs() * trained
    return torch.stack([diff.sum(), trained.sum()])


def _by_group(members: list[int], plan: UpdatePlan) -> list[int]:
    """Members reordered so that a group's trajectories (one prompt) share micro-batches.

    Exact: a mini-batch's summed gradient does not depend on how it is cut into micro-batches (the loss
    normaliser is the mini-batch's), while the mini-batch itself stays a random draw.
    """
    return sorted(members, key=lambda i: plan.trajectories[i].group_id)


def _seq_normaliser(members: list[int], accelerator: Any) -> float:
    """Sequence-mean modes: the number of sequences in the mini-batch across processes, per process share."""
    total = torch.tensor([float(len(members))], device=accelerator.device)
    total = float(accelerator.reduce(total, reduction="sum").item())
    return max(total, 1.0) / accelerator.num_processes


def plan_shape(n_trajectories: int, algo: AlgorithmSettings, accelerator: Any) -> list[int]:
    """Micro-batches per mini-batch, the maximum over processes, so every process runs the same passes.

    Its length is the number of optimizer steps per epoch: ceil(trajectories / mini_batch_size) when the
    processes hold equal shares, whatever their number; an unequal share sets it by the largest one.
    """
    share = local_mini_batch(algo, accelerator.num_processes)
    local = [
        len(_chunks(list(range(len(mb))), algo.micro_batch_size))
        for mb in _chunks(list(range(n_trajectories)), share)
    ]
    size = torch.tensor([float(len(local))], device=accelerator.device)
    n_mb = int(accelerator.reduce(size, reduction="max").item())
    padded = torch.zeros(max(n_mb, 1), device=accelerator.device)
    for i, count in enumerate(local):
        padded[i] = count
    padded = accelerator.reduce(padded, reduction="max")
    return [int(x) for x in padded.tolist()[:n_mb]]
