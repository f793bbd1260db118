"""Cross-turn KV reuse for `HFBackend`: a multi-turn game's next prompt extends its last one, so keep the keys and
values of every row's prompt-plus-reply and prefill only what the environment added.

Without it each turn re-reads a trajectory's whole history (quadratic in the number of turns), and a left-padded
batch of long histories makes the attention mask and the prefill dominate a rollout. With it a turn's generate call
holds every row's cached history (left-padded to a common width), prefills all rows' new tokens in one batched
forward (left-padded inside their own segment; padding holes are masked and positions come from the mask), then
decodes as usual. Identical prompts (the G rollouts of a group on turn one) are prefilled once.

Correctness does not depend on the cache being hit: an entry is only used when its token ids are an exact prefix
of the new prompt; everything else is prefilled from scratch. Only models whose cache is a plain full-attention
`DynamicCache` take this path (sliding-window and other caches fall back to a full prefill every turn).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@functools.cache
def cache_name() -> str:
    """What transformers calls the KV cache in model arguments and outputs: `cache` from 5.24, before that
    `past_key_values` (the old name is still accepted, with a warning, until 5.40)."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    return "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"


@dataclass
class CachedPrefix:
    """Keys and values ([1, kv_heads, n, head_dim] per layer) of the token ids `ids` (n of them)."""

    ids: list[int]
    layers: list[tuple[Any, Any]]


def supports_reuse(model: Any) -> bool:
    """True when the model's generation cache is a list of plain full-attention layers we can slice and stack."""
    try:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer
    except ImportError:  # pragma: no cover - older transformers
        return False
    config = getattr(model, "config", None)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return False
    try:
        cache = DynamicCache(config=config)
    except Exception:  # noqa: BLE001 - any model-specific cache oddity means: do not reuse
        return False
    return bool(cache.layers) and all(type(layer) is DynamicLayer for layer in cache.layers)


class PrefixStore:
    """The cached prefixes of recent rows, looked up by exact token-id prefix, within a memory budget.

    An entry used as the base of a new prompt is dropped after the call that used it (the row's new entry
    supersedes it); beyond `max_bytes` the least recently used entries are evicted (their rows are then
    prefilled in full on their next turn: slower, never wrong). One entry per live row costs what one KV cache
    of the batch costs: tokens x layers x 2 x kv_heads x head_dim values.
    """

    def __init__(self, stop_ids: set[int], max_bytes: int) -> None:
        self.stop_ids = set(stop_ids)
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[int, tuple[CachedPrefix, int]] = OrderedDict()
        self._next_key = 0
        self.bytes = 0
        self.hits = 0
        self.cached_tokens = 0
        self.prefilled_tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def lookup(self, prompt: list[int]) -> tuple[int | None, CachedPrefix | None]:
        """The longest entry whose ids are a proper prefix of `prompt` (the last prompt token is always fed)."""
        best_key, best = None, None
        limit = len(prompt) - 1
        for key, (entry, _) in self._entries.items():
            n = len(entry.ids)
            if not n or n > limit or (best is not None and n <= len(best.ids)):
                continue
            # Cheap checks first: most entries belong to other games and differ early or at their end.
            if entry.ids[0] == prompt[0] and entry.ids[-1] == prompt[n - 1] and prompt[:n] == entry.ids:
                best_key, best = key, entry
        if best_key is not None:
            self._entries.move_to_end(best_key)
        return best_key, best

    def add(self, entry: CachedPrefix) -> None:
        size = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in entry.layers)
        self._entries[self._next_key] = (entry, size)
        self._next_key += 1
        self.bytes += size
        while self.bytes > self.max_bytes and self._entries:
            _, (_, evicted) = self._entries.popitem(last=False)
            self.bytes -= evicted

    def drop(self, keys: set[int]) -> None:
        for key in keys:
            item = self._entries.pop(key, None)
            if item is not None:
                self.bytes -= item[1]


def left_padded_batch(bases: list[CachedPrefix], device: Any) -> tuple[Any, int]:
    """Stack row caches into one `DynamicCache`, each row right-aligned (zeros on the left); returns it and its width."""
    import torch
    from transformers import DynamicCache

    width = max(len(b.ids) for b in bases)
    layers = []
    for layer in range(len(bases[0].layers)):
        k0, v0 = bases[0].layers[layer]
        shape_k = (len(bases), k0.shape[1], width, k0.shape[3])
        shape_v = (len(bases), v0.shape[1], width, v0.shape[3])
        keys = torch.zeros(shape_k, dtype=k0.dtype, device=device)
        values = torch.zeros(shape_v, dtype=v0.dtype, device=device)
        for row, base in enumerate(bases):
            n = len(base.ids)
            if n:
                k, v = base.layers[layer]
                keys[row, :, width - n :] = k[0]
                values[row, :, width - n :] = v[0]
        layers.append((keys, values))
    return DynamicCache(ddp_cache_data=layers), width


