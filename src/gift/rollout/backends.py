"""Generation backends behind one token-in/token-out interface.

    samples = backend.generate(prompts, max_new_tokens, temperature=1.0, top_p=1.0, seed=None)

`prompts` are token ids (never text), and each `Sample` carries the sampled ids, the log-probability of each
under the sampling distribution, and whether generation stopped at a stop token (rather than the length cap).
`HFBackend` runs `model.generate` in-process (CPU or one GPU); `VLLMBackend` (`gift.rollout.vllm_backend`) drives
a vLLM engine. Torch is imported lazily so that the game layer can use the interface.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from gift.errors import ConfigError, check_range
from gift.rollout.kv_reuse import PrefixStore, cache_name, generate_reusing, left_pad, supports_reuse
from gift.rollout.transcript import stop_token_ids


@dataclass
class Sample:
    token_ids: list[int]
    """Exactly the sampled ids: no prompt, no padding, nothing after the first stop token (which is kept)."""
    logprobs: list[float]
    """log p(token) under the sampling distribution softmax(logits / temperature), one per token."""
    finished: bool
    """True when generation stopped at a stop token; False when it hit `max_new_tokens`."""


class GenerationBackend:
    """Base class: generate continuations of token-id prompts; `sync_weights` keeps the engine on policy.

    A backend with `per_request_seeds` also takes `seeds` (one per prompt): each prompt's sample then depends
    on its own seed only, not on which other prompts share the call — what lets the episode driver batch
    whatever is ready and still replay a seeded run exactly.
    """

    per_request_seeds = False

    def generate(
        self,
        prompts: list[list[int]],
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> list[Sample]:
        raise NotImplementedError

    def sync_weights(self, model: Any) -> None:
        """Make generation use `model`'s current weights (a model or a state dict)."""

    def reset_cache(self) -> None:
        """Forget any state kept between calls (cached prefixes); the engine calls it around each rollout."""


def check_sampling(max_new_tokens: int, temperature: float, top_p: float) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens={max_new_tokens!r} must be an integer >= 1")
    check_range("temperature", temperature, 0.0)
    check_range("top_p", top_p, 1e-6, 1.0)


def _named_tensors(source: Any) -> Iterable[tuple[str, Any]]:
    """(name, tensor) pairs from a model or a state dict."""
    if isinstance(source, Mapping):
        return source.items()
    if hasattr(source, "state_dict"):
        return source.state_dict().items()
    raise ConfigError(f"sync_weights: expected a model or a state dict, got {type(source).__name__}")


PEFT_PREFIX = "base_model.model."


def merged_hf_weights(source: Any) -> list[tuple[str, Any]]:
    """Plain Hugging Face (name, tensor) pairs; a PEFT LoRA model's adapters are merged in, out of place.

    A generation engine that loads Hugging Face checkpoints (vLLM) knows neither the `base_layer` names nor
    the adapter matrices. Merging with peft's `merge_adapter`/`unmerge_adapter` would round the trained base
    weights twice per step in bf16; here each LoRA layer's weight is `W + get_delta_weight()` in a new tensor
    and the model is left untouched.
    """
    import torch

    if isinstance(source, Mapping) or not hasattr(source, "peft_config"):
        return [(name, tensor.detach()) for name, tensor in _named_tensors(source)]
    deltas = {}
    adapter = getattr(source, "active_adapter", "default")
    with torch.no_grad():
        for name, module in source.named_modules():
            get_delta = getattr(module, "get_delta_weight", None)
            if (
                get_delta is not None
                and hasattr(module, "base_layer")
                and adapter in getattr(module, "lora_A", {})
            ):
                deltas[f"{name}.base_layer.weight"] = get_delta(adapter)
    weights = []
    for name, tensor in source.state_dict().items():
        if ".lora_" in name:
            continue
        value = tensor.detach()
        if name in deltas:
            value = value + deltas[name].to(value.dtype)
        clean = name.removeprefix(PEFT_PREFIX).replace(".base_layer.", ".")
        weights.append((clean, value))
    return weights


