"""The training loop: rollouts of the policy against the games, the StarPO* update, metrics, checkpoints, resume.

One code path from a laptop to a cluster: run `gift train CONFIG` directly, or `accelerate launch --config_file
configs/accelerate/ddp.yaml -m gift train CONFIG` for several processes (DDP, DeepSpeed ZeRO-2/3 or FSDP2;
ddp-cpu.yaml and fsdp-cpu.yaml run two processes on a CPU). Each process plays its share of the step's rollout
groups, filters and updates on them; gradients are averaged by the distributed wrapper. Engines that shard the
parameters generate with a whole copy of the policy on each process (`gift.sharded`).

Read top to bottom: validate the config and build the tasks (before any model loads), load the model, then
`for step: sample groups → rollouts → advantages/filter → PPO update → metrics → checkpoint`.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gift.checkpoint import load_trainer_state, save_checkpoint, set_rng_state
from gift.compose import Task, TaskSampler
from gift.config import Config, config_to_dict, correction_mode, load_config
from gift.engines import rollout_backend
from gift.errors import ConfigError
from gift.guards import stop_if_not_finite
from gift.heldout import evaluate as evaluate_heldout
from gift.heldout import prepare as prepare_heldout
from gift.plots import refresh_plots
from gift.preflight import check_environment
from gift.resume import open_checkpoint
from gift.rollout_schedule import RolloutSchedule, StepPlayer
from gift.run_metrics import driver_metrics, finish_run, save_samples, step_metrics
from gift.runfolder import new_run_dir, prepare_run_folder
from gift.sharded import (
    GenerationCopy,
    check_sharding_settings,
    enable_fsdp_on_cpu,
    engine_shards_parameters,
    load_engine_state,
    load_optimizer_state,
    loading_whole_weights,
    local_parameter_count,
    optimizer_state_to_save,
    save_engine_state,
)
from gift.signals import StopRequest, exit_with_parent
from gift.tasks import (
    GamePool,
    min_groups_per_step,
    share_endpoints,
    substitute_self,
    task_pairs,
    task_sampler,
    uses_self_play,
    validate_tasks,
)


# ------------------------------------------------------------------------------------------------ model
def load_policy(cfg: Config, path: str, device: Any, adapter_from: str | None = None) -> tuple[Any, Any]:
    """Model and tokenizer from `path` with the configured dtype, LoRA and activation checkpointing."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = cfg.model.dtype
    if dtype == "auto":
        dtype = "bfloat16" if getattr(device, "type", "cpu") == "cuda" else "float32"
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    if cfg.model.lora is not None:
        from peft import LoraConfig, PeftModel, get_peft_model

        if adapter_from is not None:
            model = PeftModel.from_pretrained(model, adapter_from, is_trainable=True)
        else:
            lora = cfg.model.lora
            model = get_peft_model(
                model,
                LoraConfig(
                    r=lora.r,
                    lora_alpha=lora.alpha,
                    lora_dropout=lora.dropout,
                    target_modules=list(lora.target_modules),
                    task_type="CAUSAL_LM",
                ),
            )
    if cfg.model.activation_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    return model, tokenizer


