"""Which weights a `--model` value names, and loading them behind a generation backend.

A value is "embedded", a model folder, a hub id, a training checkpoint (`run/checkpoints/step-XXXXXX`), or a run
folder (its `checkpoints/latest` is used). A checkpoint that holds a LoRA adapter (`adapter_config.json`) is
loaded as its base model plus the adapter, merged, so generation runs a plain model (vLLM needs one anyway).

`resolve_source` only looks at files, so every bad value fails before any weights load; `load_model` imports
torch and transformers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gift.errors import ConfigError, check_choice
from gift.models import EMBEDDED, embedded_gguf_path, resolve_model

BACKENDS = ("hf", "vllm")
ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class ModelSource:
    """Where one evaluated model comes from: base weights, an optional adapter, and the tokenizer folder."""

    label: str
    """The value as the user gave it: the table's row name."""
    weights: str
    """A model folder or hub id (the base model when `adapter` is set)."""
    adapter: str | None = None
    tokenizer: str | None = None
    """Folder or hub id of the tokenizer (a checkpoint saves its own); defaults to `weights`."""

    @property
    def tokenizer_path(self) -> str:
        return self.tokenizer or self.weights


def _latest_in_run(folder: Path) -> Path | None:
    """A run folder's (or its checkpoints folder's) latest checkpoint, when `latest` points at one."""
    for root in (folder / "checkpoints", folder):
        pointer = root / "latest"
        if pointer.is_file():
            target = root / pointer.read_text().strip()
            if target.is_dir():
                return target
    return None


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json"))


def resolve_source(name: str) -> ModelSource:
    """A `ModelSource` for a `--model` value, checked on disk without loading anything."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(
            f"--model {name!r}: give 'embedded', a model folder, a checkpoint folder or a hub id"
        )
    if name == EMBEDDED:
        embedded_gguf_path()  # the package that ships the weights must be installed (no conversion yet)
        return ModelSource(label=name, weights=EMBEDDED)
    folder = Path(name).expanduser()
    if folder.is_dir() and not (folder / "config.json").is_file() and not (folder / ADAPTER_CONFIG).is_file():
        latest = _latest_in_run(folder)
        if latest is None:
            raise ConfigError(
                f"--model {name!r}: the folder holds no config.json, no {ADAPTER_CONFIG} and no "
                "checkpoints/latest; point at a model folder, a checkpoint (run/checkpoints/step-XXXXXX) or a run"
            )
        folder = latest
    if folder.is_dir() and (folder / ADAPTER_CONFIG).is_file():
        try:
            adapter_cfg = json.loads((folder / ADAPTER_CONFIG).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(
                f"--model {name!r}: {folder / ADAPTER_CONFIG} is not readable JSON ({err})"
            ) from None
        base = adapter_cfg.get("base_model_name_or_path") if isinstance(adapter_cfg, dict) else None
        if not isinstance(base, str) or not base.strip():
            raise ConfigError(
                f"--model {name!r}: {ADAPTER_CONFIG} names no base_model_name_or_path; cannot load the adapter"
            )
        weights = base if base == EMBEDDED else resolve_model(base)
        tokenizer = str(folder) if _has_tokenizer(folder) else None
        return ModelSource(label=name, weights=weights, adapter=str(folder), tokenizer=tokenizer)
    return ModelSource(
        label=name, weights=resolve_model(str(folder)) if folder.exists() else resolve_model(name)
    )


@dataclass
class LoadedModel:
    """A model ready to generate: backend, tokenizer and the chat codec that builds prompt ids."""

    label: str
    backend: Any
    tokenizer: Any
    codec: Any
    model: Any = None
    """The in-process HF model (None for vLLM); kept so it can be released."""
    source: ModelSource | None = None


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_")[:80] or "model"


def load_model(
    source: ModelSource, backend: str = "hf", max_batch: int = 16, merged_dir: str | Path | None = None
) -> LoadedModel:
    """Load `source` (merging a LoRA adapter) behind an `HFBackend` or a `VLLMBackend`.

    With vLLM and an adapter, the merged model is saved under `merged_dir` and the engine loads that folder.
    """
    check_choice("--backend", backend, BACKENDS)
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as err:
        raise ConfigError(
            f"evaluating a model needs the train extra (pip install 'gift-rl[train]'): {err}"
        ) from None
    from gift.rollout.backends import HFBackend
    from gift.rollout.transcript import ChatCodec, stop_token_ids
    from gift.rollout.vllm_backend import VLLMBackend

    weights = resolve_model(source.weights) if source.weights == EMBEDDED else source.weights
    tokenizer_path = resolve_model(EMBEDDED) if source.tokenizer_path == EMBEDDED else source.tokenizer_path
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
    except (OSError, ValueError) as err:
        raise ConfigError(f"--model {source.label!r}: tokenizer not loadable: {_first_line(err)}") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    codec = ChatCodec(tokenizer)

    if backend == "vllm" and source.adapter is None:
        engine = VLLMBackend(weights, stop_ids=stop_token_ids(tokenizer))
        return LoadedModel(source.label, engine, tokenizer, codec, None, source)
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    try:
        model = AutoModelForCausalLM.from_pretrained(weights, dtype=dtype)
    except (OSError, ValueError) as err:
        raise ConfigError(f"--model {source.label!r}: weights not loadable: {_first_line(err)}") from None
    if source.adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, source.adapter).merge_and_unload()
    model.eval()
    model.requires_grad_(False)
    if backend == "vllm":
        target = Path(merged_dir or "merged") / _slug(source.label)
        target.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(target)
        tokenizer.save_pretrained(target)
        del model
        engine = VLLMBackend(str(target), stop_ids=stop_token_ids(tokenizer))
        return LoadedModel(source.label, engine, tokenizer, codec, None, source)
    model.to(device)
    # Evaluation prompts are fresh single-turn chats: nothing to reuse across calls, so keep no KV between them.
    hf = HFBackend(model, tokenizer, max_batch=max_batch, kv_reuse=False)
    return LoadedModel(source.label, hf, tokenizer, codec, model, source)


def release(loaded: LoadedModel) -> None:
    """Drop the model's weights (and the GPU cache) before the next model loads."""
    loaded.backend = None
    loaded.model = None
    try:
        import gc

        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover - torch is present whenever a model was loaded
        pass


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return (lines[0] if lines else type(err).__name__)[:200]


