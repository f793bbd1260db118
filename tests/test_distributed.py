"""Several processes: a real 2-process gloo run of the trainer on CPU, the update step with unequal shares, and the
accelerate launch configs (the GPU ones validated through accelerate's own launch preparation)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "accelerate"
TIMEOUT = 240
# A tiny, fast run: 3 groups of 2 on the matrix game, 2-token replies, mini-batches of 2 (over all processes),
# micro-batches of 1.
COMMON = [
    "task.preset=null",
    "task.mode=single",
    "task.games=[matrix-v0]",
    "task.game_options={matrix-v0: {parser: raw}}",
    "task.groups=3",
    "task.group_size=2",
    "rollout.max_new_tokens=2",
    "rollout.max_context=1024",
    "algo.keep_ratio=1.0",
    "algo.mini_batch_size=2",
    "algo.micro_batch_size=1",
    "algo.lr=1e-2",
    "train.progress=false",
    "train.heldout_episodes=3",  # shared unevenly by the processes, gathered on the main one
    "train.plots=false",
    "train.tensorboard=false",
    "train.threads=1",
]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "RANK", "WORLD_SIZE"))}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return env


def _launch(cmd: list[str], what: str) -> subprocess.CompletedProcess[str]:
    """Run a launcher; if it hangs, stop it and its workers (the launcher's SIGTERM handler ends them)."""
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = "", ""
        pytest.fail(
            f"{what} did not finish in {TIMEOUT} s (deadlock?)\n--- stdout\n{out[-4000:]}\n--- stderr\n{err[-8000:]}"
        )
    if proc.returncode != 0:
        pytest.fail(
            f"{what} exited with {proc.returncode}\n--- stdout\n{out[-4000:]}\n--- stderr\n{err[-8000:]}"
        )
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# --------------------------------------------------------------------------------------- the trainer, 2 processes
@pytest.mark.slow
def test_two_processes_split_the_groups_and_stay_identical(tiny_model_dir, tmp_path):
    """`accelerate launch` with the CPU config; train.device left at auto, as a user on a laptop would."""
    groups, group_size, steps, base_seed = 3, 2, 3, 500  # 3 groups over 2 processes: unequal shares
    result = _launch(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--config_file",
            str(CONFIGS / "ddp-cpu.yaml"),
            "-m",
            "gift",
            "train",
            f"model.name={tiny_model_dir}",
            *COMMON,  # 3 groups of 2
            f"task.base_seed={base_seed}",
            f"train.run_dir={tmp_path}",
            "train.run_name=ddp",
            f"train.steps={steps}",
        ],
        "accelerate launch (2 processes)",
    )
    run_dir = tmp_path / "ddp"
    context = f"\n--- stderr\n{result.stderr[-3000:]}"
    logs = sorted(p.name for p in (run_dir / "work").glob("rank-*.jsonl"))
    assert logs == ["rank-0.jsonl", "rank-1.jsonl"], f"the processes did not form one group: {logs}{context}"
    work = {rank: _lines(run_dir / "work" / f"rank-{rank}.jsonl") for rank in (0, 1)}
    for step in range(steps):
        seeds = {rank: next(r["seeds"] for r in rows if r.get("step") == step) for rank, rows in work.items()}
        assert set(seeds[0]).isdisjoint(seeds[1]), f"step {step}: both processes played {seeds}{context}"
        expected = {base_seed + step * groups + g for g in range(groups)}
        assert set(seeds[0]) | set(seeds[1]) == expected, f"step {step}: {seeds}"
        assert seeds[0] and seeds[1]

    digests = {rank: next(r["digest"] for r in rows if r.get("final")) for rank, rows in work.items()}
    assert digests[0] == digests[1], f"replicas diverged: {digests}{context}"

    import torch
    from transformers import AutoModelForCausalLM

    from gift.trainer import params_digest

    def digest_of(path: Path) -> str:
        return params_digest(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32))

    saved = run_dir / "checkpoints" / f"step-{steps:06d}"
    assert digest_of(saved) == digests[0], "the saved checkpoint is not the replicas' model"
    assert digest_of(Path(tiny_model_dir)) != digests[0], "training did not change the weights"

    rows = _lines(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, steps + 1)), "only the main process logs, once per step"
    assert all(r["train/trajectories"] == groups * group_size for r in rows), "records gathered from both"
    assert all(r["train/groups_total"] == groups for r in rows)


