"""Shared-prefix log-probs: the same values, entropies and gradients as a plain forward, with fewer tokens run."""

from __future__ import annotations

import pytest
import torch

from gift.learner import _pad_batch, token_logprobs
from gift.rollout.engine import Trajectory
from gift.shared_prefix import can_share, plan_prefixes

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def tokens(seed: int, n: int) -> list[int]:
    return torch.randint(5, 400, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


def row(group: int, prompt: list[int], *turns: list[int]) -> Trajectory:
    """A trajectory: the prompt (masked), then alternating trained replies and masked environment turns."""
    ids, mask = list(prompt), [0] * len(prompt)
    for k, turn in enumerate(turns):
        ids += turn
        mask += [1 - k % 2] * len(turn)
    return Trajectory("toy", "toy", group, group, ids, mask, [0.0] * len(ids), len(prompt), [], {})


PROMPT_A, PROMPT_B, PROMPT_C = tokens(1, 40), tokens(2, 27), tokens(3, 33)
SCENARIOS = {
    # Two groups with prompts of different lengths; replies of different lengths (right padding).
    "two-groups": [
        row(1, PROMPT_A, tokens(10, 5)),
        row(1, PROMPT_A, tokens(11, 9)),
        row(2, PROMPT_B, tokens(12, 3)),
        row(2, PROMPT_B, tokens(13, 12)),
        row(1, PROMPT_A, tokens(14, 2)),
    ],
    # A group of one next to a group of three.
    "singleton": [
        row(1, PROMPT_A, tokens(20, 6)),
        row(1, PROMPT_A, tokens(21, 4)),
        row(1, PROMPT_A, tokens(22, 8)),
        row(3, PROMPT_C, tokens(23, 5)),
    ],
    # Replies that start with the same sampled tokens: sharing must still stop before the first trained one.
    "common-reply-start": [
        row(1, PROMPT_B, tokens(30, 4) + tokens(31, 3)),
        row(1, PROMPT_B, tokens(30, 4) + tokens(32, 5)),
        row(1, PROMPT_B, tokens(30, 4)),
    ],
    # Several turns: reply, environment, reply; the environment and later replies lie in the suffixes.
    "multi-turn": [
        row(1, PROMPT_C, tokens(40, 4), tokens(41, 6), tokens(42, 3)),
        row(1, PROMPT_C, tokens(43, 2), tokens(44, 6), tokens(45, 5)),
        row(2, PROMPT_A, tokens(46, 7), tokens(47, 2), tokens(48, 2)),
        row(2, PROMPT_A, tokens(49, 3)),
    ],
}


def run(model, trajs: list[Trajectory], share: bool) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Masked log-probs and entropies, and the gradients of a loss that uses both."""
    batch = _pad_batch(trajs, 0, CPU)
    model.zero_grad(set_to_none=True)
    logprobs, entropy = token_logprobs(model, batch, with_entropy=True, share=share)
    mask = batch["loss_mask"]
    weights = torch.linspace(-1.0, 1.0, mask.numel()).reshape(mask.shape)
    ((logprobs * mask * weights).sum() + 0.3 * (entropy * mask).sum()).backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    assert logprobs.shape == entropy.shape == mask.shape
    return logprobs * mask, entropy * mask, grads


def assert_same(model, trajs: list[Trajectory]) -> None:
    plain_lp, plain_ent, plain_grads = run(model, trajs, share=False)
    lp, ent, grads = run(model, trajs, share=True)
    torch.testing.assert_close(lp, plain_lp, rtol=0, atol=1e-5)
    torch.testing.assert_close(ent, plain_ent, rtol=0, atol=1e-5)
    assert plain_grads and grads.keys() == plain_grads.keys()
    for name, grad in plain_grads.items():
        assert grad.abs().max() > 0, name
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-5, msg=name)


class TokenCounter:
    """Shapes of every input the model's embedding sees: which forwards ran, on how many tokens."""

    def __init__(self, model) -> None:
        self.shapes: list[tuple[int, int]] = []
        self._hook = model.get_input_embeddings().register_forward_hook(self._record)

    def _record(self, _module, args, _out) -> None:
        self.shapes.append(tuple(args[0].shape))

    def close(self) -> None:
        self._hook.remove()


# ------------------------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_shared_prefixes_give_the_plain_log_probs_entropies_and_gradients(tiny_model, name):
    model, _ = tiny_model
    trajs = SCENARIOS[name]
    batch = _pad_batch(trajs, 0, CPU)
    assert plan_prefixes(batch["input_ids"], batch["attention_mask"], batch["loss_mask"]) is not None
    assert_same(model, trajs)


def test_lora_adapters_get_the_plain_gradients(tiny_model):
    from peft import LoraConfig, get_peft_model

    model, _ = tiny_model
    lora = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
    )
    for name, param in lora.named_parameters():
        if "lora_B" in name:  # B starts at 0, which would leave A without gradient
            torch.nn.init.normal_(param, std=0.1)
    assert can_share(lora)
    counter = TokenCounter(lora)
    try:
        _, _, grads = run(lora, SCENARIOS["two-groups"], share=True)
    finally:
        counter.close()
    assert [rows for rows, _ in counter.shapes] == [2, 5], "one pass of the prompts, one of the rows"
    assert grads and all("lora_" in name for name in grads), "only the adapters train"
    assert_same(lora, SCENARIOS["two-groups"])


