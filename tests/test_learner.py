"""The update step: filtering and advantages on hand-built trajectories, and exact gradient accumulation."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from gift.config import AlgorithmSettings
from gift.learner import UpdatePlan, plan_shape, ppo_update, prepare_update
from gift.rollout.engine import Trajectory

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one intra-op thread


def traj(group: int, reward: float, opponent_failed: bool = False, turns: int = 1) -> Trajectory:
    """A trajectory whose only meaningful fields for filtering are its group, reward and failure flag."""
    return Trajectory(
        game_id="matrix-v0",
        task="matrix-v0",
        group_id=group,
        seed=group,
        input_ids=[1, 2, 3],
        loss_mask=[0, 1, 1],
        sampled_logprobs=[0.0, -1.0, -1.0],
        prompt_len=1,
        messages=[],
        final_info={},
        turn_rewards=[reward] + [0.0] * (turns - 1),
        opponent_failed=opponent_failed,
    )


def token_traj(seed: int, segments: list[tuple[int, int]], group: int = 0) -> Trajectory:
    """Random token ids laid out as (length, loss-mask value) segments: prompt 0, reply 1, environment 0, ..."""
    g = torch.Generator().manual_seed(seed)
    mask = [value for length, value in segments for _ in range(length)]
    ids = torch.randint(5, 400, (len(mask),), generator=g).tolist()
    return Trajectory(
        game_id="toy",
        task="toy",
        group_id=group,
        seed=seed,
        input_ids=ids,
        loss_mask=mask,
        sampled_logprobs=[0.0] * len(mask),
        prompt_len=segments[0][0],
        messages=[],
        final_info={},
    )


# ------------------------------------------------------------------------------------------- prepare_update
def test_prepare_update_drops_failures_normalises_groups_and_keeps_the_widest():
    trajectories = [
        *(traj(1, r) for r in (1.0, 0.0, 1.0, 0.0)),  # std 0.577
        *(traj(2, 0.5) for _ in range(4)),  # std 0
        traj(3, 1.0),
        traj(3, 0.0),
        traj(3, 1.0, opponent_failed=True),
        traj(3, 0.0, opponent_failed=True),  # usable rewards 1, 0: std 0.707
    ]
    plan = prepare_update(trajectories, AlgorithmSettings(keep_ratio=0.67))
    assert plan.stats == {
        "dropped_opponent_failed": 2.0,
        "groups_total": 3.0,
        "groups_kept": 2.0,
        "groups_zero_std": 1.0,
    }
    assert [t.group_id for t in plan.trajectories] == [1, 1, 1, 1, 3, 3]
    assert not any(t.opponent_failed for t in plan.trajectories)
    std1, std3 = math.sqrt(1 / 3), math.sqrt(1 / 2)
    expected = [0.5 / std1, -0.5 / std1, 0.5 / std1, -0.5 / std1, 0.5 / std3, -0.5 / std3]
    assert plan.advantages == pytest.approx(expected, rel=1e-4)


def test_prepare_update_keep_ratio_picks_the_top_group_only():
    trajectories = [traj(1, r) for r in (1.0, 0.0)] + [traj(2, r) for r in (0.4, 0.6)]
    plan = prepare_update(trajectories, AlgorithmSettings(keep_ratio=0.25))
    assert {t.group_id for t in plan.trajectories} == {1}
    assert plan.stats["groups_kept"] == 1.0


def test_prepare_update_rewards_include_penalties_and_drgrpo_skips_std():
    trajectories = [traj(1, 1.0), traj(1, -0.1, turns=2), traj(1, 0.3)]
    plan = prepare_update(trajectories, AlgorithmSettings(keep_ratio=1.0, estimator="drgrpo"))
    mean = (1.0 - 0.1 + 0.3) / 3
    assert plan.advantages == pytest.approx([1.0 - mean, -0.1 - mean, 0.3 - mean], rel=1e-5)


def test_prepare_update_with_only_failures_is_empty():
    plan = prepare_update([traj(1, 1.0, True), traj(1, 0.0, True)], AlgorithmSettings())
    assert plan.trajectories == [] and plan.advantages == []
    assert plan.stats["dropped_opponent_failed"] == 2.0 and plan.stats["groups_kept"] == 0.0


# -------------------------------------------------------------------------------------------- ppo_update


@pytest.fixture(scope="module")
def accelerator():
    from accelerate import Accelerator

    return Accelerator(cpu=True)


@pytest.fixture()
def plan() -> UpdatePlan:
    """Four multi-turn trajectories of different lengths with mixed-sign advantages."""
    trajs = [
        token_traj(1, [(6, 0), (3, 1), (2, 0), (2, 1)]),
        token_traj(2, [(4, 0), (5, 1)]),
        token_traj(3, [(9, 0), (1, 1), (3, 0), (4, 1)]),
        token_traj(4, [(3, 0), (7, 1)]),
    ]
    return UpdatePlan(trajs, [1.2, -0.7, 0.4, -0.9])


def _update(model, plan, accelerator, shape=None, spare=None, ref_model=None, old_model=None, **algo_options):
    """One ppo_update with plain SGD (lr 1, no clipping), returning the parameter change and the metrics."""
    algo = AlgorithmSettings(grad_clip=1e9, **algo_options)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    if shape is None:
        shape = plan_shape(len(plan.trajectories), algo, accelerator)
    metrics = ppo_update(
        model,
        optimizer,
        scheduler,
        plan,
        algo,
        accelerator,
        pad_id=0,
        step_seed=0,
        micro_batches_per_minibatch=shape,
        spare=spare,
        ref_model=ref_model,
        old_model=old_model,
    )
    delta = {k: v.detach() - before[k] for k, v in model.named_parameters()}
    return delta, metrics


@pytest.mark.parametrize("loss_agg", ["token-mean", "seq-mean-token-mean"])
def test_micro_batching_gives_the_same_update_as_one_pass(tiny_model, plan, accelerator, loss_agg):
    model, _ = tiny_model
    twin = copy.deepcopy(model)
    whole, m1 = _update(model, plan, accelerator, mini_batch_size=4, micro_batch_size=4, loss_agg=loss_agg)
    split, m2 = _update(twin, plan, accelerator, mini_batch_size=4, micro_batch_size=1, loss_agg=loss_agg)
    assert m1["optimizer_steps"] == m2["optimizer_steps"] == 1.0
    assert any(d.abs().max() > 1e-6 for d in whole.values()), "the update must actually move the weights"
    for name in whole:
        torch.testing.assert_close(split[name], whole[name], rtol=1e-4, atol=1e-6, msg=name)
    assert m1["grad_norm"] == pytest.approx(m2["grad_norm"], rel=1e-4)


def test_padding_micro_batches_contribute_no_gradient(tiny_model, plan, accelerator):
    model, _ = tiny_model
    empty = UpdatePlan([], [])
    delta, metrics = _update(model, empty, accelerator, shape=[2], spare=plan.trajectories[0])
    assert metrics["optimizer_steps"] == 1.0
    assert metrics["grad_norm"] == 0.0
    assert all(torch.count_nonzero(d) == 0 for d in delta.values())
    assert "pg_loss" not in metrics  # padding passes are not averaged into the logged losses


def test_extra_padding_passes_leave_the_update_unchanged(tiny_model, plan, accelerator):
    model, _ = tiny_model
    twin = copy.deepcopy(model)
    two = UpdatePlan(plan.trajectories[:2], plan.advantages[:2])
    plain, _ = _update(model, two, accelerator, mini_batch_size=4, micro_batch_size=2)
    padded, _ = _update(twin, two, accelerator, shape=[3], mini_batch_size=4, micro_batch_size=2)
    for name in plain:
        assert torch.equal(plain[name], padded[name]), name


def test_padding_without_a_spare_trajectory_is_an_error(tiny_model, accelerator):
    model, _ = tiny_model
    with pytest.raises(RuntimeError, match="spare"):
        _update(model, UpdatePlan([], []), accelerator, shape=[1])


def test_plan_shape_counts_micro_batches_per_mini_batch(accelerator):
    algo = AlgorithmSettings(mini_batch_size=4, micro_batch_size=3)
    assert plan_shape(10, algo, accelerator) == [2, 2, 1]
    assert plan_shape(4, algo, accelerator) == [2]
    assert plan_shape(0, algo, accelerator) == []


def test_several_mini_batches_and_epochs_step_the_optimizer_each_time(tiny_model, plan, accelerator):
    model, _ = tiny_model
    _, metrics = _update(model, plan, accelerator, mini_batch_size=2, micro_batch_size=1, ppo_epochs=2)
    assert metrics["optimizer_steps"] == 4.0
    # Later mini-batches are scored against the log-probs from before the update: the ratio moves off 1.
    assert metrics["ratio_mean"] != pytest.approx(1.0, abs=1e-9)
    assert math.isfinite(metrics["pg_loss"]) and metrics["entropy_mean"] > 0


class DeepSpeedLike:
    """The real accelerator, reporting DeepSpeed and recording the accumulation boundary at every backward."""

    def __init__(self, real) -> None:
        from accelerate.utils import DistributedType

        self._real = real
        self.distributed_type = DistributedType.DEEPSPEED
        self.boundaries: list[bool] = []

    def __getattr__(self, name: str):
        return getattr(self._real, name)

    def backward(self, loss, **kwargs) -> None:
        self.boundaries.append(self._real.gradient_state.sync_gradients)
        self._real.backward(loss, **kwargs)


def test_deepspeed_sees_one_accumulation_boundary_per_mini_batch(tiny_model, plan, accelerator):
    """DeepSpeed steps its optimizer inside backward whenever the boundary flag is set: only on the last pass."""
    model, _ = tiny_model
    recorder = DeepSpeedLike(accelerator)
    three = UpdatePlan(plan.trajectories[:3], plan.advantages[:3])
    _, metrics = _update(model, three, recorder, mini_batch_size=2, micro_batch_size=1)
    assert recorder.boundaries == [False, True, True]  # mini-batches of 2 and 1 passes
    assert metrics["optimizer_steps"] == 2.0
    assert accelerator.gradient_state.sync_gradients is True  # left as found for the rest of the program


def grouped_plan() -> UpdatePlan:
    """Three groups of trajectories (one prompt each, several turns), interleaved as rollouts may return them."""
    prompts = {g: token_traj(100 + g, [(20 + 6 * g, 0)]).input_ids for g in range(3)}
    trajs = []
    for k in range(9):
        g = k % 3
        reply = token_traj(200 + k, [(2 + k % 4, 1), (3, 0), (2, 1)])
        trajs.append(
            Trajectory(
                game_id="toy",
                task="toy",
                group_id=g,
                seed=g,
                input_ids=prompts[g] + reply.input_ids,
                loss_mask=[0] * len(prompts[g]) + reply.loss_mask,
                sampled_logprobs=[0.0] * (len(prompts[g]) + len(reply.input_ids)),
                prompt_len=len(prompts[g]),
                messages=[],
                final_info={},
            )
        )
    return UpdatePlan(trajs, [0.9, -1.1, 0.3, -0.2, 1.4, -0.6, 0.5, -0.8, 0.1])


def test_sharing_prompts_gives_the_same_update(tiny_model, accelerator):
    """Old log-probs, reference log-probs and the gradients all go through the shared path, with the same result."""
    model, _ = tiny_model
    twin, ref = copy.deepcopy(model), copy.deepcopy(model)
    ref.requires_grad_(False)
    for p in ref.parameters():
        p.add_(0.01 * torch.randn_like(p))  # a reference that differs, so the KL term has a gradient
    options = dict(mini_batch_size=6, micro_batch_size=3, ppo_epochs=2, kl_coef=0.1, ref_model=ref)
    counter = []
    hook = model.get_input_embeddings().register_forward_hook(lambda m, a, o: counter.append(a[0].shape[0]))
    try:
        shared, m1 = _update(model, grouped_plan(), accelerator, share_prefix=True, **options)
    finally:
        hook.remove()
    plain, m2 = _update(twin, grouped_plan(), accelerator, share_prefix=False, **options)
    assert m1["optimizer_steps"] == m2["optimizer_steps"] == 4.0
    # Sorted by group, the micro-batches hold rows of one or two prompts: some prefix passes have fewer rows.
    assert any(rows < 3 for rows in counter), counter
    assert any(d.abs().max() > 1e-4 for d in plain.values())
    for name in plain:
        torch.testing.assert_close(shared[name], plain[name], rtol=1e-4, atol=1e-5, msg=name)
    for key in ("pg_loss", "entropy_mean", "ratio_mean", "grad_norm"):
        assert m1[key] == pytest.approx(m2[key], rel=1e-4, abs=1e-6), key


def _count_rows(model, counter):
    return model.get_input_embeddings().register_forward_hook(lambda m, a, o: counter.append(a[0].shape[0]))


def test_an_old_model_scores_the_old_policy_and_the_trained_model_runs_only_equal_count_passes(
    tiny_model, accelerator
):
    """The sharded-engine mode: old log-probs from a whole copy, one unshared pass per training micro-batch."""
    model, _ = tiny_model
    twin, old = copy.deepcopy(model), copy.deepcopy(model)
    old.requires_grad_(False)
    frozen = {k: v.clone() for k, v in old.state_dict().items()}
    options = dict(mini_batch_size=6, micro_batch_size=3, ppo_epochs=2)
    trained_rows, old_rows = [], []
    hooks = [_count_rows(model, trained_rows), _count_rows(old, old_rows)]
    try:
        with_old, m1 = _update(
            model, grouped_plan(), accelerator, share_prefix=True, old_model=old, **options
        )
    finally:
        for hook in hooks:
            hook.remove()
    plain, m2 = _update(twin, grouped_plan(), accelerator, share_prefix=False, **options)
    # 9 trajectories, mini-batches of 6 and 3, micro-batches of 3: 3 passes an epoch, each over 3 whole rows.
    assert trained_rows == [3] * 6
    assert old_rows and sum(old_rows) >= 9, "the old log-probs come from the copy"
    assert all(torch.equal(v, old.state_dict()[k]) for k, v in frozen.items()), "the copy is not trained"
    for name in plain:
        torch.testing.assert_close(with_old[name], plain[name], rtol=1e-4, atol=1e-5, msg=name)
    assert m1["ratio_mean"] == pytest.approx(m2["ratio_mean"], rel=1e-5)

    # A copy holding other weights gives other old log-probs: the ratio moves away from the plain update's.
    model2, shifted = copy.deepcopy(twin), copy.deepcopy(twin)
    for p in shifted.parameters():
        p.requires_grad_(False).add_(0.05 * torch.randn_like(p))
    _, m3 = _update(model2, grouped_plan(), accelerator, old_model=shifted, **options)
    _, m4 = _update(copy.deepcopy(twin), grouped_plan(), accelerator, **options)
    assert abs(m3["ratio_mean"] - m4["ratio_mean"]) > 1e-3


@pytest.mark.parametrize("ppo_epochs, shift", [(1, 0.0), (2, 0.0), (1, 0.3), (2, 0.3)])
def test_logprob_gap_measures_how_far_sampling_log_probs_are_from_the_trainers(
    tiny_model, plan, accelerator, ppo_epochs, shift
):
    """Sampling log-probs written from the model itself give a gap of 0; shifted by 0.3 they give 0.3."""
    from gift.learner import _pad_batch, token_logprobs

    model, _ = tiny_model
    with torch.no_grad():
        for t in plan.trajectories:
            lp, _ = token_logprobs(
                model, _pad_batch([t], 0, torch.device("cpu")), with_entropy=False, share=False
            )
            t.sampled_logprobs = [0.0] + [
                float(v) + shift if m else 0.0 for v, m in zip(lp[0].tolist(), t.loss_mask[1:], strict=True)
            ]
    _, metrics = _update(
        model, plan, accelerator, mini_batch_size=2, micro_batch_size=1, ppo_epochs=ppo_epochs
    )
    assert metrics["logprob_gap"] == pytest.approx(shift, abs=1e-5)


def _sample_from_model(model, plan, shifts):
    """Sampling log-probs equal to the model's own, each trajectory's shifted by `shifts[i]`."""
    from gift.learner import _pad_batch, token_logprobs

    with torch.no_grad():
        for t, shift in zip(plan.trajectories, shifts, strict=True):
            lp, _ = token_logprobs(model, _pad_batch([t], 0, torch.device("cpu")), with_entropy=False, share=False)
            t.sampled_logprobs = [0.0] + [
                float(v) + shift if m else 0.0 for v, m in zip(lp[0].tolist(), t.loss_mask[1:], strict=True)
            ]


def test_sequence_mask_drops_a_far_off_trajectory_from_the_policy_gradient(tiny_model, plan, accelerator):
    """A trajectory sampled far from the trainer's log-probs (five tokens 2 nats apart: ratio e^10 > 3) trains exactly as if
    its advantage were 0; the on-policy ones keep ratio 1."""
    model, _ = tiny_model
    twin = copy.deepcopy(model)
    _sample_from_model(model, plan, [0.0, -2.0, 0.0, 0.0])
    options = {"mini_batch_size": 4, "micro_batch_size": 2, "entropy_coef": 0.0}
    corrected, metrics = _update(model, plan, accelerator, is_correction="sequence_mask", **options)
    zeroed = UpdatePlan(plan.trajectories, [1.2, 0.0, 0.4, -0.9])
    reference, _ = _update(twin, zeroed, accelerator, is_correction="off", **options)
    for name in corrected:
        torch.testing.assert_close(corrected[name], reference[name], atol=1e-6, rtol=1e-5)
    assert metrics["is_masked_frac"] == pytest.approx(0.25)
    assert metrics["is_ratio_max"] > 3.0
    assert metrics["mismatch_kl"] > 0.1
