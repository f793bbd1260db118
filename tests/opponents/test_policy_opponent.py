"""The self-play opponent: a frozen copy of the policy that answers opponent requests and can be refreshed."""

from __future__ import annotations

import random

import pytest
import torch

from gift.games.protocol import FORMAT_INSTRUCTION
from gift.opponents import OpponentError, OpponentRequest, ask_with_retries
from gift.opponents.policy import PolicyOpponent
from gift.prompts import OPPONENT_INSTRUCTION, opponent_prompt
from gift.rollout.backends import GenerationBackend, HFBackend, Sample


class FixedBackend(GenerationBackend):
    """Always answers with the same ids; records the prompts it was given."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids
        self.prompts: list[list[int]] = []

    def generate(self, prompts, max_new_tokens, temperature=1.0, top_p=1.0, seed=None):
        self.prompts.extend(prompts)
        return [
            Sample(token_ids=list(self.ids), logprobs=[0.0] * len(self.ids), finished=True) for _ in prompts
        ]


def request(feedback: str = "", seed: int = 0) -> OpponentRequest:
    return OpponentRequest(
        game="tictactoe-v0",
        seat=2,
        prompt=opponent_prompt("Board 1 2 3 | X . O. Your move as (row, col).", feedback),
        state={},
        rng=random.Random(seed),
        feedback=feedback,
    )


def test_answers_a_request_with_the_copys_sample(tiny_model):
    model, tok = tiny_model
    opponent = PolicyOpponent.from_model(model, tok, max_new_tokens=8)
    reply = opponent.act(request(seed=1))
    prompt = opponent.prompt_ids(request())
    # The opponent's seed is the episode rng's next draw.
    direct = HFBackend(model, tok).generate([prompt], 8, seeds=[random.Random(1).randrange(2**31)])[0]
    assert reply == tok.decode(direct.token_ids, skip_special_tokens=True) and reply.strip()
    text = tok.decode(prompt)
    # The prompt is the composed request text, with its one instruction, and nothing appended by the player.
    assert request().prompt in text and text.count(OPPONENT_INSTRUCTION) == 1 and FORMAT_INSTRUCTION not in text
    assert text.endswith("<|im_start|>assistant\n")


def test_sampled_replies_follow_the_episode_rng(tiny_model):
    model, tok = tiny_model
    opponent = PolicyOpponent.from_model(model, tok, max_new_tokens=8)
    assert opponent.act(request(seed=5)) == opponent.act(request(seed=5))


def test_feedback_is_shown_and_works_through_the_retry_policy(tiny_model):
    _, tok = tiny_model
    backend = FixedBackend(tok("<answer> (1, 2) </answer>", add_special_tokens=False)["input_ids"])
    opponent = PolicyOpponent(backend, tok)
    seen = []

    def make_request(attempt, feedback):
        return request(feedback=feedback)

    def accept(reply):
        seen.append(reply)
        return reply if len(seen) == 2 else None

    assert ask_with_retries(opponent, make_request, accept) == "<answer> (1, 2) </answer>"
    assert opponent.stats.calls == 2 and opponent.stats.invalid == 1
    assert "not a legal move" in tok.decode(backend.prompts[1])
    assert "not a legal move" not in tok.decode(backend.prompts[0])


def test_an_empty_reply_is_an_opponent_error(tiny_model):
    _, tok = tiny_model
    opponent = PolicyOpponent(FixedBackend([tok.eos_token_id]), tok)
    with pytest.raises(OpponentError):
        opponent.act(request())
    assert ask_with_retries(opponent, lambda a, f: request(), lambda r: r) is None
    assert opponent.stats.errors == 3 and opponent.stats.forfeits == 1


def test_the_copy_is_frozen_until_refreshed(tiny_model):
    model, tok = tiny_model
    opponent = PolicyOpponent.from_model(model, tok, max_new_tokens=8, temperature=0)
    frozen = opponent.backend.model
    assert frozen is not model and not any(p.requires_grad for p in frozen.parameters())
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5).add_(0.01)
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())
    opponent.refresh(model)
    assert opponent.refreshes == 1
    assert all(torch.equal(model.state_dict()[k], v) for k, v in frozen.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())  # the policy itself stays trainable
    opponent.refresh({k: v.clone() for k, v in before.items()})  # a state dict works as well
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())