def test_without_gradients_the_values_match_too(tiny_model):
    model, _ = tiny_model
    batch = _pad_batch(SCENARIOS["multi-turn"], 0, CPU)
    with torch.no_grad():
        plain, _ = token_logprobs(model, batch, with_entropy=False, share=False)
        shared, entropy = token_logprobs(model, batch, with_entropy=False, share=True)
    assert entropy is None
    mask = batch["loss_mask"]
    torch.testing.assert_close(shared * mask, plain * mask, rtol=0, atol=1e-5)


# ---------------------------------------------------------------------------------- what actually runs
def test_each_prefix_runs_once_and_the_rows_run_only_their_suffixes(tiny_model):
    model, _ = tiny_model
    trajs = SCENARIOS["two-groups"]
    batch = _pad_batch(trajs, 0, CPU)
    counter = TokenCounter(model)
    try:
        token_logprobs(model, batch, with_entropy=True, share=True)
        shared = list(counter.shapes)
        counter.shapes.clear()
        token_logprobs(model, batch, with_entropy=True, share=False)
        plain = list(counter.shapes)
    finally:
        counter.close()
    longest_reply = max(len(t.input_ids) - t.prompt_len for t in trajs)
    # One batch of the two distinct prompts (each up to its last token), then the five rows from there on.
    assert shared == [(2, len(PROMPT_A) - 1), (5, longest_reply + 1)]
    assert plain == [tuple(batch["input_ids"].shape)]
    assert sum(a * b for a, b in shared) < 0.6 * sum(a * b for a, b in plain)


def test_plan_clusters_by_prompt_and_stops_before_the_first_trained_token():
    batch = _pad_batch(SCENARIOS["two-groups"] + SCENARIOS["common-reply-start"][:2], 0, CPU)
    plan = plan_prefixes(batch["input_ids"], batch["attention_mask"], batch["loss_mask"])
    assert plan is not None
    groups = [plan.cluster[i] for i in range(7)]
    assert groups[0] == groups[1] == groups[4] and groups[2] == groups[3] == groups[5] == groups[6]
    assert len(set(groups)) == 2
    # Group B's rows share their prompt and the start of two replies, but the replies are trained.
    assert plan.shared[groups[0]] == len(PROMPT_A) - 1
    assert plan.shared[groups[2]] == len(PROMPT_B) - 1


def test_nothing_worth_sharing_gives_no_plan():
    distinct = [row(g, tokens(100 + g, 30), tokens(200 + g, 5)) for g in range(4)]
    batch = _pad_batch(distinct, 0, CPU)
    assert plan_prefixes(batch["input_ids"], batch["attention_mask"], batch["loss_mask"]) is None
    one = _pad_batch(SCENARIOS["two-groups"][:1], 0, CPU)
    assert plan_prefixes(one["input_ids"], one["attention_mask"], one["loss_mask"]) is None
    from_start = [row(1, [7], tokens(300, 6)), row(1, [7], tokens(301, 6))]
    early = _pad_batch(from_start, 0, CPU)
    assert plan_prefixes(early["input_ids"], early["attention_mask"], early["loss_mask"]) is None


def test_activation_checkpointing_falls_back_to_one_plain_forward(tiny_model):
    model, _ = tiny_model
    model.activation_checkpointing_enable()
    assert not can_share(model)
    batch = _pad_batch(SCENARIOS["two-groups"], 0, CPU)
    counter = TokenCounter(model)
    try:
        token_logprobs(model, batch, with_entropy=True, share=True)
    finally:
        counter.close()
    assert counter.shapes == [tuple(batch["input_ids"].shape)]


class NoCache(torch.nn.Module):
    """A causal LM whose forward takes no cache (it would swallow one in **kwargs and run without it)."""

    def __init__(self, inner) -> None:
        super().__init__()
        self.inner, self.config = inner, inner.config

    def forward(self, input_ids, attention_mask=None, **kwargs):
        return self.inner(input_ids=input_ids, attention_mask=attention_mask)


def test_a_model_without_a_cache_argument_takes_the_plain_path(tiny_model):
    model, _ = tiny_model
    wrapped = NoCache(model)
    assert can_share(model) and not can_share(wrapped)
    batch = _pad_batch(SCENARIOS["two-groups"], 0, CPU)
    with torch.no_grad():
        plain, _ = token_logprobs(model, batch, with_entropy=False, share=False)
        fallback, _ = token_logprobs(wrapped, batch, with_entropy=False, share=True)
    torch.testing.assert_close(fallback, plain)
