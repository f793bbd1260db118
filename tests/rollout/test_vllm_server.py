"""The vLLM server backend's client side against a loopback fake of vLLM's API (real sockets, no mocks):
token-in/token-out exactness, sticky routing by episode, weight push, restart after the server dies."""

from __future__ import annotations

import sys

import pytest
import torch

from gift.rollout.vllm_server import ServerError, ServerProcess, VLLMServerBackend, free_port
from tests.rollout.fake_vllm_server import FakeVLLMServer, expected

PROMPTS = [[5, 6, 7, 8], [5, 6, 7, 9, 10], [11, 12]]


@pytest.mark.parametrize("token_ids_field", [True, False], ids=["token_ids", "token_id-strings"])
def test_sampled_ids_and_log_probs_come_back_exactly(token_ids_field):
    with FakeVLLMServer(token_ids_field=token_ids_field) as server:
        backend = VLLMServerBackend(urls=[server.url + "/v1"], stop_ids=[3, 4])
        samples = backend.generate(PROMPTS, 12, seeds=[100, 101, 102])
        backend.close()
        sent = server.completions()
    assert sorted(body["prompt"] for body in sent) == sorted(PROMPTS), "prompts travel as token ids"
    for prompt, seed, sample in zip(PROMPTS, [100, 101, 102], samples, strict=True):
        want = expected(prompt, seed, 12, [3, 4])
        assert sample.token_ids == want["ids"] and sample.logprobs == want["logprobs"]
        assert sample.finished == (want["finish"] == "stop")


def test_an_episode_always_goes_to_the_same_server():
    with FakeVLLMServer() as a, FakeVLLMServer() as b:
        backend = VLLMServerBackend(urls=[a.url, b.url])
        sessions = list(range(8))
        for turn in range(3):
            prompts = [[20 + s, 30 + turn] for s in sessions]
            backend.generate(prompts, 2, seeds=sessions, sessions=sessions)
        backend.close()
        seen = {url: {body["prompt"][0] - 20 for body in srv.completions()} for url, srv in ((0, a), (1, b))}
        counts = [len(a.completions()), len(b.completions())]
    assert seen[0] and seen[1], "both servers get episodes"
    assert not seen[0] & seen[1], "no episode is split between servers"
    assert sum(counts) == 24
    assert all(backend.server_for(s) == (0 if s in seen[0] else 1) for s in sessions)


def test_weights_reach_the_server_bit_for_bit_and_its_prefix_cache_is_dropped(tiny_model):
    model, _ = tiny_model
    with FakeVLLMServer() as server:
        backend = VLLMServerBackend(urls=[server.url])
        backend.sync_weights(model)
        after = backend.generate([PROMPTS[0]], 4, seeds=[7])[0]
        backend.close()
        state = server.state
        assert state.version == 1 and state.resets == 1
        assert state.weights.keys() == model.state_dict().keys()
        for name, tensor in model.state_dict().items():
            assert torch.equal(state.weights[name], tensor), name
    assert after.token_ids == expected(PROMPTS[0], 7, 4, [], version=1)["ids"], (
        "generation uses the new weights"
    )


def test_a_server_it_started_is_restarted_after_it_dies():
    port = free_port()
    command = [sys.executable, "-m", "tests.rollout.fake_vllm_server", "--port", str(port)]
    process = ServerProcess(command, port)
    backend = VLLMServerBackend(processes=[process], retries=2)
    try:
        first = backend.generate([PROMPTS[0]], 5, seeds=[1])[0]
        process.process.kill()
        process.process.wait()
        again = backend.generate([PROMPTS[0]], 5, seeds=[1])[0]
        assert backend.restarts == 1 and process.alive()
        assert again == first, "the restarted server answers the same request the same way"
    finally:
        backend.close()
    assert not process.alive()


def test_a_dead_url_fails_with_one_line_after_its_retries():
    backend = VLLMServerBackend(urls=[f"http://127.0.0.1:{free_port()}"], retries=1, timeout=2.0)
    with pytest.raises(ServerError) as err:
        backend.generate([PROMPTS[0]], 2, seeds=[0])
    backend.close()
    assert "/v1/completions" in str(err.value) and "\n" not in str(err.value)


def test_a_training_run_plays_on_two_servers_and_pushes_every_update(tiny_model_dir, tmp_path):
    """`rollout.backend=vllm-server`: a multi-turn game's turns stay on one server, and each server gets the
    weights before the first step and after every update (the last push equals the saved weights)."""
    from safetensors.torch import load_file

    from gift.config import load_config
    from gift.metrics import read_metrics
    from gift.trainer import train

    with FakeVLLMServer() as a, FakeVLLMServer() as b:
        overrides = [
            f"model.name={tiny_model_dir}", "task.preset=null", "task.mode=single", "task.games=[tictactoe-v0]",
            "task.groups=2", "task.group_size=2", "rollout.backend=vllm-server",
            f"rollout.vllm_server_urls=[{a.url},{b.url}]", "rollout.max_new_tokens=6", "rollout.max_context=1024",
            "algo.mini_batch_size=4", "algo.micro_batch_size=2", "algo.keep_ratio=1.0", "algo.lr=1e-2",
            f"train.run_dir={tmp_path}", "train.run_name=server", "train.progress=false", "train.plots=false",
            "train.tensorboard=false", "train.threads=1", "train.steps=2",
        ]  # fmt: skip
        run_dir = train(load_config(None, overrides))
        servers = [a.state, b.state]
        prompts = [[body["prompt"] for body in s.completions()] for s in (a, b)]
    assert [s.version for s in servers] == [3, 3], "one push before step 1, one after each of 2 updates"
    saved = load_file(run_dir / "checkpoints" / "step-000002" / "model.safetensors")
    for name, tensor in saved.items():
        assert torch.equal(servers[0].weights[name], tensor) and torch.equal(servers[1].weights[name], tensor)
    assert prompts[0] and prompts[1], "both servers played"
    every = prompts[0] + prompts[1]
    for mine in prompts:
        for q in mine:
            earlier = [p for p in every if len(p) < len(q) and q[: len(p)] == p]
            # A later turn finds an earlier turn of its episode on its own server (group mates share turn 1).
            assert not earlier or any(p in mine for p in earlier), "an episode moved to another server"
    assert any(len(p) > min(map(len, every)) for p in every), "some episodes played several turns"
    rows = read_metrics(run_dir / "metrics.jsonl")
    assert all("train/is_masked_frac" in r for r in rows), "auto correction is on with a vLLM backend"
