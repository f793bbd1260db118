"""Which generation engine a training run plays its rollouts on (`rollout.backend`, `train.max_staleness`)."""

from __future__ import annotations

from typing import Any

from gift.config import Config
from gift.errors import ConfigError


def make_backend(cfg: Config, model: Any, tokenizer: Any, path: str) -> Any:
    """The rollout engine. A vLLM engine loads `path` and is then given the policy's weights (`sync_weights`)."""
    from gift.rollout import HFBackend, VLLMBackend
    from gift.rollout.transcript import stop_token_ids

    if cfg.rollout.backend == "vllm-server":
        return server_backend(cfg, model, tokenizer, path)
    if cfg.rollout.backend == "vllm":
        return VLLMBackend(
            path,
            stop_ids=stop_token_ids(tokenizer, ()),
            gpu_memory_utilization=cfg.rollout.vllm_gpu_memory_utilization,
            # The trainer's dtype, so that sampling log-probs and the update's agree.
            dtype=str(next(model.parameters()).dtype).removeprefix("torch."),
            max_model_len=cfg.rollout.max_context,
        )
    return HFBackend(
        model,
        tokenizer,
        max_batch=cfg.rollout.max_batch,
        kv_reuse=cfg.rollout.kv_reuse,
        kv_cache_mb=cfg.rollout.kv_cache_mb,
    )


def rollout_backend(cfg: Config, policy: Any, tokenizer: Any, path: str, sharded: bool) -> Any:
    """The engine the rollouts play on. One step off (train.max_staleness 1) it must hold its own weights while
    the update changes the policy's: a vLLM engine does; for hf it runs a frozen copy of the policy."""
    if not cfg.train.max_staleness:
        return make_backend(cfg, policy, tokenizer, path)
    if sharded:
        raise ConfigError(
            "train.max_staleness=1 is not supported under FSDP or DeepSpeed ZeRO-3 (their whole generation "
            "copy also scores the old log-probs); use DDP or ZeRO-2, or train.max_staleness=0"
        )
    if cfg.rollout.backend != "hf":
        return make_backend(cfg, policy, tokenizer, path)
    import copy

    frozen = copy.deepcopy(policy).eval().requires_grad_(False)
    return make_backend(cfg, frozen, tokenizer, path)


def server_backend(cfg: Config, model: Any, tokenizer: Any, path: str) -> Any:
    """vLLM servers by URL, or `rollout.vllm_servers` started here on free loopback ports (vLLM installed)."""
    import importlib.util

    from gift.rollout.transcript import stop_token_ids
    from gift.rollout.vllm_server import ServerProcess, VLLMServerBackend, free_port, vllm_serve_command

    stops = stop_token_ids(tokenizer, ())
    if cfg.rollout.vllm_server_urls:
        return VLLMServerBackend(urls=cfg.rollout.vllm_server_urls, stop_ids=stops)
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(
            "rollout.backend=vllm-server without rollout.vllm_server_urls starts vLLM servers here, but vLLM "
            "is not installed; install it or give the URLs of running servers"
        )
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
    processes = []
    for _ in range(cfg.rollout.vllm_servers):
        port = free_port()
        command = vllm_serve_command(
            path, port, dtype, cfg.rollout.max_context, cfg.rollout.vllm_gpu_memory_utilization
        )
        processes.append(ServerProcess(command, port, env={"VLLM_SERVER_DEV_MODE": "1"}))
    return VLLMServerBackend(processes=processes, stop_ids=stops)
