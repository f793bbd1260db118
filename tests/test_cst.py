"""Coordinated Subtask Training (task.mode=cst): the phase rule, the sampler, the config, resume and a short run."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gift.compose import CST_GROUPS, PRESETS, TaskSampler, cst_phase, preset_tasks
from gift.config import load_config
from gift.errors import ConfigError
from gift.tasks import k_list, min_groups_per_step, task_pairs, task_sampler

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def reference_phase(t: int, k: list[int]) -> int:
    """The authors' rule, written from its description: 1-indexed step t, k0 = (t - 1) % sum(k) + 1."""
    k0 = (t - 1) % sum(k) + 1
    return next(i for i in range(len(k)) if k0 <= sum(k[: i + 1]))


# ---------------------------------------------------------------------------------------------- phase rule
def test_phase_sequence_follows_k_list():
    assert [cst_phase(s, [1, 1]) for s in range(6)] == [0, 1, 0, 1, 0, 1]
    assert [cst_phase(s, [2, 1]) for s in range(7)] == [0, 0, 1, 0, 0, 1, 0]
    assert [cst_phase(s, [1, 3, 2]) for s in range(12)] == [0, 1, 1, 1, 2, 2, 0, 1, 1, 1, 2, 2]
    assert [cst_phase(s, [1, 1, 1, 1]) for s in range(8)] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert {cst_phase(s, [5]) for s in range(20)} == {0}


@given(k=st.lists(st.integers(1, 5), min_size=1, max_size=5), step=st.integers(0, 10_000))
def test_phase_matches_the_reference_rule_and_its_weights(k, step):
    assert cst_phase(step, k) == reference_phase(step + 1, k)
    cycle = [cst_phase(s, k) for s in range(step, step + sum(k))]  # any window of one cycle
    assert [cycle.count(i) for i in range(len(k))] == k


@pytest.mark.parametrize(
    ("k", "needle"),
    [([], "non-empty"), ([1, 0], "integers >= 1"), ([1, True], "integers >= 1"), ("11", "list")],
)
def test_bad_k_list_is_one_line(k, needle):
    with pytest.raises(ConfigError) as err:
        cst_phase(0, k)
    assert needle in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------- sampler
def test_sampler_plays_one_task_per_step_with_unique_seeds():
    sampler = TaskSampler([("matrix-v0", 2), ("math-v0", 3)], group_size=4, base_seed=100, k_list=[2, 1])
    batches = [sampler.next_batch() for _ in range(6)]
    assert [{g.task.name for g in b} for b in batches] == [{"matrix-v0"}, {"matrix-v0"}, {"math-v0"}] * 2
    assert [len(b) for b in batches] == [2, 2, 3, 2, 2, 3]
    assert [g.index for g in batches[2]] == [0, 1, 2] and all(g.size == 4 for b in batches for g in b)
    seeds = [g.seed for s in range(300) for g in sampler.batch_at(s)]
    assert len(seeds) == len(set(seeds))
    assert [g.seed for g in batches[0]] == [100, 101] and [g.seed for g in batches[2]] == [112, 113, 114]


def test_sampler_without_k_list_plays_every_task_as_before():
    sampler = TaskSampler([("matrix-v0", 2), ("math-v0", 1)])
    assert [g.task.name for g in sampler.batch_at(3)] == ["matrix-v0", "matrix-v0", "math-v0"]
    assert sampler.phase_at(3) is None and "k_list" not in sampler.state_dict()


@given(stop=st.integers(0, 20), k=st.lists(st.integers(1, 4), min_size=2, max_size=4))
def test_resume_gives_the_same_phases_and_batches(stop, k):
    tasks = [(g, 2) for g in ("matrix-v0", "math-v0", "tictactoe-v0", "spy-v0")[: len(k)]]
    run = TaskSampler(tasks, group_size=2, k_list=k)
    for _ in range(stop):
        run.next_batch()
    resumed = TaskSampler(tasks, group_size=2, k_list=k)
    resumed.load_state_dict(json.loads(json.dumps(run.state_dict())))  # as a checkpoint stores it
    for step in range(stop, stop + 2 * sum(k)):
        assert resumed.phase_at(step) == run.phase_at(step) == cst_phase(step, k)
        assert resumed.next_batch() == run.next_batch()


def test_resume_with_another_k_list_or_mode_is_refused():
    tasks = [("matrix-v0", 1), ("math-v0", 1)]
    state = TaskSampler(tasks, k_list=[1, 2]).state_dict()
    with pytest.raises(ConfigError, match="k_list"):
        TaskSampler(tasks, k_list=[2, 1]).load_state_dict(state)
    with pytest.raises(ConfigError, match="k_list"):
        TaskSampler(tasks).load_state_dict(state)
    with pytest.raises(ConfigError, match="2 sub-tasks"):
        TaskSampler(tasks, k_list=[1, 1, 1])


# ---------------------------------------------------------------------------------------------- config
def test_presets_in_cst_mode_use_the_reference_group_counts():
    for name, games in PRESETS.items():
        pairs = preset_tasks(name, "cst")
        assert [t.game for t, _ in pairs] == list(games)
        assert {n for _, n in pairs} == {CST_GROUPS[name]}
    assert CST_GROUPS == {"F+I1": 16, "F+I2": 8, "F+I3": 8, "I2": 8}
    cfg = load_config(None, ["task.mode=cst", "task.preset=F+I3", "task.groups=3"])
    assert {n for _, n in task_pairs(cfg)} == {3}