def params_digest(model: Any) -> str:
    """A short hash of every parameter, to check that distributed replicas stay identical."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _configure_engine(accelerator: Any, cfg: Config) -> None:
    """Fit a DeepSpeed or FSDP launch to the loop (see configs/accelerate/).

    Sharding settings under which no whole generation copy can be built are refused (`gift.sharded`). The loop
    accumulates its own micro-batches and marks the last one of each mini-batch, so DeepSpeed's own accumulation
    count must be 1.
    """
    from accelerate.utils import DistributedType

    check_sharding_settings(accelerator)
    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        return
    ds = accelerator.state.deepspeed_plugin.deepspeed_config
    if ds.get("gradient_accumulation_steps", "auto") not in ("auto", 1):
        raise ConfigError(
            f"DeepSpeed gradient_accumulation_steps={ds['gradient_accumulation_steps']!r}: set it to 1; "
            "accumulation is algo.mini_batch_size / (processes × algo.micro_batch_size)"
        )
    ds["gradient_accumulation_steps"] = 1
    ds["train_micro_batch_size_per_gpu"] = cfg.algo.micro_batch_size
    ds["gradient_clipping"] = cfg.algo.grad_clip


# ------------------------------------------------------------------------------------------------ run
def train(
    cfg: Config,
    resume: str | os.PathLike | None = None,
    config_name: str | None = None,
    stop: StopRequest | None = None,
) -> Path:
    """Run (or resume) a training run; returns its folder. With `stop` installed (`gift train` does), SIGTERM or
    Ctrl-C end the run after the current step with a checkpoint."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import gather_object
    from transformers.utils import logging as hf_logging

    from gift.algorithms import policy_loss  # noqa: F401  (fail early if the algorithms package is broken)
    from gift.learner import local_mini_batch, plan_shape, ppo_update, prepare_update
    from gift.metrics import MetricsLogger
    from gift.models import resolve_model
    from gift.rollout import RolloutConfig

    hf_logging.disable_progress_bar()
    pairs = task_pairs(cfg)
    validate_tasks(pairs)
    check_environment(cfg)
    model_path = resolve_model(cfg.model.name)
    run_dir = Path(resume) if resume is not None else new_run_dir(cfg, config_name)
    ckpt, run_id = open_checkpoint(run_dir, cfg) if resume is not None else (None, None)

    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    # "auto" without a GPU must still ask for CPU: otherwise processes started by torchrun/accelerate launch on a
    # CPU-only machine each run alone as rank 0 instead of joining one gloo group.
    # Under a DeepSpeed launch, asking for CPU would silently drop DeepSpeed (accelerate then runs plain DDP).
    deepspeed_launch = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"
    use_cpu = not deepspeed_launch and (
        cfg.train.device == "cpu" or (cfg.train.device == "auto" and not torch.cuda.is_available())
    )
    accelerator = Accelerator(cpu=use_cpu)
    if use_cpu:
        enable_fsdp_on_cpu(accelerator)
    rank, world = accelerator.process_index, accelerator.num_processes
    launched = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world != launched:
        raise ConfigError(
            f"{launched} processes were launched but accelerate set up {world} "
            f"({accelerator.distributed_type.value}): they did not join one group (DeepSpeed without a GPU "
            "runs a single process); on CPU use configs/accelerate/ddp-cpu.yaml"
        )
    groups_per_step = min_groups_per_step(cfg, pairs)
    if groups_per_step < world:
        raise ConfigError(
            f"{groups_per_step} rollout group(s) per step cannot be shared by {world} processes; "
            f"raise task.groups to at least {world}"
        )
    local_mini_batch(cfg.algo, world)  # a global mini-batch the processes cannot share is one line, now
    _configure_engine(accelerator, cfg)
    random.seed(cfg.train.seed)
    torch.manual_seed(cfg.train.seed)

    weights_from = model_path
    if ckpt is not None and cfg.model.lora is None:
        weights_from = str(ckpt)
    adapter_from = str(ckpt) if ckpt is not None and cfg.model.lora else None
    model, tokenizer = load_policy(cfg, weights_from, accelerator.device, adapter_from=adapter_from)
    model.to(accelerator.device)
    # Under FSDP/ZeRO-3 the trained model is sharded: generation, self-play, old log-probs and checkpoints use
    # a whole copy (`policy` below), refreshed after every update. Otherwise `policy` is the trained model.
    gen_copy = None
    ref_model = None
    with loading_whole_weights(accelerator):
        if engine_shards_parameters(accelerator):
            whole, _ = load_policy(cfg, weights_from, accelerator.device, adapter_from=adapter_from)
            gen_copy = GenerationCopy(whole.to(accelerator.device))
        if cfg.algo.kl_coef > 0:
            ref_model, _ = load_policy(
                cfg.model_copy(update={"model": cfg.model.model_copy(update={"lora": None})}),
                model_path,
                accelerator.device,
            )
            ref_model.to(accelerator.device).eval().requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        trainable, lr=cfg.algo.lr, betas=tuple(cfg.algo.betas), weight_decay=cfg.algo.weight_decay
    )
    warmup = cfg.algo.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    trained = accelerator.unwrap_model(model)
    if gen_copy is not None:
        gen_copy.refresh(trained)
    policy = trained if gen_copy is None else gen_copy.model
    backend = rollout_backend(cfg, policy, tokenizer, model_path, sharded=gen_copy is not None)
    # A vLLM engine loaded the base model: give it a resumed run's weights or the merged adapter.
    backend.sync_weights(policy)

    self_play = None
    if any(uses_self_play(task.options) for task, _ in pairs):
        from gift.opponents.policy import PolicyOpponent

        self_play = PolicyOpponent.from_model(
            policy, tokenizer, max_new_tokens=cfg.rollout.max_new_tokens, temperature=cfg.rollout.temperature
        )
        pairs = [(Task(t.name, t.game, substitute_self(t.options, self_play)), n) for t, n in pairs]
    pairs = [(Task(t.name, t.game, share_endpoints(t.options)), n) for t, n in pairs]
    game_pool = GamePool()
    sampler = task_sampler(cfg, pairs)

    start = 0
    if ckpt is not None:
        state = load_trainer_state(ckpt)
        loaded = load_optimizer_state(accelerator, model, optimizer, state) or load_engine_state(
            accelerator, model, ckpt
        )
        if not loaded and accelerator.is_main_process:
            print(
                "warning: this checkpoint holds no optimizer state this engine can load (written by another "
                "engine); AdamW moments restart"
            )
        scheduler.load_state_dict(state["scheduler"])
        sampler.load_state_dict(state["sampler"])
        if self_play is not None and "self_play" in state:
            self_play.refresh(state["self_play"])
        set_rng_state(state["rng"])
        start = int(state["step"])
    is_main = accelerator.is_main_process
    if is_main:
        run_id = prepare_run_folder(run_dir, cfg, start, run_id, fresh=resume is None)
    work_dir = run_dir / "work"
    accelerator.wait_for_everyone()
    work_dir.mkdir(parents=True, exist_ok=True)
    logger = MetricsLogger(
        run_dir,
        tensorboard=cfg.train.tensorboard,
        wandb_project=cfg.train.wandb_project,
        config=config_to_dict(cfg),
        run_name=run_dir.name,
        enabled=is_main,
        resume_step=start,
    )
    bar = None
    if is_main and cfg.train.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.train.steps, initial=start, desc=run_dir.name, dynamic_ncols=True)

    # The learner applies the importance correction resolved for this backend and staleness.
    algo = cfg.algo.model_copy(update={"is_correction": correction_mode(cfg)})
    rollout_cfg = RolloutConfig(
        system_prompt=cfg.rollout.system_prompt,
        max_new_tokens=cfg.rollout.max_new_tokens,
        max_context=cfg.rollout.max_context,
        temperature=cfg.rollout.temperature,
        top_p=cfg.rollout.top_p,
        instruction=cfg.rollout.instruction,
        reply_prefix=cfg.rollout.reply_prefix,
        max_batch=cfg.rollout.max_batch,
    )
    pad_id = tokenizer.pad_token_id
    tasks = [t for t, _ in pairs]
    players = (backend, tokenizer, rollout_cfg, accelerator)
    heldout = prepare_heldout(cfg, tasks, groups_per_step, run_dir, start, players)
    # What is alive now (libraries, models, optimizer) lives for the whole run: freezing it keeps it out of
    # the full collection after every step (`_release_memory`), which otherwise scans it all, 0.2 s a step.
    gc.collect()
    gc.freeze()
    player = StepPlayer(sampler, game_pool, tokenizer, rollout_cfg, cfg.train.seed, rank, world)
    schedule = RolloutSchedule(player, backend, cfg.train.max_staleness)
    if ckpt is not None:
        schedule.load_pending(state.get("pending"))
    for step in range(start, cfg.train.steps):
        t0 = time.perf_counter()
        model.eval()
        ready = schedule.take(step, policy)
        trajectories, rollout_stats, t_rollout = ready.trajectories, ready.stats, ready.seconds
        schedule.launch_next(step, policy)

        t1 = time.perf_counter()
        model.train()
        plan = prepare_update(trajectories, algo)
        shape = plan_shape(len(plan.trajectories), algo, accelerator)
        update = ppo_update(
            model,
            optimizer,
            scheduler,
            plan,
            algo,
            accelerator,
            pad_id,
            step_seed=cfg.train.seed * 7919 + step,
            ref_model=ref_model,
            micro_batches_per_minibatch=shape,
            spare=trajectories[0] if trajectories else None,
            old_model=None if gen_copy is None else policy,
        )
        if gen_copy is not None:
            gen_copy.refresh(trained)
        stop_if_not_finite(accelerator, update, policy, step + 1)
        if not cfg.train.max_staleness:
            backend.sync_weights(policy)
        _release_memory()
        schedule.wait()  # the next step's rollouts, played during the update
        if self_play is not None and (step + 1) % cfg.rollout.self_play_refresh == 0:
            self_play.refresh(policy)
        t_update = time.perf_counter() - t1

        records = gather_object(ready.records)
        plan_stats = gather_object([plan.stats])
        with (work_dir / f"rank-{rank}.jsonl").open("a") as fh:
            fh.write(
                json.dumps(
                    {
                        "step": step,
                        "rank": rank,
                        "seeds": ready.group_seeds,
                        "trajectories": len(trajectories),
                    }
                )
                + "\n"
            )
        if is_main:
            metrics = step_metrics(records, plan_stats, update, per_task=len(sampler.tasks) > 1)
            generated = sum(sum(r["reply_lengths"]) for r in records)
            metrics.update(
                {
                    "train/step_time": time.perf_counter() - t0,
                    "train/rollout_time": t_rollout,
                    "train/update_time": t_update,
                    "train/tokens_per_s": generated / max(t_rollout, 1e-9),
                    "train/lr": scheduler.get_last_lr()[0],
                    **driver_metrics(rollout_stats, backend),
                }
            )
            logger.log(step + 1, metrics)
            if (step + 1) % cfg.train.sample_every == 0 or step == start:
                save_samples(run_dir, step + 1, records, cfg.train.samples_per_save)
            refresh_plots(run_dir, step + 1, cfg.train.sample_every, cfg.train.plots)  # live plots
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    reward=f"{metrics['train/reward']:.3f}",
                    success=f"{metrics['train/success']:.2f}",
                    s=f"{metrics['train/step_time']:.1f}",
                )
        stopping = stop is not None and stop.should_stop(accelerator)
        if stopping or (step + 1) % cfg.train.save_every == 0 or step + 1 == cfg.train.steps:
            _checkpoint(
                accelerator,
                run_dir,
                step + 1,
                policy,
                tokenizer,
                model,
                optimizer,
                scheduler,
                sampler,
                self_play,
                cfg,
                run_id,
                schedule.pending_state(),
            )
        if stopping:
            heldout = None  # an interrupted run is not judged
            if is_main:
                print(
                    f"stopped by {stop.signal_name} after step {step + 1}; checkpoint saved; resume with: "
                    f"gift train --resume {run_dir}",
                    file=sys.stderr,
                    flush=True,
                )
            break

    gc.unfreeze()
    schedule.close()
    with (work_dir / f"rank-{rank}.jsonl").open("a") as fh:
        final = {"final": True, "rank": rank, "digest": params_digest(policy)}
        engine = {
            "engine": accelerator.distributed_type.value,
            "sharded": gen_copy is not None,
            "parameters_held": local_parameter_count(trained),
        }
        fh.write(json.dumps({**final, **engine}) + "\n")
    if bar is not None:
        bar.close()
    logger.close()
    if heldout is not None:
        heldout["trained"] = evaluate_heldout(tasks, heldout["seeds"], *players)
    if is_main:
        finish_run(run_dir, plots=cfg.train.plots, heldout=heldout)
    accelerator.wait_for_everyone()
    # Tear the process group down before the interpreter exits: left to exit-time destructors, gloo's
    # threads sometimes abort a process ("terminate called without an active exception").
    accelerator.end_training()
    return run_dir