# --------------------------------------------------------------------- the update step with unequal shares
WORKER = """
import json, sys, torch
from accelerate import Accelerator
from transformers import AutoModelForCausalLM
from gift.config import AlgorithmSettings
from gift.learner import UpdatePlan, plan_shape, ppo_update
from gift.rollout.engine import Trajectory
from gift.trainer import params_digest

model_dir, out_dir = sys.argv[1], sys.argv[2]
acc = Accelerator(cpu=True)
rank = acc.process_index
torch.set_num_threads(1)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
before = params_digest(model)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
model, optimizer = acc.prepare(model, optimizer)

def traj(seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 400, (14,), generator=g).tolist()
    mask = [0] * 9 + [1] * 5
    return Trajectory("toy", "toy", seed, seed, ids, mask, [0.0] * 14, 9, [], {})

# Rank 0 trains on three trajectories; rank 1's groups were all filtered out: it has nothing but a spare.
mine = [traj(rank * 10 + i) for i in range(3)]
plan = UpdatePlan(mine, [1.0, -0.5, 0.2]) if rank == 0 else UpdatePlan([], [])
algo = AlgorithmSettings(mini_batch_size=4, micro_batch_size=1, ppo_epochs=2)  # global: 2 per process
shape = plan_shape(len(plan.trajectories), algo, acc)
metrics = ppo_update(model, optimizer, scheduler, plan, algo, acc, 0, step_seed=3,
                     micro_batches_per_minibatch=shape, spare=mine[0])
after = params_digest(acc.unwrap_model(model))
with open(f"{out_dir}/rank-{rank}.json", "w") as fh:
    json.dump({"shape": shape, "before": before, "after": after, "steps": metrics["optimizer_steps"]}, fh)
acc.end_training()  # destroy the process group before exit (gloo's threads may otherwise abort the process)
"""