class SampledLogprobs:
    """A logits processor that records log p(sampled token) under softmax(logits / scale) step by step.

    `generate` calls it once per step with the sequence so far and that step's logits. It keeps only the previous
    step's log-softmax ([batch, vocab]); on each call it first reads from it the log-prob of the token that was
    just appended (`input_ids[:, -1]`), then stores the current step's. `finish(sequences)` reads the last step's
    token after `generate` returns. Custom processors run before the sampling warpers (temperature, top-p), so
    the scores seen here are the model's raw logits: the backend sets the length and penalty options to neutral
    values, and only a token-masking entry in the model's own generation_config (suppress_tokens, bad_words_ids,
    forced tokens; chat models ship none) would act earlier, on tokens that cannot be sampled anyway.
    """

    def __init__(self, scale: float) -> None:
        self.scale = float(scale)
        self._previous: Any = None
        self._steps: list[Any] = []

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if self._previous is not None:
            self._steps.append(self._previous.gather(1, input_ids[:, -1:]).squeeze(1))
        self._previous = torch.log_softmax(scores.float() / self.scale, dim=-1)
        return scores

    def finish(self, sequences: Any) -> Any:
        """[batch, steps] log-probs of the sampled tokens, the last step's included (empty if never called)."""
        import torch

        if self._previous is not None:
            self._steps.append(self._previous.gather(1, sequences[:, -1:]).squeeze(1))
            self._previous = None
        if not self._steps:
            return torch.zeros((sequences.shape[0], 0))
        return torch.stack(self._steps, dim=1)


class RowSampler:
    """Sampling with one random generator per row, as a logits processor over greedy decoding (Gumbel-max).

    argmax(logits / T + Gumbel noise) is a draw from softmax(logits / T); restricted to the top-p nucleus it is
    a draw from the renormalised nucleus, as transformers' own top-p sampling gives. Each row's noise comes from
    its own seeded generator, so a row's tokens do not depend on the other rows of the batch.
    """

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float, device: Any) -> None:
        import torch

        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.generators = [torch.Generator(device=device).manual_seed(int(s) % 2**63) for s in seeds]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        logits = scores.float() / self.temperature
        if self.top_p < 1.0:
            ordered, index = torch.sort(logits, descending=True, dim=-1)
            mass = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
            drop = (mass - torch.softmax(ordered, dim=-1)) >= self.top_p  # keep the token that crosses top_p
            logits = logits.scatter(-1, index, ordered.masked_fill(drop, float("-inf")))
        width = logits.shape[-1]
        uniform = torch.stack(
            [torch.rand(width, generator=g, device=logits.device) for g in self.generators]
        ).clamp_(1e-20, 1.0 - 1e-7)
        return logits - torch.log(-torch.log(uniform))