def _release_memory() -> None:
    """Return freed heap to the OS after each step: on Linux/glibc, CPU training with ever-changing sequence
    shapes otherwise fragments the heap until the process is killed for memory."""
    import ctypes

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl): nothing to do
        pass


def _checkpoint(
    accelerator: Any,
    run_dir: Path,
    step: int,
    policy: Any,
    tokenizer: Any,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    sampler: TaskSampler,
    self_play: Any,
    cfg: Config,
    run_id: str | None,
    pending: str | None = None,
) -> None:
    accelerator.wait_for_everyone()
    # Collectives: FSDP gathers the optimizer state, DeepSpeed has every process write its partition.
    optimizer_state = optimizer_state_to_save(accelerator, model, optimizer)
    engine_dir = save_engine_state(accelerator, model, run_dir / "checkpoints" / f".engine-step-{step:06d}")
    if accelerator.is_main_process:
        state = {
            "optimizer": optimizer_state,
            "scheduler": scheduler.state_dict(),
            "sampler": sampler.state_dict(),
        }
        if pending is not None:  # max_staleness 1: the next step's rollouts, already played
            state["pending"] = pending
        if self_play is not None:
            state["self_play"] = {
                k: v.detach().cpu() for k, v in self_play.backend.model.state_dict().items()
            }
        save_checkpoint(
            run_dir / "checkpoints",
            step,
            policy,
            tokenizer,
            state,
            config_to_dict(cfg),
            keep=cfg.train.keep_checkpoints,
            engine_dir=engine_dir,
            run_id=run_id or "",
        )
    accelerator.wait_for_everyone()


def main(config_path: str | None, overrides: Sequence[str] = (), resume: str | None = None) -> int:
    """`gift train` entry: validate everything first (one-line errors), then train."""
    if resume is not None and config_path is None:
        from gift.resume import resume_config_path

        config_path = resume_config_path(resume)
    if config_path is None:
        from gift.config import default_config_path

        config_path = str(default_config_path())
    cfg = load_config(config_path, list(overrides))
    if "LOCAL_RANK" in os.environ:  # a worker of accelerate launch / torchrun
        exit_with_parent()
    with StopRequest() as stop:
        train(cfg, resume=resume, config_name=Path(config_path).stem, stop=stop)
    return 0
