"""HFBackend on the tiny model: shapes, stopping, padding, log-probs, seeding; VLLMBackend's CPU guard."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from gift.errors import ConfigError
from gift.rollout.backends import HFBackend
from gift.rollout.vllm_backend import VLLMBackend


def prompts_of(tok):
    texts = [
        "<|im_start|>user\nTurn 1: pick a cell<|im_end|>\n<|im_start|>assistant\n",
        "Reward: 1",
        "Board 1 2 3 | X . O",
    ]
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def forward_logprobs(model, prompt, tokens, temperature):
    with torch.no_grad():
        logits = model(torch.tensor([prompt + tokens])).logits[0].float()
    steps = torch.log_softmax(logits[len(prompt) - 1 : len(prompt) - 1 + len(tokens)] / temperature, dim=-1)
    return steps[torch.arange(len(tokens)), torch.tensor(tokens)].tolist()


def test_shapes_and_unfinished_rows_fill_the_cap(tiny_model):
    model, tok = tiny_model
    prompts = prompts_of(tok)
    samples = HFBackend(model, tok).generate(prompts, 10, seed=1)
    assert len(samples) == len(prompts)
    for s in samples:
        assert len(s.token_ids) == len(s.logprobs) <= 10
        assert s.finished == (s.token_ids[-1] == tok.eos_token_id)
        if not s.finished:
            assert len(s.token_ids) == 10
        assert all(lp <= 0.0 for lp in s.logprobs)


def test_stop_token_ends_a_row_and_padding_is_stripped(tiny_model):
    model, tok = tiny_model
    prompts = prompts_of(tok)
    free = HFBackend(model, tok).generate(prompts, 8, seed=5)
    # A stop token that first appears mid-way through some row's continuation (same seed → same draws).
    row, k = next(
        (r, k) for r, s in enumerate(free) for k in range(1, 7) if s.token_ids[k] not in s.token_ids[:k]
    )
    stop = free[row].token_ids[k]
    backend = HFBackend(model, tok, stop_ids=[stop])
    assert backend.stop_ids == [tok.eos_token_id, stop]
    stopped = backend.generate(prompts, 8, seed=5)
    assert stopped[row].token_ids == free[row].token_ids[: k + 1]
    assert stopped[row].finished and len(stopped[row].token_ids) < 8
    for before, after in zip(free, stopped, strict=True):
        # Each row is its continuation up to and including its first stop token: no pad ids after it.
        cut = next((j + 1 for j, t in enumerate(before.token_ids) if t in (stop, tok.eos_token_id)), None)
        assert after.token_ids == before.token_ids[:cut]
        assert after.logprobs == pytest.approx(before.logprobs[:cut])
        assert after.finished == (cut is not None)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_match_a_separate_forward_pass(tiny_model, temperature):
    model, tok = tiny_model
    prompts = prompts_of(tok)
    samples = HFBackend(model, tok).generate(prompts, 12, temperature=temperature, seed=3)
    for prompt, sample in zip(prompts, samples, strict=True):
        expected = forward_logprobs(model, prompt, sample.token_ids, temperature)
        assert sample.logprobs == pytest.approx(expected, abs=1e-4)


def test_the_models_own_sampling_defaults_do_not_leak_in(tiny_model):
    model, tok = tiny_model
    prompts = prompts_of(tok)
    plain = HFBackend(model, tok).generate(prompts, 12, seed=4)
    config = model.generation_config
    config.do_sample, config.temperature, config.top_k, config.top_p, config.repetition_penalty = (
        True,
        0.7,
        2,
        0.5,
        1.5,
    )
    tuned = HFBackend(model, tok).generate(prompts, 12, seed=4)
    assert [s.token_ids for s in tuned] == [s.token_ids for s in plain]
    for prompt, sample in zip(prompts, tuned, strict=True):
        assert sample.logprobs == pytest.approx(
            forward_logprobs(model, prompt, sample.token_ids, 1.0), abs=1e-4
        )


def test_greedy_is_deterministic_and_independent_of_batching(tiny_model):
    model, tok = tiny_model
    prompts = prompts_of(tok)
    backend = HFBackend(model, tok, max_batch=8)
    first = [s.token_ids for s in backend.generate(prompts, 10, temperature=0)]
    assert first == [s.token_ids for s in backend.generate(prompts, 10, temperature=0)]
    one_by_one = HFBackend(model, tok, max_batch=1).generate(prompts, 10, temperature=0)
    assert first == [s.token_ids for s in one_by_one]
    for prompt, tokens in zip(prompts, first, strict=True):
        with torch.no_grad():
            logits = model(torch.tensor([prompt + tokens])).logits[0]
        assert logits[len(prompt) - 1 : -1].argmax(-1).tolist()[: len(tokens)] == tokens


def test_seeded_sampling_is_reproducible_and_leaves_the_global_rng_alone(tiny_model):
    model, tok = tiny_model
    prompts = prompts_of(tok)
    backend = HFBackend(model, tok, max_batch=2)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = [s.token_ids for s in backend.generate(prompts, 6, seed=7)]
    assert torch.equal(state, torch.get_rng_state())
    assert a == [s.token_ids for s in backend.generate(prompts, 6, seed=7)]
    assert a != [s.token_ids for s in backend.generate(prompts, 6, seed=8)]
    # Unseeded calls draw from the global stream, so two of them differ.
    b = [s.token_ids for s in backend.generate(prompts, 6)]
    assert b != [s.token_ids for s in backend.generate(prompts, 6)]


def test_sync_weights_is_a_noop_for_the_same_model_and_copies_another(tiny_model):
    model, tok = tiny_model
    import copy

    frozen = copy.deepcopy(model)
    backend = HFBackend(frozen, tok)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    backend.sync_weights(frozen)
    assert not torch.equal(frozen.lm_head.weight, model.lm_head.weight)
    backend.sync_weights(model.state_dict())
    for (name, a), b in zip(frozen.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_bad_options_are_config_errors(tiny_model):
    model, tok = tiny_model
    with pytest.raises(ConfigError, match="max_batch"):
        HFBackend(model, tok, max_batch=0)
    with pytest.raises(ConfigError, match="temperature"):
        HFBackend(model, tok).generate(prompts_of(tok), 4, temperature=-1)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        HFBackend(model, tok).generate(prompts_of(tok), 0)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_vllm_backend_without_vllm_says_to_install_the_gpu_extra():
    with pytest.raises(ConfigError, match="requirements-gpu.txt") as err:
        VLLMBackend("some/model")
    assert "\n" not in str(err.value)


def test_merged_hf_weights_of_a_lora_model_equal_merge_and_unload_and_leave_it_untouched(tiny_model):
    import copy

    from peft import LoraConfig, get_peft_model

    from gift.rollout.backends import merged_hf_weights

    model, _ = tiny_model
    plain_names = set(model.state_dict())
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_()  # B starts at zero: make the adapter change the weights
    before = {k: v.clone() for k, v in peft_model.state_dict().items()}
    merged = dict(merged_hf_weights(peft_model))
    reference = copy.deepcopy(peft_model).merge_and_unload().state_dict()
    assert set(merged) == set(reference) == plain_names
    for name, value in reference.items():
        torch.testing.assert_close(merged[name], value, rtol=1e-5, atol=1e-6)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(
        merged[q], before["base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"]
    )
    for key, value in peft_model.state_dict().items():  # the peft model is untouched
        assert torch.equal(value, before[key])
    # A plain model passes through unchanged.
    assert {n for n, _ in merged_hf_weights(copy.deepcopy(peft_model).merge_and_unload())} == plain_names
