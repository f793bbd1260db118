"""Cross-turn KV reuse in HFBackend: same tokens and log-probs as a full prefill, fewer prefilled tokens, never stale."""

from __future__ import annotations

import torch

from gift.games.registry import make
from gift.rollout import RolloutConfig, run_rollouts
from gift.rollout.backends import HFBackend
from gift.rollout.kv_reuse import supports_reuse
from tests.rollout.test_backends import forward_logprobs


def random_prompts(lengths, seed=0, vocab=400):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(5, vocab, (n,), generator=g).tolist() for n in lengths]


def play_turns(backend, prompts, turns, max_new_tokens=6, temperature=0.0, seed=None, extras_seed=1):
    """Generate, then extend every prompt by its reply and some 'environment' tokens, `turns` times."""
    history = []
    prompts = [list(p) for p in prompts]
    for turn in range(turns):
        samples = backend.generate(
            prompts, max_new_tokens, temperature=temperature, seed=None if seed is None else seed + turn
        )
        history.append((prompts, samples))
        extras = random_prompts(
            [1 + (3 * i + turn) % 7 for i in range(len(prompts))], seed=extras_seed + turn
        )
        prompts = [p + s.token_ids + e for p, s, e in zip(prompts, samples, extras, strict=True)]
    return history


def test_the_tiny_model_takes_the_reuse_path(tiny_model):
    model, tok = tiny_model
    assert supports_reuse(model)
    assert HFBackend(model, tok).store is not None
    assert HFBackend(model, tok, kv_reuse=False).store is None
    assert HFBackend(model, tok, kv_cache_mb=0).store is None


def test_greedy_multi_turn_equals_full_prefill_and_prefills_less(tiny_model):
    model, tok = tiny_model
    prompts = random_prompts([7, 12, 12, 30, 3])
    prompts[2] = list(prompts[1])  # two rows of one group: identical first prompts
    reuse = HFBackend(model, tok, max_batch=8)
    plain = HFBackend(model, tok, max_batch=8, kv_reuse=False)
    with_reuse = play_turns(reuse, prompts, turns=4)
    without = play_turns(plain, prompts, turns=4)
    for (pa, sa), (pb, sb) in zip(with_reuse, without, strict=True):
        assert pa == pb
        for x, y in zip(sa, sb, strict=True):
            assert x.token_ids == y.token_ids
            assert x.finished == y.finished
            assert max(abs(u - v) for u, v in zip(x.logprobs, y.logprobs, strict=True)) < 1e-4
    store = reuse.store
    # Every row of turns 2..4 found its previous prompt + reply in the store.
    assert store.hits == 3 * len(prompts)
    total_prompt_tokens = sum(len(p) for prompts_, _ in with_reuse for p in prompts_)
    # Prefilled: turn 1's distinct prompts once (the duplicate only its last token), later only what the reply's
    # decoding did not already feed (its last token) and the new environment tokens.
    assert store.prefilled_tokens < total_prompt_tokens / 2
    first_turn = sum(len(p) - 1 for p in {tuple(p) for p in prompts}) + len(prompts)
    later = sum(
        len(b) - len(a) - (len(s.token_ids) - 1)
        for (pa, sa), (pb, _) in zip(with_reuse, with_reuse[1:], strict=False)
        for a, s, b in zip(pa, sa, pb, strict=True)
    )
    assert store.prefilled_tokens == first_turn + later


def test_sampled_logprobs_stay_exact_under_reuse(tiny_model):
    model, tok = tiny_model
    backend = HFBackend(model, tok, max_batch=3)  # several chunks per call, each reusing its rows' entries
    history = play_turns(backend, random_prompts([9, 4, 15, 15, 6]), turns=3, temperature=1.0, seed=11)
    assert backend.store.hits > 0
    for prompts, samples in history:
        for prompt, sample in zip(prompts, samples, strict=True):
            expected = forward_logprobs(model, prompt, sample.token_ids, 1.0)
            assert max(abs(a - b) for a, b in zip(sample.logprobs, expected, strict=True)) < 1e-4


