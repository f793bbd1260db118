"""GPU benchmark that needs no download: randomly initialised Qwen2.5-1.5B and -7B shapes, in bf16.

    python bench/gpu.py                      # on a CUDA machine: both shapes, writes bench/results/gpu.json
    python bench/gpu.py --cpu-smoke          # tiny shapes on a CPU in float32, seconds (what the test runs)
    python bench/gpu.py --out results.json   # another output file

The models are built from `transformers` config objects with the published shapes (hidden size, layers, heads,
vocabulary) and random weights, on the device directly; the tokenizer is the tiny test tokenizer of
`gift.models.build_tiny_model` (its ids are valid in any of these vocabularies). Measured:

- rollout tokens/s of `HFBackend` (and of `VLLMBackend` when vLLM is installed, 1.5B shape only: it loads
  a saved copy), a batch of prompts, every reply at full length;
- update tokens/s of `gift.learner.ppo_update` (one mini-batch, AdamW) and model FLOP utilisation: achieved
  6·N·tokens + attention (12·layers·hidden·seq per token, PaLM's estimate) over the device's peak bf16 rate
  (`--peak-tflops`, else known for H100/H200/A100);
- peak memory of a full 1.5B update and of a 7B + LoRA (r 16, attention projections) update;
- the step time of a nested F+I2 training step (`gift.trainer.train`, smallest shape) whose tic-tac-toe opponent
  is a loopback OpenAI-compatible endpoint answering after `--latency` s (`bench/latency_server.py`),
  on-policy and one step off (`train.max_staleness`), and their ratio. Random weights never write a legal move,
  so the games run tic-tac-toe first (the paper's order ablation shows little effect), read moves with the
  raw parser, and every reply starts with "(2, 2) " (`rollout.reply_prefix`): each episode's first move is
  legal and its opponent is asked.

Everything goes to one JSON file; a section that fails records its error instead of stopping the others.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from _common import RESULTS_DIR, machine, quiet_transformers, versions
from latency_server import LatencyServer

SHAPES = {
    "qwen2.5-1.5b": dict(
        hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
        num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True,
    ),
    "qwen2.5-7b": dict(
        hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
        num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False,
    ),
}  # fmt: skip
SMOKE_SHAPES = {
    "tiny-a": dict(hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=512, tie_word_embeddings=True),
    "tiny-b": dict(hidden_size=96, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=512, tie_word_embeddings=False),
}  # fmt: skip
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0}
"""Dense bf16 peak of the SXM parts (NVIDIA data sheets)."""


def build_model(shape: dict[str, Any], device: Any, dtype: Any, tokenizer: Any) -> Any:
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    config = Qwen2Config(
        **shape, max_position_embeddings=32768, rope_theta=1e6, rms_norm_eps=1e-6,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
    )  # fmt: skip
    torch.manual_seed(0)
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = AutoModelForCausalLM.from_config(config)
    finally:
        torch.set_default_dtype(before)
    return model


def sync(torch: Any) -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def rollout_tps(backend: Any, args: argparse.Namespace, torch: Any) -> dict[str, Any]:
    """Generated tokens per second over a batch of `--batch` prompts of `--prompt-len` tokens."""
    prompts = [[(7 * i + j) % 300 + 5 for j in range(args.prompt_len)] for i in range(args.batch)]
    backend.generate(prompts[:2], 4, seed=0)  # warm-up
    sync(torch)
    start = time.perf_counter()
    samples = backend.generate(prompts, args.new_tokens, seeds=list(range(len(prompts))))
    sync(torch)
    seconds = time.perf_counter() - start
    tokens = sum(len(s.token_ids) for s in samples)
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


def fake_plan(args: argparse.Namespace) -> Any:
    from gift.learner import UpdatePlan
    from gift.rollout.engine import Trajectory

    length = args.prompt_len + args.new_tokens
    trajs = []
    for i in range(args.batch):
        ids = [(11 * i + 3 * j) % 300 + 5 for j in range(length)]
        mask = [0] * args.prompt_len + [1] * args.new_tokens
        trajs.append(
            Trajectory(
                game_id="bench", task="bench", group_id=i // 4, seed=i, input_ids=ids, loss_mask=mask,
                sampled_logprobs=[0.0] * length, prompt_len=args.prompt_len, messages=[], final_info={},
            )
        )  # fmt: skip
    return UpdatePlan(trajs, [1.0 if i % 2 else -1.0 for i in range(args.batch)])


def update(model: Any, args: argparse.Namespace, torch: Any) -> dict[str, Any]:
    """One timed mini-batch update after a warm-up one; tokens/s, MFU and peak memory."""
    from accelerate import Accelerator

    from gift.config import AlgorithmSettings
    from gift.learner import plan_shape, ppo_update

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    algo = AlgorithmSettings(mini_batch_size=args.batch, micro_batch_size=args.micro_batch, lr=1e-6)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=algo.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    plan = fake_plan(args)
    shape = plan_shape(len(plan.trajectories), algo, accelerator)
    model.train()

    def once() -> float:
        sync(torch)
        start = time.perf_counter()
        ppo_update(
            model, optimizer, scheduler, plan, algo, accelerator, 0, 0, micro_batches_per_minibatch=shape
        )
        sync(torch)
        return time.perf_counter() - start

    once()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    seconds = once()
    tokens = sum(len(t.input_ids) for t in plan.trajectories)
    out = {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds, "trainable": len(params)}
    out["flops"] = train_flops(model, args.prompt_len + args.new_tokens, tokens)
    peak = peak_tflops(args, torch)
    out["mfu"] = None if peak is None else out["flops"] / seconds / (peak * 1e12)
    out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return out


def train_flops(model: Any, seq_len: int, tokens: int) -> float:
    """6·N·tokens (N without the embedding table) plus attention, 12·layers·hidden·seq per token."""
    config = model.config
    embedding = config.vocab_size * config.hidden_size
    n = sum(p.numel() for p in model.parameters()) - embedding
    return tokens * (6 * n + 12 * config.num_hidden_layers * config.hidden_size * seq_len)


def peak_tflops(args: argparse.Namespace, torch: Any) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(0)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def with_lora(model: Any) -> Any:
    from peft import LoraConfig, get_peft_model

    targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
    return get_peft_model(
        model, LoraConfig(r=16, lora_alpha=32, target_modules=targets, task_type="CAUSAL_LM")
    )


def section(results: dict[str, Any], name: str, fn: Any) -> None:
    """Run one measurement; record its result or its error (the other sections still run)."""
    try:
        results[name] = fn()
    except Exception as err:  # noqa: BLE001 - a benchmark reports what failed and goes on
        results[name] = {"error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc(limit=3)}
    print(f"{name}: {json.dumps(results[name], default=str)[:300]}", flush=True)


def nested_step(model_dir: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Seconds per F+I2 training step against the latency-injecting opponent, on-policy and one step off."""
    from gift.config import load_config
    from gift.metrics import read_metrics
    from gift.trainer import train

    out: dict[str, Any] = {"latency_s": args.latency}
    with LatencyServer(args.latency) as server:
        opponent = {"kind": "openai", "base_url": server.base_url, "model": "bench", "concurrency": 64}
        for staleness in (0, 1):
            overrides = [
                f"model.name={model_dir}", "task.mode=nested", "task.games=[tictactoe-v0,matrix-v0,math-v0]",
                "rollout.reply_prefix='(2, 2) '", f"task.groups={args.nested_groups}",
                f"task.group_size={args.nested_group_size}", f"rollout.max_new_tokens={args.new_tokens}",
                "rollout.max_context=4096", "algo.keep_ratio=1.0", f"algo.mini_batch_size={args.batch}",
                f"algo.micro_batch_size={args.micro_batch}", f"train.steps={args.nested_steps}",
                f"train.max_staleness={staleness}", f"train.run_dir={work}", f"train.run_name=nested-{staleness}",
                "train.progress=false", "train.plots=false", "train.tensorboard=false",
                f"train.save_every={args.nested_steps + 1}", f"train.sample_every={args.nested_steps + 1}",
            ]  # fmt: skip
            cfg = load_config(None, overrides)
            cfg.task.game_options = {"tictactoe-v0": {"opponent": opponent, "parser": "raw"}}
            with contextlib.redirect_stdout(io.StringIO()):
                rows = read_metrics(train(cfg) / "metrics.jsonl")
            timed = rows[1:] or rows
            out[f"staleness_{staleness}"] = {
                "step_s": sum(r["train/step_time"] for r in timed) / len(timed),
                "rollout_s": sum(r["train/rollout_time"] for r in timed) / len(timed),
                "update_s": sum(r["train/update_time"] for r in timed) / len(timed),
            }
        out["opponent_requests"] = server.requests
    out["ratio_one_step_off"] = out["staleness_1"]["step_s"] / out["staleness_0"]["step_s"]
    return out


