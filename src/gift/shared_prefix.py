"""Next-token log-probs of a micro-batch whose rows start with the same tokens, each shared start computed once.

The trajectories of one group begin with the same prompt, and the prompt is most of each row for single-turn
games: recomputing it for every row dominated the update. Rows are clustered by common leading tokens; each
cluster's shared prefix runs once (with gradients, keeping its key/value cache), the cache is copied to the
cluster's rows by an index select (differentiable: the rows' gradients add up in the prefix), and only the
rows' remaining tokens run on top of it. The prefix stops before the first position whose logits any of its
rows trains on, so every trained log-prob is computed exactly as in a plain forward.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from gift.algorithms import entropy_from_logits, gather_logprobs
from gift.rollout.kv_reuse import cache_name

MIN_SAVING = 0.2
"""Share only when it removes at least this fraction of the tokens a plain padded forward runs."""
EXACT_ATTENTION = ("sdpa", "eager")
"""Attention implementations that honour a padding mask over cached positions (others use the plain path)."""


@dataclass(frozen=True)
class PrefixPlan:
    """Which cluster each row belongs to, each cluster's shared length and a row to read its prefix from."""

    cluster: list[int]
    shared: list[int]
    source: list[int]


def plan_prefixes(ids: torch.Tensor, attention: torch.Tensor, loss_mask: torch.Tensor) -> PrefixPlan | None:
    """Clusters of rows and the prefixes they share, or None when sharing would not save enough.

    `loss_mask` is aligned with the logits ([B, T-1]: position t predicts token t+1). A row may share at most
    up to its first trained position. Rows are sorted by their shareable tokens, so that rows with long common
    starts sit next to each other; contiguous runs are then chosen to save the most tokens.
    """
    lengths = attention.sum(dim=1).tolist()
    n_rows, width = ids.shape
    trained = loss_mask.bool() & attention[:, 1:].bool()
    limits = [
        int(row.nonzero()[0, 0]) if row.any() else max(n - 1, 0)
        for row, n in zip(trained, lengths, strict=True)
    ]
    tokens = ids.tolist()
    order = sorted(range(n_rows), key=lambda r: tokens[r][: limits[r]])
    lcp = _adjacent_common_prefix(ids, attention, order)
    runs = _best_runs([limits[r] for r in order], lcp)
    cluster, shared, source = [0] * n_rows, [], []
    for index, (start, stop, length) in enumerate(runs):
        shared.append(length)
        source.append(order[start])
        for pos in range(start, stop):
            cluster[order[pos]] = index
    if min(shared) < 1:
        return None  # a row trained from its first token: nothing before it to share
    suffix = max(n - shared[c] for n, c in zip(lengths, cluster, strict=True))
    cost = len(shared) * max(shared) + n_rows * suffix
    if cost > (1.0 - MIN_SAVING) * n_rows * width:
        return None
    return PrefixPlan(cluster, shared, source)


def _adjacent_common_prefix(ids: torch.Tensor, attention: torch.Tensor, order: list[int]) -> list[int]:
    """Common leading tokens of each pair of neighbours in `order`."""
    if len(order) < 2:
        return []
    idx = torch.tensor(order, device=ids.device)
    a, b = idx[:-1], idx[1:]
    same = (ids[a] == ids[b]) & attention[a].bool() & attention[b].bool()
    return same.long().cumprod(dim=1).sum(dim=1).tolist()


def _best_runs(limits: list[int], lcp: list[int]) -> list[tuple[int, int, int]]:
    """Contiguous runs [start, stop) of the sorted rows with their shared length, maximising the tokens saved.

    A run of k rows sharing s tokens saves (k - 1) * s; s is the least of the run's limits and neighbour
    common prefixes. A lone row keeps its own limit (it saves nothing but keeps the suffix pass short).
    """
    n = len(limits)
    best = [0] * (n + 1)
    choice = [(0, 0)] * (n + 1)
    for stop in range(1, n + 1):
        share = limits[stop - 1]
        best[stop], choice[stop] = best[stop - 1], (stop - 1, share)
        for start in range(stop - 2, -1, -1):
            share = min(share, limits[start], lcp[start])
            if share <= 0:
                break
            saved = best[start] + (stop - start - 1) * share
            if saved > best[stop]:
                best[stop], choice[stop] = saved, (start, share)
    runs = []
    stop = n
    while stop > 0:
        start, share = choice[stop]
        runs.append((start, stop, share))
        stop = start
    return runs[::-1]