def test_rows_that_stop_early_cache_only_what_was_fed(tiny_model):
    model, tok = tiny_model
    prompts = random_prompts([8, 8, 20])
    free = HFBackend(model, tok, kv_reuse=False).generate(prompts, 8, temperature=0.0)
    stop = free[0].token_ids[2]  # row 0 stops after 3 tokens, the others may run on
    reuse = HFBackend(model, tok, stop_ids=[stop])
    plain = HFBackend(model, tok, stop_ids=[stop], kv_reuse=False)
    a = play_turns(reuse, prompts, turns=3, max_new_tokens=8)
    b = play_turns(plain, prompts, turns=3, max_new_tokens=8)
    assert a[0][1][0].finished and len(a[0][1][0].token_ids) <= 3
    for (_, sa), (_, sb) in zip(a, b, strict=True):
        assert [s.token_ids for s in sa] == [s.token_ids for s in sb]
        for x, y in zip(sa, sb, strict=True):
            assert max(abs(u - v) for u, v in zip(x.logprobs, y.logprobs, strict=True)) < 1e-4
    assert reuse.store.hits == 2 * len(prompts)


def test_changed_weights_never_reuse_stale_keys(tiny_model):
    model, tok = tiny_model
    backend = HFBackend(model, tok)
    prompts = random_prompts([10, 10])
    first = backend.generate(prompts, 5, temperature=0.0)
    assert len(backend.store) == 2
    with torch.no_grad():  # an in-place update, as an optimizer step makes
        for p in model.parameters():
            p.mul_(1.5)
    extended = [p + s.token_ids + [7, 8] for p, s in zip(prompts, first, strict=True)]
    after = backend.generate(extended, 5, temperature=0.0)
    assert backend.store.hits == 0
    for prompt, sample in zip(extended, after, strict=True):
        expected = forward_logprobs(model, prompt, sample.token_ids, 1.0)
        assert max(abs(a - b) for a, b in zip(sample.logprobs, expected, strict=True)) < 1e-4


def test_unrelated_prompts_and_a_tiny_budget_fall_back_to_full_prefill(tiny_model):
    model, tok = tiny_model
    backend = HFBackend(model, tok)
    backend.store.max_bytes = 4096  # room for a few cached tokens only: entries get evicted
    prompts = random_prompts([12, 30])
    history = play_turns(backend, prompts, turns=3, temperature=0.0)
    assert backend.store.bytes <= 4096
    reference = play_turns(HFBackend(model, tok, kv_reuse=False), prompts, turns=3, temperature=0.0)
    assert [[s.token_ids for s in ss] for _, ss in history] == [
        [s.token_ids for s in ss] for _, ss in reference
    ]
    # A prompt that extends nothing in the store is prefilled from scratch.
    fresh = HFBackend(model, tok)
    fresh.generate(random_prompts([10], seed=5), 3, temperature=0.0)
    fresh.generate(random_prompts([14], seed=6), 3, temperature=0.0)
    assert fresh.store.hits == 0


def test_run_rollouts_is_unchanged_by_reuse_and_frees_the_cache(tiny_model):
    model, tok = tiny_model
    cfg = RolloutConfig(max_new_tokens=6, max_context=2048, temperature=0.0)
    seeds = [3, 3, 4, 4]
    out = {}
    backends = {}
    for reuse in (True, False):
        backends[reuse] = HFBackend(model, tok, kv_reuse=reuse)
        games = [make("tictactoe-v0") for _ in seeds]
        out[reuse] = run_rollouts(games, seeds, seeds, backends[reuse], tok, cfg)
    for a, b in zip(out[True], out[False], strict=True):
        assert a.input_ids == b.input_ids
        assert a.loss_mask == b.loss_mask
        assert max(abs(u - v) for u, v in zip(a.sampled_logprobs, b.sampled_logprobs, strict=True)) < 1e-4
    assert max(t.num_turns for t in out[True]) > 1
    assert backends[True].store.hits > 0
    assert len(backends[True].store) == 0 and backends[True].store.bytes == 0


def test_sliding_window_models_fall_back(tiny_model_dir):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.use_sliding_window = True
    config.sliding_window = 16
    config.layer_types = ["sliding_attention"] * config.num_hidden_layers
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, config=config)
    assert not supports_reuse(model)
    backend = HFBackend(model, AutoTokenizer.from_pretrained(tiny_model_dir))
    assert backend.store is None
    assert len(backend.generate(random_prompts([5, 9]), 3, temperature=0.0)) == 2