def measure_shape(name: str, shape: dict, args: argparse.Namespace, tok_dir: str, work: Path) -> dict:
    import torch

    from gift.rollout import HFBackend

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    out: dict[str, Any] = {"shape": shape}
    model = build_model(shape, device, dtype, tokenizer)
    out["parameters"] = sum(p.numel() for p in model.parameters())
    first = name == next(iter(args.shapes))
    model.eval()
    section(
        out, "rollout_hf", lambda: rollout_tps(HFBackend(model, tokenizer, max_batch=args.batch), args, torch)
    )
    if first:
        model_dir = work / name
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        section(out, "rollout_vllm", lambda: vllm_rollout(str(model_dir), args, torch, tokenizer))
        section(out, "update_full", lambda: update(model, args, torch))
        del model
        _free(torch)
        section(out, "nested_f_i2_step", lambda: nested_step(str(model_dir), args, work))
    else:
        section(out, "update_lora", lambda: update(with_lora(model), args, torch))
        del model
        _free(torch)
    return out


def vllm_rollout(model_dir: str, args: argparse.Namespace, torch: Any, tokenizer: Any) -> dict[str, Any]:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return {"skipped": "vLLM is not installed"}
    from gift.rollout import VLLMBackend

    backend = VLLMBackend(model_dir, gpu_memory_utilization=0.3, dtype="bfloat16", ignore_eos=True)
    return rollout_tps(backend, args, torch)