def test_cst_config_defaults_k_list_to_ones_and_checks_its_length():
    cfg = load_config(None, ["task.mode=cst", "task.preset=F+I2"])
    pairs = task_pairs(cfg)
    assert k_list(cfg, pairs) == [1, 1, 1]
    assert task_sampler(cfg, pairs).k_list == [1, 1, 1]
    assert min_groups_per_step(cfg, pairs) == 8
    cfg = load_config(None, ["task.mode=cst", "task.preset=I2", "task.k_list=[3, 1]"])
    sampler = task_sampler(cfg, task_pairs(cfg))
    assert [sampler.batch_at(s)[0].task.game for s in range(4)] == ["matrix-v0"] * 3 + ["tictactoe-v0"]
    cfg = load_config(None, ["task.mode=cst", "task.preset=I2", "task.k_list=[1, 1, 1]"])
    with pytest.raises(ConfigError, match="3 entries but there are 2 sub-tasks"):
        task_sampler(cfg, task_pairs(cfg))
    mixed = load_config(None, ["task.mode=mixed", "task.preset=I2"])
    assert k_list(mixed, task_pairs(mixed)) is None and min_groups_per_step(mixed, task_pairs(mixed)) == 16


def test_cst_with_a_game_list_and_groups_per_game():
    cfg = load_config(
        None,
        [
            "task.mode=cst",
            "task.games=[matrix-v0, math-v0]",
            "task.groups=2",
            "task.groups_per_game={math-v0: 5}",
        ],
    )
    pairs = task_pairs(cfg)
    assert [(t.game, n) for t, n in pairs] == [("matrix-v0", 2), ("math-v0", 5)]
    assert min_groups_per_step(cfg, pairs) == 2


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["task.mode=nested", "task.preset=I2", "task.k_list=[1, 1]"], "applies only to task.mode=cst"),
        (["task.mode=cst", "task.preset=I2", "task.k_list=[1, 0]"], "integers >= 1"),
        (["task.mode=cst", "task.preset=I2", "task.k_list=[]"], "non-empty"),
        (["task.mode=cst", "task.preset=I2", "task.k_list=[a, 1]"], "task.k_list"),
        (["task.mode=cts"], "'cst'"),
    ],
)
def test_bad_cst_settings_are_one_line(overrides, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_shipped_cst_configs_mirror_the_nested_and_mixed_ones():
    for preset, size in itertools.product(("fi1", "fi2", "fi3", "i2"), ("qwen1.5b", "qwen7b")):
        cst = load_config(CONFIGS / f"cst-{preset}-{size}.yaml")
        nested = load_config(CONFIGS / f"nested-{preset}-{size}.yaml")
        assert cst.task.mode == "cst" and cst.task.preset == nested.task.preset
        assert cst.model == nested.model and cst.algo == nested.algo
        assert cst.task.game_options == nested.task.game_options
        assert cst.rollout.max_context == nested.rollout.max_context
        pairs = task_pairs(cst)
        assert {n for _, n in pairs} == {CST_GROUPS[cst.task.preset]}
        assert k_list(cst, pairs) == [1] * len(PRESETS[cst.task.preset])


# ---------------------------------------------------------------------------------------------- training
def cst_run(model: str, run_dir: Path, name: str, *extra: str, resume: Path | None = None) -> Path:
    """A few CST steps of F+I1 on the tiny model: two math steps, then one matrix step (k_list [2, 1])."""
    from gift.trainer import train

    overrides = [
        f"model.name={model}",
        "task.preset=F+I1",
        "task.mode=cst",
        "task.k_list=[2, 1]",
        "task.game_options={math-v0: {parser: raw, level: 1}, matrix-v0: {parser: raw}}",
        "task.groups=1",
        "task.group_size=2",
        "rollout.max_new_tokens=3",
        "rollout.max_context=1024",
        "algo.mini_batch_size=2",
        "algo.micro_batch_size=2",
        "algo.keep_ratio=1.0",
        "algo.lr=1e-2",
        f"train.run_dir={run_dir}",
        f"train.run_name={name}",
        "train.progress=false",
        "train.plots=false",
        "train.tensorboard=false",
        "train.threads=1",
        "train.steps=4",
        "train.heldout_episodes=0",
        *extra,
    ]
    return train(load_config(None, overrides), resume=resume)


def test_a_cst_run_trains_one_game_per_step_and_resumes_exactly(tiny_model_dir, tmp_path):
    from gift.metrics import read_metrics

    straight = cst_run(tiny_model_dir, tmp_path, "straight")
    rows = read_metrics(straight / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    trained = [sorted({k.split("/")[1] for k in r if k.startswith("game/")}) for r in rows]
    assert trained == [["math-v0"], ["math-v0"], ["matrix-v0"], ["math-v0"]]
    for row, (game,) in zip(rows, trained, strict=True):
        assert row["train/trajectories"] == 2
        assert f"task/{game}/success" in row and 0.0 <= row[f"game/{game}/success"] <= 1.0
    samples = [json.loads(line) for f in sorted((straight / "samples").glob("*.jsonl")) for line in f.open()]
    assert samples and {s["task"] for s in samples} <= {"math-v0", "matrix-v0"}

    split = cst_run(tiny_model_dir, tmp_path, "split", "train.steps=3")
    cst_run(tiny_model_dir, tmp_path, "split", resume=split)
    resumed = read_metrics(split / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    assert [comparable(r) for r in rows] == [comparable(r) for r in resumed]


def comparable(row: dict) -> dict:
    """A metric row without wall-clock timings, NaN replaced so that equal rows compare equal."""
    return {
        k: "nan" if isinstance(v, float) and math.isnan(v) else v
        for k, v in row.items()
        if not k.endswith(("_time", "tokens_per_s"))
    }
