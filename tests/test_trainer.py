"""The training loop end to end on the tiny model: exact resume, learning, self-play, KL, nested and mixed runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import gift.trainer as trainer
from gift.checkpoint import latest_checkpoint, load_trainer_state
from gift.config import load_config
from gift.errors import ConfigError
from gift.games import registry
from gift.games.base import Outcome, TextGame
from gift.games.registry import GameSpec, register
from gift.metrics import read_metrics
from gift.trainer import main, train

DIGIT_GAME = "first-digit-test-v0"
TIMING_KEYS = {"train/step_time", "train/rollout_time", "train/update_time", "train/tokens_per_s"}


class FirstDigitGame(TextGame):
    """Test-only one-turn game: the reply succeeds when its first character is a digit.

    A randomly initialised model cannot write the answer tags, and on a shipped game its success rate starts near
    0.4 %, too rare for a short test to learn from reliably. Here about 13 % of the tiny vocabulary starts with
    a digit, so every step has groups with mixed rewards and a real learning signal.
    """

    id = "first-digit-test-v0"
    default_max_turns = 1

    def __init__(self, parser: str = "raw") -> None:
        super().__init__(parser=parser)
        self.prompt = ""

    def _reset(self) -> None:
        self.prompt = f"Answer with a number, for example {self.rng.randrange(10)}."

    def _act(self, action: str) -> Outcome:
        ok = action[:1].isdigit()
        return Outcome(terminated=True, reward=float(ok), success=ok, end_reason="correct" if ok else "wrong")

    def render(self) -> str:
        return self.prompt


@pytest.fixture(autouse=True)
def digit_game(monkeypatch):
    """The test game is registered only while a test of this module runs (other tests list the real games)."""
    monkeypatch.setattr(registry.REGISTRY, "_specs", dict(registry.REGISTRY._specs))
    register(GameSpec(DIGIT_GAME, f"{__name__}:FirstDigitGame", "Test game: start the reply with a digit."))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: extra intra-op threads only spin against other processes on a shared machine."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def overrides(model: str, run_dir: Path, name: str, *extra: str) -> list[str]:
    """A tiny, fast run of the test game; `extra` overrides win."""
    return [
        f"model.name={model}",
        "task.preset=null",
        "task.mode=single",
        f"task.games=[{DIGIT_GAME}]",
        "task.groups=2",
        "task.group_size=4",
        "rollout.max_new_tokens=2",
        "rollout.max_context=512",
        "algo.mini_batch_size=4",
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
        "train.heldout_episodes=0",  # the held-out evaluation has its own tests (tests/test_heldout.py)
        *extra,
    ]


def run(model: str, run_dir: Path, name: str, *extra: str, resume: Path | None = None) -> Path:
    return train(load_config(None, overrides(model, run_dir, name, *extra)), resume=resume)


def final_weights(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    folder = run_dir / "checkpoints" / f"step-{step:06d}"
    files = sorted(folder.glob("*.safetensors"))
    assert files, f"no weights in {folder}"
    out: dict[str, torch.Tensor] = {}
    for f in files:
        out.update({f"{f.name}:{k}": v for k, v in load_file(f).items()})
    return out


def comparable(rows: list[dict]) -> list[dict]:
    """Metric rows without wall-clock timings, NaN replaced so that equal rows compare equal."""
    return [
        {
            k: ("nan" if isinstance(v, float) and math.isnan(v) else v)
            for k, v in r.items()
            if k not in TIMING_KEYS and not k.endswith("latency_s")
        }
        for r in rows
    ]


# ---------------------------------------------------------------------------------------------- exact resume
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_resume_reproduces_an_uninterrupted_run_exactly(tiny_model_dir, tmp_path, lora):
    # LoRA dropout draws from the global torch RNG during updates, so this case also proves the RNG restore.
    extra = (
        ["model.lora.r=4", "model.lora.dropout=0.1", "model.lora.target_modules=[q_proj,v_proj]"]
        if lora
        else []
    )
    straight = run(tiny_model_dir, tmp_path, "straight", *extra)
    split = run(tiny_model_dir, tmp_path, "split", "train.steps=2", *extra)
    assert latest_checkpoint(split / "checkpoints").name == "step-000002"
    if lora:
        run(tiny_model_dir, tmp_path, "split", *extra, resume=split)
    else:
        # The user path: `gift train --resume RUN_DIR train.steps=4` reads the run's own config.yaml.
        assert main(None, ["train.steps=4"], resume=str(split)) == 0

    a, b = final_weights(straight, 4), final_weights(split, 4)
    if lora:
        assert all(k.startswith("adapter_model.safetensors:") for k in a), "a LoRA run saves only its adapter"
        assert any("lora_B" in k and v.abs().max() > 0 for k, v in a.items()), "the adapter never trained"
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resume"
    initial = load_file(Path(tiny_model_dir) / "model.safetensors")
    if not lora:
        assert any(
            not torch.equal(a[f"model.safetensors:{k}"], v)
            for k, v in initial.items()
            if f"model.safetensors:{k}" in a
        )

    rows_a, rows_b = read_metrics(straight / "metrics.jsonl"), read_metrics(split / "metrics.jsonl")
    assert [r["step"] for r in rows_b] == [1, 2, 3, 4], "resume must not duplicate or drop metric rows"
    assert [r["train/reward"] for r in rows_a] == [r["train/reward"] for r in rows_b]
    assert comparable(rows_a) == comparable(rows_b)
    state = load_trainer_state(split / "checkpoints" / "step-000004")
    assert state["step"] == 4 and state["sampler"]["step"] == 4


def test_resume_without_a_checkpoint_is_a_config_error(tiny_model_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    cfg = load_config(None, overrides(tiny_model_dir, tmp_path, "x"))
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        train(cfg, resume=tmp_path / "empty")


# ---------------------------------------------------------------------------------------------- learning
@pytest.mark.slow
def test_success_rate_rises_on_an_easy_game(tiny_model_dir, tmp_path):
    """One-token replies to the test game. Over seeds 0-7 the last-3 minus first-3 gain was 0.53-0.72."""
    out = run(
        tiny_model_dir,
        tmp_path,
        "learn",
        "task.groups=4",
        "task.group_size=8",
        "rollout.max_new_tokens=1",
        "algo.mini_batch_size=32",
        "algo.micro_batch_size=32",
        "algo.lr=3e-2",
        "train.steps=12",
        "train.save_every=100",
        "train.seed=1",
        "task.base_seed=100",
    )
    success = [r["train/success"] for r in read_metrics(out / "metrics.jsonl")]
    first, last = sum(success[:3]) / 3, sum(success[-3:]) / 3
    assert last >= first + 0.3, f"success per step: {success}"
    rows = {r["metric"]: r for r in json.loads((out / "summary.json").read_text())["metrics"]}
    assert rows["train/success"]["last"] > rows["train/success"]["first"]


# ---------------------------------------------------------------------------------------------- self-play
def test_self_play_opponent_is_refreshed_every_k_steps(tiny_model_dir, tmp_path):
    out = run(
        tiny_model_dir,
        tmp_path,
        "self",
        "task.games=[tictactoe-v0]",
        "task.game_options={tictactoe-v0: {opponent: self, parser: lenient}}",
        "task.groups=1",
        "task.group_size=2",
        "rollout.max_context=2048",
        "rollout.self_play_refresh=2",
        "train.steps=3",
        "train.save_every=1",
        "train.keep_checkpoints=3",
    )

    def opponent_equals_policy(step: int, policy_step: int | None) -> bool:
        frozen = load_trainer_state(out / "checkpoints" / f"step-{step:06d}")["self_play"]
        if policy_step is None:
            policy = load_file(Path(tiny_model_dir) / "model.safetensors")
        else:
            policy = load_file(out / "checkpoints" / f"step-{policy_step:06d}" / "model.safetensors")
        shared = [k for k in policy if k in frozen]
        assert shared, "the frozen opponent must hold the policy's parameters"
        return all(torch.equal(frozen[k], policy[k]) for k in shared)

    assert opponent_equals_policy(1, None)  # not refreshed yet: still the initial policy
    assert not opponent_equals_policy(1, 1)
    assert opponent_equals_policy(2, 2)  # refreshed after step 2
    assert opponent_equals_policy(3, 2) and not opponent_equals_policy(3, 3)
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]


# ---------------------------------------------------------------------------------------------- KL
@pytest.mark.parametrize("kl_coef", [0.0, 0.1])
def test_kl_coef_loads_a_reference_model_only_when_needed(tiny_model_dir, tmp_path, monkeypatch, kl_coef):
    loads: list[str] = []
    real = trainer.load_policy

    def counting(cfg, path, device, adapter_from=None):
        loads.append(path)
        return real(cfg, path, device, adapter_from)

    monkeypatch.setattr(trainer, "load_policy", counting)
    out = run(
        tiny_model_dir,
        tmp_path,
        f"kl{kl_coef}",
        f"algo.kl_coef={kl_coef}",
        "algo.mini_batch_size=8",
        "algo.micro_batch_size=4",
        "train.steps=2",
    )
    rows = read_metrics(out / "metrics.jsonl")
    if kl_coef == 0:
        assert len(loads) == 1
        assert not any("train/kl" in r for r in rows)
    else:
        assert len(loads) == 2  # the policy and the frozen reference
        # Before the first update the policy is the reference: the k3 estimate is exactly 0, then it grows.
        assert rows[0]["train/kl"] == 0.0
        assert rows[1]["train/kl"] > 0.0


# ---------------------------------------------------------------------------------------------- nested / mixed
def _games_available(*ids: str) -> bool:
    from gift.games.registry import spec

    try:
        for game in ids:
            spec(game).load()
    except ImportError:
        return False
    return True


@pytest.mark.parametrize(
    "preset, mode",
    [
        ("I2", "nested"),
        ("I2", "mixed"),
        pytest.param("F+I2", "nested", marks=pytest.mark.slow),
        pytest.param("F+I3", "mixed", marks=pytest.mark.slow),
    ],
)
def test_nested_and_mixed_runs_write_per_game_metrics_samples_and_plots(
    tiny_model_dir, tmp_path, preset, mode
):
    from gift.compose import PRESETS

    if not _games_available(*PRESETS[preset]):
        pytest.skip(f"a game of {preset} does not import yet")
    games = PRESETS[preset]
    options = ", ".join(
        f"{g}: {{parser: raw, opponent: random}}" if g == "tictactoe-v0" else f"{g}: {{parser: raw}}"
        for g in games
    )
    out = run(
        tiny_model_dir,
        tmp_path,
        f"{preset}-{mode}",
        f"task.preset={preset}",
        f"task.mode={mode}",
        f"task.game_options={{{options}}}",
        "task.groups=1",
        "task.group_size=2",
        "rollout.max_new_tokens=4",
        "rollout.max_context=2048",
        "train.steps=2",
        "train.plots=true",
        f"train.tensorboard={'true' if preset == 'I2' and mode == 'nested' else 'false'}",
    )
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        for game in games:  # one key per game whatever the mode
            assert f"game/{game}/reward" in row and f"game/{game}/finished" in row
            assert 0.0 <= row[f"game/{game}/success"] <= 1.0
            if mode == "mixed":
                assert f"task/{game}/reward" in row and f"task/{game}/success" in row
        assert not any(k.startswith("sub/") for k in row)
        assert mode == "mixed" or not any(k.startswith("task/") for k in row)
        assert row["train/trajectories"] == (1 if mode == "nested" else len(games)) * 2

    samples = sorted((out / "samples").glob("*.jsonl"))
    assert samples, "no sample file written"
    records = [json.loads(line) for line in samples[0].read_text().splitlines()]
    assert records
    for rec in records:
        roles = [m["role"] for m in rec["messages"]]
        assert roles[:2] == ["system", "user"] and "assistant" in roles
        if mode == "nested":
            assert [s["game"] for s in rec["final_info"]["subgames"]] == list(games)

    for name in ("reward.png", "success.png", "entropy.png", "grad_norm.png"):
        data = (out / name).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000, name
    summary = {r["metric"] for r in json.loads((out / "summary.json").read_text())["metrics"]}
    assert "train/reward" in summary
    assert {f"game/{game}/success" for game in games} <= summary
    if preset == "I2" and mode == "nested":
        assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert (out / "config.yaml").is_file()


def test_long_lived_objects_are_frozen_during_the_steps_only(tiny_model_dir, tmp_path, monkeypatch):
    """The per-step collection skips what lives for the whole run, and the process gets it back afterwards."""
    import gc

    frozen: list[int] = []
    release = trainer._release_memory
    monkeypatch.setattr(trainer, "_release_memory", lambda: (frozen.append(gc.get_freeze_count()), release()))
    run(tiny_model_dir, tmp_path, "frozen", "train.steps=2")
    assert len(frozen) == 2 and all(count > 1000 for count in frozen), frozen
    assert gc.get_freeze_count() == 0


# ---------------------------------------------------------------------------------------------- one step off
def test_one_step_off_resume_reproduces_an_uninterrupted_run_exactly(tiny_model_dir, tmp_path):
    """train.max_staleness=1: 4 steps straight equal 2 + resume + 2 bit for bit; the checkpoint carries the
    next step's rollouts, already played with the weights before its update."""
    stale = ["train.max_staleness=1"]
    straight = run(tiny_model_dir, tmp_path, "straight", *stale)
    split = run(tiny_model_dir, tmp_path, "split", "train.steps=2", *stale)
    state = load_trainer_state(split / "checkpoints" / "step-000002")
    assert "pending" in state and state["sampler"]["step"] == 3, "step 3's rollouts travel with step 2"
    run(tiny_model_dir, tmp_path, "split", *stale, resume=split)

    a, b = final_weights(straight, 4), final_weights(split, 4)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after resume"
    rows_a, rows_b = read_metrics(straight / "metrics.jsonl"), read_metrics(split / "metrics.jsonl")
    assert [r["step"] for r in rows_b] == [1, 2, 3, 4]
    assert comparable(rows_a) == comparable(rows_b)

    # Step 1 plays with the weights it trains (sampler = trainer); later steps with the weights one update back,
    # corrected by TRL's sequence mask (auto with staleness 1).
    assert rows_a[0]["train/mismatch_kl"] < 1e-6
    assert all(r["train/mismatch_kl"] > 1e-6 for r in rows_a[1:])
    assert all(0.0 <= r["train/is_masked_frac"] <= 1.0 for r in rows_a)
    on_policy = run(tiny_model_dir, tmp_path, "on-policy")
    assert any(not torch.equal(a[k], v) for k, v in final_weights(on_policy, 4).items())