@pytest.mark.slow
def test_update_with_an_empty_share_neither_deadlocks_nor_diverges(tiny_model_dir, tmp_path):
    """Several mini-batches and epochs (old log-probs needed) while one process has no trajectory at all."""
    script = tmp_path / "update_worker.py"
    script.write_text(WORKER)
    out = tmp_path / "out"
    out.mkdir()
    _launch(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            tiny_model_dir,
            str(out),
        ],
        "torch.distributed.run (2 processes)",
    )
    ranks = [json.loads((out / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["shape"] == ranks[1]["shape"] == [2, 1]
    assert ranks[0]["steps"] == ranks[1]["steps"] == 4.0
    assert ranks[0]["after"] == ranks[1]["after"], "replicas diverged"
    assert ranks[0]["after"] != ranks[0]["before"], "the update did not move the weights"


SHARED_WORKER = """
import json, sys, torch
from accelerate import Accelerator
from transformers import AutoModelForCausalLM
from gift.config import AlgorithmSettings
from gift.learner import UpdatePlan, plan_shape, ppo_update
from gift.rollout.engine import Trajectory

model_dir, out_dir = sys.argv[1], sys.argv[2]
acc = Accelerator(cpu=True)
rank = acc.process_index
torch.set_num_threads(1)

def tokens(seed, n):
    return torch.randint(5, 400, (n,), generator=torch.Generator().manual_seed(seed)).tolist()

def traj(group, k):
    prompt, reply = tokens(group, 18 + group), tokens(100 * group + k, 3 + k)
    ids = prompt + reply
    return Trajectory("toy", "toy", group, group, ids, [0] * len(prompt) + [1] * len(reply), [0.0] * len(ids),
                      len(prompt), [], {})

# Each process trains on its own two groups of three, interleaved.
groups = [2 * rank + 1, 2 * rank + 2]
trajs = [traj(groups[k % 2], k) for k in range(6)]
plan = UpdatePlan(trajs, [1.0, -0.5, 0.2, -0.9, 0.7, -0.3])
for share in (True, False):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    rows = []
    model.get_input_embeddings().register_forward_hook(lambda m, a, o: rows.append(a[0].shape[0]))
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    model, optimizer = acc.prepare(model, optimizer)
    algo = AlgorithmSettings(mini_batch_size=12, micro_batch_size=3, ppo_epochs=2, grad_clip=1e9,
                             share_prefix=share)
    ppo_update(model, optimizer, scheduler, plan, algo, acc, 0, step_seed=5,
               micro_batches_per_minibatch=plan_shape(len(trajs), algo, acc), spare=trajs[0])
    state = {k: v.detach().clone() for k, v in acc.unwrap_model(model).state_dict().items()}
    mode = "shared" if share else "plain"
    torch.save(state, f"{out_dir}/rank-{rank}-{mode}.pt")
    with open(f"{out_dir}/rank-{rank}-{mode}.json", "w") as fh:
        json.dump(rows, fh)
acc.end_training()
"""


@pytest.mark.slow
def test_shared_prompts_under_ddp_keep_replicas_identical_and_match_the_plain_update(
    tiny_model_dir, tmp_path
):
    """Prefixes run through the bare module, suffixes through the DDP wrapper: one synchronised backward."""
    import torch

    script = tmp_path / "shared_worker.py"
    script.write_text(SHARED_WORKER)
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    _launch([*cmd, str(script), tiny_model_dir, str(out)], "torch.distributed.run (2 processes)")
    states = {
        (rank, mode): torch.load(out / f"rank-{rank}-{mode}.pt")
        for rank in (0, 1)
        for mode in ("shared", "plain")
    }
    for rank in (0, 1):
        # Rows per forward: 3-row micro-batches; with sharing, a pass of each micro-batch's 1 or 2 prompts too.
        assert set(json.loads((out / f"rank-{rank}-plain.json").read_text())) == {3}
        assert set(json.loads((out / f"rank-{rank}-shared.json").read_text())) - {3} <= {1, 2}
        assert min(json.loads((out / f"rank-{rank}-shared.json").read_text())) < 3
    for name, value in states[0, "shared"].items():
        assert torch.equal(value, states[1, "shared"][name]), f"replicas diverged at {name}"
        torch.testing.assert_close(value, states[0, "plain"][name], rtol=1e-4, atol=1e-5, msg=name)

    from transformers import AutoModelForCausalLM

    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).state_dict()
    assert any((states[0, "shared"][k] - v).abs().max() > 1e-4 for k, v in before.items()), "no update"


# --------------------------------------------------------------------------------------------- launch configs
def _prepared(name: str):
    """What `accelerate launch --config_file NAME` would set up, short of starting processes."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args = launch_command_parser().parse_args(["--config_file", str(CONFIGS / name), "-m", "gift", "train"])
    args, defaults, mp_from_config = _validate_launch_command(args)
    if args.use_deepspeed:
        fields = list(defaults.deepspeed_config) + (["mixed_precision"] if mp_from_config else [])
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        _, env = prepare_deepspeed_cmd_env(args)
    else:
        env = prepare_multi_gpu_env(args)
    return args, defaults, {k: v for k, v in env.items() if k.startswith(("ACCELERATE_", "FSDP_"))}


def test_every_config_is_valid_yaml_with_only_keys_accelerate_knows():
    import yaml
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    names = sorted(p.name for p in CONFIGS.glob("*.yaml"))
    assert names == [
        "ddp-cpu.yaml",
        "ddp.yaml",
        "deepspeed-zero2-cpu.yaml",
        "deepspeed-zero2.yaml",
        "deepspeed-zero3.yaml",
        "fsdp-cpu.yaml",
        "fsdp.yaml",
    ]
    launch_options = {a.dest for a in launch_command_parser()._actions}
    for name in names:
        raw = yaml.safe_load((CONFIGS / name).read_text())
        assert set(raw) <= set(ClusterConfig.__dataclass_fields__), name
        config = load_config_from_file(str(CONFIGS / name))  # raises on unknown top-level keys
        assert config.compute_environment.value == "LOCAL_MACHINE"
        assert config.main_process_port == 0, f"{name}: use a free port so runs can share a machine"
        for section in ("deepspeed_config", "fsdp_config"):
            unknown = set(raw.get(section) or {}) - launch_options
            assert not unknown, f"{name}: {section} keys accelerate launch does not read: {unknown}"


def test_cpu_config_starts_two_processes_without_mpi():
    args, _, env = _prepared("ddp-cpu.yaml")
    assert args.multi_gpu and not args.use_deepspeed and not args.use_fsdp  # torchrun, not mpirun
    assert args.nproc_per_node == "2"
    assert env["ACCELERATE_MIXED_PRECISION"] == "no"


def test_ddp_gpu_config():
    args, _, env = _prepared("ddp.yaml")
    assert args.multi_gpu and args.gpu_ids == "all" and args.nproc_per_node == "8"
    assert env["ACCELERATE_MIXED_PRECISION"] == "no"


@pytest.mark.parametrize("name, stage", [("deepspeed-zero2.yaml", 2), ("deepspeed-zero3.yaml", 3)])
def test_deepspeed_configs_build_the_plugin_the_trainer_adapts(name, stage):
    from accelerate.utils import DeepSpeedPlugin, DistributedType, patch_environment

    from gift.config import load_config
    from gift.sharded import engine_shards_parameters
    from gift.trainer import _configure_engine

    args, _, env = _prepared(name)
    assert args.use_deepspeed and env["ACCELERATE_USE_DEEPSPEED"] == "true"
    assert env["ACCELERATE_DEEPSPEED_ZERO_STAGE"] == str(stage)
    assert env["ACCELERATE_GRADIENT_ACCUMULATION_STEPS"] == "1"
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    with patch_environment(**env):
        plugin = DeepSpeedPlugin()
    assert plugin.deepspeed_config["zero_optimization"]["stage"] == stage

    cfg = load_config(None, ["algo.micro_batch_size=3", "algo.grad_clip=0.5"])
    accelerator = SimpleNamespace(
        distributed_type=DistributedType.DEEPSPEED, state=SimpleNamespace(deepspeed_plugin=plugin)
    )
    _configure_engine(accelerator, cfg)
    ds = plugin.deepspeed_config
    assert ds["train_micro_batch_size_per_gpu"] == 3
    assert ds["gradient_accumulation_steps"] == 1
    assert ds["gradient_clipping"] == 0.5
    # ZeRO-3 generates with a whole copy of the policy on each process (gift.sharded).
    assert engine_shards_parameters(accelerator) == (stage == 3)


@pytest.mark.parametrize("name", ["fsdp.yaml", "fsdp-cpu.yaml"])
def test_fsdp_configs_build_an_fsdp2_plugin_the_trainer_accepts(name):
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin, patch_environment

    from gift.config import load_config
    from gift.trainer import _configure_engine

    args, _, env = _prepared(name)
    assert args.use_fsdp and env["FSDP_VERSION"] == "2"
    assert env["FSDP_CPU_RAM_EFFICIENT_LOADING"] == "false"
    with patch_environment(**env):
        plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    accelerator = SimpleNamespace(
        distributed_type=DistributedType.FSDP, state=SimpleNamespace(fsdp_plugin=plugin)
    )
    _configure_engine(accelerator, load_config(None, []))  # no error: FSDP2 with whole loading is supported