@dataclass(frozen=True)
class RunPrompt:
    """How a training run prompted its policy; evaluating or watching it uses the same unless told otherwise."""

    config: str
    """The run's config.yaml."""
    system_prompt: str | None
    instruction: str | None
    """The run's answer instruction (None: the answer-protocol instruction)."""
    reply_prefix: str
    max_new_tokens: int
    parsers: dict[str, str]
    """Game id → the parser the run trained it with (games not named keep their default, "strict")."""

    def parser(self, game_id: str) -> str:
        return self.parsers.get(game_id, "strict")

    def describe(self) -> str:
        parsers = ", ".join(f"{g}={p}" for g, p in sorted(self.parsers.items())) or "strict"
        instruction = "the answer-protocol one" if self.instruction is None else repr(self.instruction)
        return (
            f"the run's prompt settings ({self.config}): system prompt {self.system_prompt!r}, instruction "
            f"{instruction}, reply prefix {self.reply_prefix!r}, parser {parsers}, {self.max_new_tokens} new tokens"
        )


def run_prompt(source: ModelSource) -> RunPrompt | None:
    """The prompt settings of the run a checkpoint comes from (None for a model that is not a run's)."""
    weights = Path(source.adapter or source.weights)
    run_dir = weights.parent.parent if weights.parent.name == "checkpoints" else None
    if run_dir is None or not (run_dir / "config.yaml").is_file():
        return None
    from gift.config import load_config

    cfg = load_config(run_dir / "config.yaml")
    parsers: dict[str, str] = {}
    for game_id, options in cfg.task.game_options.items():
        if isinstance(options, dict) and "parser" in options:
            parsers[game_id] = str(options["parser"])
    for entry in cfg.task.games:
        if isinstance(entry, dict) and "parser" in entry:
            parsers[str(entry.get("id"))] = str(entry["parser"])
    return RunPrompt(
        config=str(run_dir / "config.yaml"),
        system_prompt=cfg.rollout.system_prompt or None,
        instruction=cfg.rollout.instruction,
        reply_prefix=cfg.rollout.reply_prefix,
        max_new_tokens=cfg.rollout.max_new_tokens,
        parsers=parsers,
    )