def _free(torch: Any) -> None:
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny shapes, float32, small batches")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default bench/results/gpu.json)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--prompt-len", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--latency", type=float, default=0.5, help="seconds the opponent endpoint waits")
    parser.add_argument("--nested-steps", type=int, default=3)
    parser.add_argument("--nested-groups", type=int, default=4)
    parser.add_argument("--nested-group-size", type=int, default=8)
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak bf16 TFLOP/s for MFU")
    args = parser.parse_args(argv)
    args.shapes = SHAPES
    if args.cpu_smoke:
        args.shapes = SMOKE_SHAPES
        args.batch, args.micro_batch, args.prompt_len, args.new_tokens = 4, 2, 16, 8
        args.latency, args.nested_steps, args.nested_groups, args.nested_group_size = 0.05, 2, 1, 2
    import torch

    quiet_transformers()
    if args.cpu_smoke:
        torch.set_num_threads(1)
    from gift.models import build_tiny_model

    results: dict[str, Any] = {
        "benchmark": "gpu",
        "mode": "cpu-smoke" if args.cpu_smoke else "default",
        "time": time.time(),
        "machine": machine(torch),
        "versions": versions(["torch", "transformers", "accelerate", "peft", "vllm"]),
        "settings": {k: v for k, v in vars(args).items() if k not in ("shapes", "out")},
        "shapes": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        tok_dir = str(build_tiny_model(work / "tokenizer"))
        for name, shape in args.shapes.items():
            results["shapes"][name] = measure_shape(name, shape, args, tok_dir, work)
    out = args.out or RESULTS_DIR / ("gpu-cpu-smoke.json" if args.cpu_smoke else "gpu.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"results written to {out}")
    return out


if __name__ == "__main__":
    main()