class HFBackend(GenerationBackend):
    """Hugging Face `model.generate` with KV cache, left padding and sampling log-probs.

    Prompts are generated in chunks of at most `max_batch` (sorted by length to limit padding) to bound memory.
    The log-probs are taken during generation (`SampledLogprobs`), so the extra memory is one chunk × vocab
    array rather than every step's logits (chunk × max_new_tokens × vocab). Temperature 0 means greedy decoding,
    and its log-probs are then taken at temperature 1. The log-probs ignore top-p truncation:
    they are the policy's probabilities at the sampling temperature, which is what importance ratios need.
    Seeded calls are reproducible (the global torch RNG is forked, so callers' random state is untouched);
    with `seeds`, every prompt samples from its own generator (`RowSampler`).

    With `kv_reuse` (default) a prompt that extends an earlier prompt plus its reply (the next turn of a game)
    is prefilled only from where that left off, and a batch's identical prompts are prefilled once
    (`gift.rollout.kv_reuse`); at most `kv_cache_mb` MiB of keys and values are kept between calls. The cache
    is dropped whenever the model's parameters change (an optimizer step, a weight sync) and by `reset_cache`.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_batch: int = 16,
        stop_ids: Sequence[int] = (),
        kv_reuse: bool = True,
        kv_cache_mb: int = 2048,
    ) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError(f"max_batch={max_batch!r} must be an integer >= 1")
        check_range("kv_cache_mb", kv_cache_mb, 0)
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.stop_ids = stop_token_ids(tokenizer, stop_ids)
        if not self.stop_ids:
            raise ConfigError("HFBackend: the tokenizer has no eos_token_id and no stop_ids were given")
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = int(pad) if pad is not None else self.stop_ids[0]
        reuse = kv_reuse and kv_cache_mb > 0 and supports_reuse(model)
        self.store = PrefixStore(set(self.stop_ids), int(kv_cache_mb * 2**20)) if reuse else None
        self._weights_version: int | None = None

    def reset_cache(self) -> None:
        """Forget every cached prefix (call after changing the weights by means that bypass autograd counters)."""
        if self.store is not None:
            self.store.clear()

    def _check_weights_version(self) -> None:
        """Clear the prefix cache if any parameter was modified in place since it was filled."""
        if self.store is None:
            return
        version = sum(p._version for p in self.model.parameters())
        if version != self._weights_version:
            self.store.clear()
            self._weights_version = version

    def sync_weights(self, model: Any) -> None:
        """No-op when generating with the trained model itself; otherwise copy its weights in (a frozen copy)."""
        if model is self.model:
            return
        import torch

        state = dict(_named_tensors(model))
        with torch.no_grad():
            self.model.load_state_dict(state, strict=True)
        self.reset_cache()

    per_request_seeds = True

    def generate(
        self,
        prompts: list[list[int]],
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Sample]:
        check_sampling(max_new_tokens, temperature, top_p)
        if not prompts:
            return []
        if seeds is not None and len(seeds) != len(prompts):
            raise ValueError(f"HFBackend.generate: {len(seeds)} seeds for {len(prompts)} prompts")
        if any(len(p) == 0 for p in prompts):
            raise ValueError("HFBackend.generate: every prompt needs at least one token")
        import torch

        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        results: list[Sample | None] = [None] * len(prompts)
        was_training = self.model.training
        self.model.eval()
        device = next(self.model.parameters()).device
        # A seeded call must not disturb the caller's RNG; an unseeded one must advance it (or repeat itself).
        rng_scope = (
            nullcontext()
            if seed is None
            else torch.random.fork_rng(
                devices=[device.index or 0] if device.type == "cuda" else [],
                device_type="cuda" if device.type == "cuda" else None,
            )
        )
        self._check_weights_version()
        try:
            with rng_scope:
                for chunk_index, start in enumerate(range(0, len(order), self.max_batch)):
                    if seed is not None:
                        torch.manual_seed(int(seed) + chunk_index)
                    rows = order[start : start + self.max_batch]
                    chunk = [prompts[i] for i in rows]
                    row_seeds = None if seeds is None else [seeds[i] for i in rows]
                    chunk_samples = self._generate_chunk(chunk, max_new_tokens, temperature, top_p, row_seeds)
                    for row, sample in zip(rows, chunk_samples, strict=True):
                        results[row] = sample
        finally:
            self.model.train(was_training)
        return [s for s in results if s is not None]

    def _generate_chunk(
        self,
        prompts: list[list[int]],
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        seeds: Sequence[int] | None = None,
    ) -> list[Sample]:
        from transformers import GenerationConfig, LogitsProcessorList

        greedy = temperature == 0
        processors: list[Any] = []
        if seeds is not None and not greedy:
            processors.append(RowSampler(seeds, temperature, top_p, next(self.model.parameters()).device))
        # Every sampling knob is set explicitly: `generate` fills unset ones from the model's own
        # generation_config (e.g. an instruct model's temperature 0.7, top_k 20, repetition penalty 1.05).
        options: dict[str, Any] = {"do_sample": False}
        if not greedy and not processors:
            options = {
                "do_sample": True,
                "temperature": float(temperature),
                "top_p": float(top_p),
                "top_k": 0,
                "min_p": 0.0,
                "typical_p": 1.0,
            }
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            eos_token_id=list(self.stop_ids),
            pad_token_id=self.pad_id,
            repetition_penalty=1.0,
            no_repeat_ngram_size=0,
            min_new_tokens=0,
            return_dict_in_generate=True,
            use_cache=True,
            **options,
        )
        recorder = SampledLogprobs(1.0 if greedy else float(temperature))

        def run_generate(input_ids: Any, attention: Any, cache: Any = None) -> Any:
            extra = {} if cache is None else {cache_name(): cache}
            return self.model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                generation_config=config,
                logits_processor=LogitsProcessorList([recorder, *processors]),
                **extra,
            )

        if self.store is not None and min(len(p) for p in prompts) >= 2:
            out, width = generate_reusing(self.model, self.store, prompts, self.pad_id, run_generate)
        else:
            device = next(self.model.parameters()).device
            input_ids, attention = left_pad(prompts, self.pad_id)
            width = input_ids.shape[1]
            out = run_generate(input_ids.to(device), attention.to(device))
        generated = out.sequences[:, width:]
        # Rows already stopped gather at pad ids; those positions are dropped below.
        all_logprobs = recorder.finish(out.sequences)[:, : generated.shape[1]].tolist()
        stops = set(self.stop_ids)
        samples = []
        for tokens, logprobs in zip(generated.tolist(), all_logprobs, strict=True):
            end = next((k + 1 for k, t in enumerate(tokens) if t in stops), len(tokens))
            samples.append(
                Sample(token_ids=tokens[:end], logprobs=logprobs[:end], finished=tokens[end - 1] in stops)
            )
        return samples