def forward(model: Any, keep: int, **inputs: Any) -> Any:
    """The model's forward with only the last `keep` positions' logits (all of them if it cannot do that)."""
    try:
        return model(**inputs, logits_to_keep=keep)
    except TypeError as err:
        if "logits_to_keep" not in str(err):
            raise
        return model(**inputs)


def can_share(model: Any) -> bool:
    """Whether the model can run a prefix once and continue from its cache with gradients."""
    if any(getattr(module, "gradient_checkpointing", False) is True for module in model.modules()):
        return False  # Hugging Face models drop the cache when checkpointing activations in training
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # under peft
    try:
        takes_cache = cache_name() in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        takes_cache = False
    config = getattr(model, "config", None)
    return takes_cache and getattr(config, "_attn_implementation", None) in EXACT_ATTENTION


def shared_token_logprobs(
    model: Any,
    prefix_model: Any,
    batch: dict[str, torch.Tensor],
    plan: PrefixPlan,
    with_entropy: bool,
) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """Log-probs [B, T-1] (and entropies) like a plain forward's at every trained position; 0 where not computed.

    `prefix_model` runs the prefixes and `model` the suffixes: under DDP pass the bare module and the wrapper,
    so that the wrapper runs once per backward. None (before the wrapper runs) when the prefix pass returns
    no cache this can extend.
    """
    ids, attention = batch["input_ids"], batch["attention_mask"]
    device = ids.device
    n_rows, width = ids.shape
    cluster = torch.tensor(plan.cluster, device=device)
    shared = torch.tensor(plan.shared, device=device)
    span = int(shared.max())
    steps = torch.arange(span, device=device)
    prefix_ids = ids[torch.tensor(plan.source, device=device), :span]
    prefix_mask = (steps[None, :] < shared[:, None]).long()
    out = forward(prefix_model, 1, input_ids=prefix_ids, attention_mask=prefix_mask, use_cache=True)
    cache = getattr(out, cache_name(), None)
    if not isinstance(cache, DynamicCache) or any(type(layer) is not DynamicLayer for layer in cache.layers):
        return None
    for layer in cache.layers:
        # Rebinding (never in-place): the prefix's tensors stay intact for the backward pass.
        layer.keys = layer.keys.index_select(0, cluster)
        layer.values = layer.values.index_select(0, cluster)

    lengths = attention.sum(dim=1)
    starts = shared[cluster]
    suffix_len = int((lengths - starts).max())
    positions = starts[:, None] + torch.arange(suffix_len, device=device)[None, :]
    suffix_mask = positions < lengths[:, None]
    suffix_ids = ids.gather(1, positions.clamp(max=width - 1))
    mask = torch.cat([prefix_mask[cluster], suffix_mask.long()], dim=1)
    # Logits from the first position any row trains on, relative to its own suffix start.
    trained = batch["loss_mask"].bool() & attention[:, 1:].bool()
    firsts = torch.where(trained.any(dim=1), trained.float().argmax(dim=1), lengths - 1) - starts
    first = int(firsts.min().clamp(min=0))
    keep = suffix_len - first
    out = forward(
        model,
        keep,
        input_ids=suffix_ids,
        attention_mask=mask,
        position_ids=positions,
        use_cache=True,
        **{cache_name(): cache},
    )
    if cache.get_seq_length() != span + suffix_len:
        raise RuntimeError(
            "shared_token_logprobs: the model ignored the prefix cache; set algo.share_prefix=false"
        )
    logits = out.logits[:, -keep:-1].float()
    logprobs = gather_logprobs(logits, suffix_ids[:, first + 1 :])
    entropy = entropy_from_logits(logits) if with_entropy else None
    columns = positions[:, first:-1]
    return _place(logprobs, columns, width), None if entropy is None else _place(entropy, columns, width)


def _place(values: torch.Tensor, columns: torch.Tensor, width: int) -> torch.Tensor:
    """Values of suffix positions put back at their columns of the [B, width-1] layout (0 elsewhere)."""
    size = int(columns.max()) + 1 if columns.numel() else 0
    room = torch.zeros(values.shape[0], size, dtype=values.dtype, device=values.device)
    room = room.scatter(1, columns, values)
    if room.shape[1] < width - 1:
        room = torch.nn.functional.pad(room, (0, width - 1 - room.shape[1]))
    return room[:, : width - 1]