def cache_layers(cache: Any) -> list[tuple[Any, Any]]:
    """(keys, values) of every layer of a `DynamicCache`."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def slice_rows(layers: list[tuple[Any, Any]], row: int, positions: Any) -> list[tuple[Any, Any]]:
    """One row's keys and values at `positions` (a 1-D index tensor), copied so the batch tensors can be freed."""
    return [
        (
            k[row : row + 1].index_select(2, positions).clone(),
            v[row : row + 1].index_select(2, positions).clone(),
        )
        for k, v in layers
    ]


def empty_prefix(model: Any) -> CachedPrefix:
    """A zero-length entry with the right per-layer shapes, for rows that have no cached history yet."""
    import torch

    config = model.config.get_text_config(decoder=True)
    heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    param = next(model.parameters())
    empty = torch.zeros((1, heads, 0, head_dim), dtype=param.dtype, device=param.device)
    return CachedPrefix([], [(empty, empty) for _ in range(config.num_hidden_layers)])


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    """[len(rows), longest] token ids padded on the left with `pad_id`, and the matching attention mask."""
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, tokens in enumerate(rows):
        if tokens:
            ids[row, width - len(tokens) :] = torch.tensor(tokens, dtype=torch.long)
            mask[row, width - len(tokens) :] = 1
    return ids, mask


def _prefill_entries(model: Any, prompts: list[list[int]], pad_id: int) -> list[CachedPrefix]:
    """Batched prefill of `prompt[:-1]` for each (distinct) prompt; one entry each. Prompts need >= 2 tokens."""
    import torch

    device = next(model.parameters()).device
    bodies = [p[:-1] for p in prompts]
    ids, mask = left_pad(bodies, pad_id)
    width = ids.shape[1]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        out = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
            use_cache=True,
            logits_to_keep=1,
        )
    layers = cache_layers(getattr(out, cache_name()))
    entries = []
    for row, body in enumerate(bodies):
        keep = torch.arange(width - len(body), width, device=device)
        entries.append(CachedPrefix(list(body), slice_rows(layers, row, keep)))
    return entries


def generate_reusing(
    model: Any, store: PrefixStore, prompts: list[list[int]], pad_id: int, run_generate: Any
) -> tuple[Any, int]:
    """One generate call over `prompts` that prefills only what the store does not hold; refills the store.

    `run_generate(input_ids, attention_mask, cache)` calls `model.generate` (sampling settings are the caller's)
    and returns its output with `sequences` and the cache (`cache_name()`). Returns that output and the input width, so that
    `sequences[:, width:]` are the generated tokens, exactly as for a plain left-padded call.
    """
    import torch

    device = next(model.parameters()).device
    found = [store.lookup(p) for p in prompts]
    used = {key for key, _ in found if key is not None}
    missing = {tuple(p) for p, (_, base) in zip(prompts, found, strict=True) if base is None}
    if missing:
        fresh = dict(zip(missing, _prefill_entries(model, [list(p) for p in missing], pad_id), strict=True))
        found = [
            (key, base if base is not None else fresh[tuple(p)])
            for p, (key, base) in zip(prompts, found, strict=True)
        ]
    bases = [base for _, base in found]
    deltas = [p[len(b.ids) :] for p, b in zip(prompts, bases, strict=True)]
    store.hits += sum(1 for key, _ in found if key is not None)
    store.cached_tokens += sum(len(b.ids) for key, b in found if key is not None)
    store.prefilled_tokens += sum(len(d) for d in deltas) + sum(len(k) - 1 for k in missing)

    cache, cached_width = left_padded_batch(bases, device)
    delta_width = max(len(d) for d in deltas)
    width = cached_width + delta_width
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, (base, delta) in enumerate(zip(bases, deltas, strict=True)):
        n = len(base.ids)
        if n:
            ids[row, cached_width - n : cached_width] = torch.tensor(base.ids, dtype=torch.long)
            mask[row, cached_width - n : cached_width] = 1
        ids[row, width - len(delta) :] = torch.tensor(delta, dtype=torch.long)
        mask[row, width - len(delta) :] = 1
    out = run_generate(ids.to(device), mask.to(device), cache)
    del cache

    store.drop(used)
    layers = cache_layers(getattr(out, cache_name()))
    generated = out.sequences[:, width:].tolist()
    for row, (prompt, base, delta) in enumerate(zip(prompts, bases, deltas, strict=True)):
        n, d = len(base.ids), len(delta)
        fed = _fed_reply(generated[row], store.stop_ids)
        positions = torch.cat(
            [
                torch.arange(cached_width - n, cached_width),
                torch.arange(width - d, width + len(fed)),
            ]
        ).to(device)
        store.add(CachedPrefix(list(prompt) + fed, slice_rows(layers, row, positions)))
    setattr(out, cache_name(), None)
    return out, width


def _fed_reply(tokens: list[int], stop_ids: set[int]) -> list[int]:
    """The reply tokens whose keys and values are in the cache: all sampled ones up to its stop, but the last."""
    end = next((k + 1 for k, t in enumerate(tokens) if t in stop_ids), len(tokens))
    return tokens[: end - 1]
