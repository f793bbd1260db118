"""Time per training step: our trainer (`gift.trainer.train`) against TRL's `GRPOTrainer`, same run, same work.

    python bench/train_step_vs_trl.py                   # tiny model; a few minutes on 2 cores
    python bench/train_step_vs_trl.py --quick           # smoke run
    python bench/train_step_vs_trl.py --model embedded  # SmolLM2-135M-Instruct (about 10 s per step each)

Both sides train on the same single-turn game (`matrix-v0` restricted to one game, `--parser` raw by default),
with the same model, the same prompts in the same order (the seeds our task sampler gives each step, rendered
into the chat prompt our rollout engine sends), `--prompts` x `--generations` completions per step, the same
completion cap, one optimizer step per training step, no reference model (beta 0), DAPO-style token-mean loss,
clip 0.2/0.28, entropy coefficient 0.001, AdamW at the same learning rate, float32, no gradient checkpointing.
The reward of a TRL completion is what the game gives that reply.

Step times: ours from `train/step_time` in metrics.jsonl (rollout + update + weight sync), TRL from a
`TrainerCallback` (on_step_begin .. on_step_end, generation included). The first step of every run is a warm-up
and is excluded. Runs alternate (ours, TRL, ours, TRL, ...) so that load changes on a shared machine hit both.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from _common import (
    PeakMemory,
    machine,
    print_header,
    quiet_transformers,
    ratio_text,
    resolve_bench_model,
    versions,
    write_results,
)

TARGET = 0.5
BASE_SEED = 10000
LEARNING_RATE = 1e-6


def game_options(parser: str) -> dict[str, Any]:
    """One fixed matrix game (Prisoner's Dilemma, no sign flip or offset, the reader is Player 1)."""
    return {"games": [0], "negate": False, "offsets": [0], "role": 1, "parser": parser}


# ----------------------------------------------------------------------------------------- ours
class StepClock:
    """CPU seconds of each of our training steps: from the task sampler's batch to the metrics line.

    Wall time on a shared machine moves with other people's load; the process's CPU time much less, so both
    are reported. The two calls are wrapped only while the block runs.
    """

    def __enter__(self) -> StepClock:
        from gift.compose import TaskSampler
        from gift.metrics import MetricsLogger

        self.cpu: list[float] = []
        self._saved = (TaskSampler.next_batch, MetricsLogger.log)
        next_batch, log = self._saved
        started: list[float] = []

        def timed_next_batch(sampler: Any) -> Any:
            started.append(time.process_time())
            return next_batch(sampler)

        def timed_log(logger: Any, step: int, metrics: dict[str, Any]) -> None:
            log(logger, step, metrics)
            if started:
                self.cpu.append(time.process_time() - started.pop())

        TaskSampler.next_batch, MetricsLogger.log = timed_next_batch, timed_log  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        from gift.compose import TaskSampler
        from gift.metrics import MetricsLogger

        TaskSampler.next_batch, MetricsLogger.log = self._saved  # type: ignore[method-assign]


def run_ours(args: argparse.Namespace, model_path: str, workdir: Path, index: int) -> dict[str, Any]:
    from gift.config import load_config
    from gift.metrics import read_metrics
    from gift.trainer import train

    batch = args.prompts * args.generations
    overrides = [
        f"model.name={model_path}",
        "model.dtype=float32",
        "task.mode=single",
        "task.games=[matrix-v0]",
        f"task.groups={args.prompts}",
        f"task.group_size={args.generations}",
        f"task.base_seed={BASE_SEED}",
        f"rollout.max_new_tokens={args.max_completion}",
        "rollout.max_context=2048",
        f"rollout.max_batch={batch}",
        "algo.keep_ratio=1.0",
        f"algo.mini_batch_size={batch}",
        f"algo.micro_batch_size={batch}",
        "algo.ppo_epochs=1",
        "algo.kl_coef=0",
        "algo.loss_agg=token-mean",
        f"algo.lr={LEARNING_RATE}",
        f"train.steps={args.steps}",
        f"train.run_dir={workdir}",
        f"train.run_name=ours-{index}",
        f"train.save_every={args.steps + 1}",
        f"train.sample_every={args.steps + 1}",
        "train.progress=false",
        "train.plots=false",
        "train.tensorboard=false",
        "train.device=cpu" if args.device == "cpu" else "train.device=auto",
    ]
    if args.threads:
        overrides.append(f"train.threads={args.threads}")
    cfg = load_config(None, overrides)
    cfg.task.game_options = {"matrix-v0": game_options(args.parser)}
    with PeakMemory(_torch()) as mem, contextlib.redirect_stdout(io.StringIO()), StepClock() as clock:
        run_dir = train(cfg)
    rows = read_metrics(run_dir / "metrics.jsonl")
    timed = rows[1:]
    return {
        "step_times": [r["train/step_time"] for r in timed],
        "cpu_step_times": clock.cpu[1:],
        "rollout_times": [r["train/rollout_time"] for r in timed],
        "update_times": [r["train/update_time"] for r in timed],
        "first_step_time": rows[0]["train/step_time"],
        "completion_len": statistics.fmean(r["train/reply_len"] for r in rows),
        "optimizer_steps": [r.get("train/optimizer_steps") for r in rows],
        "memory": mem.as_dict(),
    }


# ----------------------------------------------------------------------------------------- TRL
def trl_dataset(args: argparse.Namespace, tokenizer: Any) -> Any:
    """The chat prompts our engine sends, for the seeds our sampler gives each step, in step order."""
    from datasets import Dataset

    from gift.games.registry import make
    from gift.rollout.transcript import DEFAULT_SYSTEM_PROMPT, first_messages, format_instruction, turn_block

    rows = []
    game = make("matrix-v0", **game_options(args.parser))
    for step in range(args.steps):
        for group in range(args.prompts):
            seed = BASE_SEED + step * args.prompts + group
            obs, _ = game.reset(seed=seed)
            block = turn_block(1, obs, game.actions_left, format_instruction(args.max_completion))
            rows.append({"prompt": first_messages(DEFAULT_SYSTEM_PROMPT, block), "seed": seed})
    return Dataset.from_list(rows)


def game_reward(completions: list[Any], seed: list[int], **_: Any) -> list[float]:
    """The reward our game gives each completion (format penalty and outcome), for TRL."""
    from gift.games.registry import make

    game = make("matrix-v0", **game_options(game_reward.parser))  # type: ignore[attr-defined]
    rewards = []
    for completion, episode_seed in zip(completions, seed, strict=True):
        text = completion[0]["content"] if isinstance(completion, list) else str(completion)
        game.reset(seed=int(episode_seed))
        rewards.append(float(game.step(text)[1]))
    return rewards


def run_trl(args: argparse.Namespace, model_path: str, workdir: Path, index: int) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.start = self.cpu_start = 0.0
            self.times: list[float] = []
            self.cpu: list[float] = []

        def on_step_begin(self, *a: Any, **k: Any) -> None:
            self.start, self.cpu_start = time.perf_counter(), time.process_time()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            self.times.append(time.perf_counter() - self.start)
            self.cpu.append(time.process_time() - self.cpu_start)

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    game_reward.parser = args.parser  # type: ignore[attr-defined]
    config = GRPOConfig(
        output_dir=str(workdir / f"trl-{index}"),
        use_cpu=args.device == "cpu",
        bf16=False,
        fp16=False,
        gradient_checkpointing=False,
        per_device_train_batch_size=args.prompts * args.generations,
        gradient_accumulation_steps=1,
        num_generations=args.generations,
        max_completion_length=args.max_completion,
        max_steps=args.steps,
        learning_rate=LEARNING_RATE,
        lr_scheduler_type="constant",
        weight_decay=0.01,
        max_grad_norm=1.0,
        beta=0.0,
        loss_type="dapo",
        epsilon=0.2,
        epsilon_high=0.28,
        entropy_coef=0.001,
        num_iterations=1,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        shuffle_dataset=False,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_vllm=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=0,
    )
    timer = StepTimer()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=game_reward,
        args=config,
        train_dataset=trl_dataset(args, tokenizer),
        processing_class=tokenizer,
        callbacks=[timer],
    )
    generation_times: list[float] = []
    generate_and_score = trainer._generate_and_score_completions

    def timed_generation(*a: Any, **k: Any) -> Any:
        start = time.perf_counter()
        out = generate_and_score(*a, **k)
        generation_times.append(time.perf_counter() - start)
        return out

    trainer._generate_and_score_completions = timed_generation  # attribution only: generation vs the rest
    with PeakMemory(torch) as mem, contextlib.redirect_stdout(io.StringIO()):
        trainer.train()
    lengths = [
        r["completions/mean_length"] for r in trainer.state.log_history if "completions/mean_length" in r
    ]
    return {
        "step_times": timer.times[1:],
        "cpu_step_times": timer.cpu[1:],
        "first_step_time": timer.times[0],
        "generation_times": generation_times[1:],
        "completion_len": statistics.fmean(lengths) if lengths else float("nan"),
        "optimizer_steps": trainer.state.global_step,
        "memory": mem.as_dict(),
    }


