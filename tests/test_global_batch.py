"""`algo.mini_batch_size` is global: one process and two processes on the same config make the same optimizer
steps, and on the same mini-batches the same weights (a real 2-process gloo run against a 1-process one)."""

from __future__ import annotations

import json
import sys

import pytest

from gift.config import AlgorithmSettings
from gift.errors import ConfigError
from gift.learner import local_mini_batch
from tests.test_distributed import _launch

WORKER = """
import json, sys, torch
from accelerate import Accelerator
from transformers import AutoModelForCausalLM
from gift.config import AlgorithmSettings
from gift.learner import UpdatePlan, plan_shape, ppo_update
from gift.rollout.engine import Trajectory

model_dir, out_dir = sys.argv[1], sys.argv[2]
acc = Accelerator(cpu=True)
rank, world = acc.process_index, acc.num_processes
torch.set_num_threads(1)
SEED, SHARES = 11, [[0, 1, 2, 3], [4, 5, 6, 7]]  # what each of two processes holds

def traj(i):
    n = 12 + i % 5
    ids = torch.randint(5, 400, (n,), generator=torch.Generator().manual_seed(i)).tolist()
    return Trajectory("toy", "toy", i, i, ids, [0] * 8 + [1] * (n - 8), [0.0] * n, 8, [], {})

def perm(n):
    return torch.randperm(n, generator=torch.Generator().manual_seed(SEED)).tolist()

def one_process_order(share):
    # The 1-process list whose k-th mini-batch (first epoch) is the union of both processes' k-th ones.
    local = perm(len(SHARES[0]))
    wanted = [SHARES[r][j] for k in range(0, len(local), share) for r in range(2) for j in local[k : k + share]]
    order = [0] * len(wanted)
    for position, index in enumerate(perm(len(wanted))):
        order[index] = wanted[position]
    return order

RUNS = {
    "token-mean": dict(loss_agg="token-mean"),
    "seq-mean": dict(loss_agg="seq-mean-token-mean"),
    "two-epochs": dict(loss_agg="token-mean", ppo_epochs=2),
}
report = {}
for name, extra in RUNS.items():
    algo = AlgorithmSettings(mini_batch_size=4, micro_batch_size=1, grad_clip=1e9, **extra)
    ids = SHARES[rank] if world == 2 else one_process_order(algo.mini_batch_size // 2)
    trajs = [traj(i) for i in ids]
    plan = UpdatePlan(trajs, [((i * 37) % 11 - 5) / 5 for i in ids])
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)  # plain SGD: a wrong gradient scale shows
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    model, optimizer = acc.prepare(model, optimizer)
    shape = plan_shape(len(trajs), algo, acc)
    metrics = ppo_update(model, optimizer, scheduler, plan, algo, acc, 0, step_seed=SEED,
                         micro_batches_per_minibatch=shape, spare=trajs[0])
    report[name] = {"shape": shape, "steps": metrics["optimizer_steps"]}
    state = {k: v.detach().clone() for k, v in acc.unwrap_model(model).state_dict().items()}
    torch.save(state, f"{out_dir}/{world}-{rank}-{name}.pt")
with open(f"{out_dir}/{world}-{rank}.json", "w") as fh:
    json.dump(report, fh)
acc.end_training()
"""


def test_the_share_of_a_mini_batch_is_its_size_over_the_processes():
    algo = AlgorithmSettings(mini_batch_size=16)
    assert [local_mini_batch(algo, n) for n in (1, 2, 4, 8, 16)] == [16, 8, 4, 2, 1]
    with pytest.raises(ConfigError) as err:
        local_mini_batch(AlgorithmSettings(mini_batch_size=6), 4)
    message = str(err.value)
    assert "\n" not in message
    assert "algo.mini_batch_size=6" in message and "4 training processes" in message and "use 8" in message
    with pytest.raises(ConfigError, match="multiple of the 32"):
        local_mini_batch(algo, 32)  # fewer trajectories per step than processes


@pytest.mark.slow
def test_one_and_two_processes_make_the_same_steps_and_weights(tiny_model_dir, tmp_path):
    import torch

    script = tmp_path / "global_batch_worker.py"
    script.write_text(WORKER)
    out = tmp_path / "out"
    out.mkdir()
    _launch([sys.executable, str(script), tiny_model_dir, str(out)], "one process")
    two = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    _launch([*two, str(script), tiny_model_dir, str(out)], "torch.distributed.run (2 processes)")
    reports = {key: json.loads((out / f"{key}.json").read_text()) for key in ("1-0", "2-0", "2-1")}
    # 8 trajectories, mini-batches of 4: 2 steps an epoch on one process (4 a step) and on two (2 each a step).
    expected = {"token-mean": 2.0, "seq-mean": 2.0, "two-epochs": 4.0}
    for key, report in reports.items():
        assert {name: run["steps"] for name, run in report.items()} == expected, key
    assert reports["1-0"]["token-mean"]["shape"] == [4, 4]
    assert reports["2-0"]["token-mean"]["shape"] == reports["2-1"]["token-mean"]["shape"] == [2, 2]

    from transformers import AutoModelForCausalLM

    before = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).state_dict()
    for name in ("token-mean", "seq-mean"):
        one, *replicas = (torch.load(out / f"{key}-{name}.pt") for key in ("1-0", "2-0", "2-1"))
        moved = max(float((one[k] - v).abs().max()) for k, v in before.items())
        assert moved > 1e-3, f"{name}: the update did not move the weights"
        for key, value in one.items():
            assert torch.equal(replicas[0][key], replicas[1][key]), f"{name}: replicas diverged at {key}"
            torch.testing.assert_close(replicas[0][key], value, rtol=1e-4, atol=1e-5, msg=f"{name}: {key}")