def _torch() -> Any:
    import torch

    return torch


# ----------------------------------------------------------------------------------------- main
def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: 3 steps, one run each")
    parser.add_argument("--model", default="tiny", help="tiny (default), embedded, or a model folder")
    parser.add_argument("--prompts", type=int, default=2, help="distinct prompts (groups) per step")
    parser.add_argument("--generations", type=int, default=4, help="completions per prompt")
    parser.add_argument("--max-completion", type=int, default=None, help="completion cap in tokens")
    parser.add_argument(
        "--steps", type=int, default=None, help="training steps per run (the first is warm-up)"
    )
    parser.add_argument("--runs", type=int, default=None, help="runs per side, alternating")
    parser.add_argument("--parser", choices=("raw", "strict"), default="raw", help="reply parser of the game")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    parser.add_argument("--device", choices=("cpu", "auto"), default="cpu", help="cpu (default) or auto")
    args = parser.parse_args()
    big = args.model != "tiny"
    args.max_completion = args.max_completion or (16 if args.quick else 32)
    args.steps = args.steps or (3 if args.quick or big else 8)
    args.runs = args.runs or (1 if args.quick or big else 3)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    quiet_transformers()
    warnings.filterwarnings("ignore", category=FutureWarning)
    mach = machine(torch)
    vers = versions(["gift-rl", "torch", "transformers", "trl", "accelerate"])
    print_header("training step: gift vs TRL GRPOTrainer", "quick" if args.quick else "default", mach, vers)
    settings = {k: v for k, v in vars(args).items() if k != "quick"}
    print("settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))

    results: dict[str, list[dict[str, Any]]] = {"ours": [], "trl": []}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        model_path = resolve_bench_model(args.model, workdir)
        for index in range(args.runs):
            results["ours"].append(run_ours(args, model_path, workdir, index))
            results["trl"].append(run_trl(args, model_path, workdir, index))

    ours_steps = [t for r in results["ours"] for t in r["step_times"]]
    trl_steps = [t for r in results["trl"] for t in r["step_times"]]
    ours_mean, trl_mean = _mean(ours_steps), _mean(trl_steps)
    rollout = _mean([t for r in results["ours"] for t in r["rollout_times"]])
    update = _mean([t for r in results["ours"] for t in r["update_times"]])
    trl_gen = _mean([t for r in results["trl"] for t in r["generation_times"]])
    print(
        f"\n{args.prompts} prompts x {args.generations} completions, <= {args.max_completion} tokens, parser {args.parser}"
    )
    print(
        f"  ours  {ours_mean:7.3f} s/step (n={len(ours_steps)})  rollout {rollout:.3f} s + update {update:.3f} s; "
        f"mean completion {_mean([r['completion_len'] for r in results['ours']]):.1f} tokens"
    )
    print(
        f"  TRL   {trl_mean:7.3f} s/step (n={len(trl_steps)})  generation+scoring {trl_gen:.3f} s, "
        f"rest {trl_mean - trl_gen:.3f} s; mean completion {_mean([r['completion_len'] for r in results['trl']]):.1f} tokens"
    )
    ratio = ours_mean / trl_mean
    ours_cpu = _mean([t for r in results["ours"] for t in r["cpu_step_times"]])
    trl_cpu = _mean([t for r in results["trl"] for t in r["cpu_step_times"]])
    print(
        f"  ours/TRL time per step {ratio_text(ours_mean, trl_mean)} (target <= {TARGET}x: "
        f"{'met' if ratio <= TARGET else 'NOT met'})"
    )
    print(
        f"  CPU seconds per step (less sensitive to other load): ours {ours_cpu:.3f}, TRL {trl_cpu:.3f}, "
        f"ratio {ratio_text(ours_cpu, trl_cpu)}"
    )
    peak = {side: max(r["memory"]["rss_peak_mb"] for r in runs) for side, runs in results.items()}
    print(f"  peak RSS during the runs: ours {peak['ours']:,.0f} MiB, TRL {peak['trl']:,.0f} MiB")
    write_results(
        "train_step_vs_trl" + ("" if args.model == "tiny" else "-" + Path(args.model).name),
        args.quick,
        {
            "machine": mach,
            "versions": vers,
            "settings": settings,
            "ours_step_s": ours_mean,
            "trl_step_s": trl_mean,
            "ratio": ratio,
            "ours_cpu_step_s": ours_cpu,
            "trl_cpu_step_s": trl_cpu,
            "cpu_ratio": ours_cpu / trl_cpu,
            "target": TARGET,
            "ours_rollout_s": rollout,
            "ours_update_s": update,
            "trl_generation_s": trl_gen,
            "runs": results,
        },
    )


if __name__ == "__main__":
    main()
