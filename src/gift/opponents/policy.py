"""Self-play: the opponent is a frozen copy of the policy, refreshed by the trainer every K steps.

    opponent = PolicyOpponent.from_model(policy_model, tokenizer)   # deep copy, its own HFBackend
    game = make("tictactoe-v0", opponent=opponent)
    ...
    if step % K == 0:
        opponent.refresh(policy_model)                               # or a state dict

Each request is answered as a fresh single-turn chat: the system prompt and the request's prompt, which
`gift.prompts` composed with its one instruction and feedback. The episode driver collects the requests of
every game waiting for this player and answers them in one `generate_replies` call; `act` answers one (the
single-agent view). Every request samples with its own seed, drawn from its episode's generator, so a
seeded episode replays the same moves whatever else shares the call. Torch is only needed once a model-backed
backend is used.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from gift.opponents.base import Opponent, OpponentError, OpponentRequest
from gift.prompts import DEFAULT_SYSTEM_PROMPT, first_messages
from gift.rollout.backends import GenerationBackend, HFBackend
from gift.rollout.transcript import ChatCodec


class PolicyOpponent(Opponent):
    """Answers `OpponentRequest.prompt` with a (frozen) copy of the policy through a generation backend."""

    name = "policy"

    def __init__(
        self,
        backend: GenerationBackend,
        tokenizer: Any,
        *,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        max_new_tokens: int = 200,
        temperature: float = 1.0,
        top_p: float = 1.0,
    ) -> None:
        super().__init__()
        self.backend = backend
        self.codec = ChatCodec(tokenizer)
        self.system_prompt = system_prompt
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.refreshes = 0
        self.calls = 0
        self.requests = 0

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, *, max_batch: int = 1, **options: Any) -> PolicyOpponent:
        """A frozen deep copy of `model` (eval mode, no gradients) behind its own `HFBackend`."""
        frozen = copy.deepcopy(model)
        frozen.eval()
        frozen.requires_grad_(False)
        # Opponent prompts are fresh single-turn chats: keep no KV between calls (it would only hold memory).
        backend = HFBackend(frozen, tokenizer, max_batch=max_batch, kv_reuse=False)
        return cls(backend, tokenizer, **options)

    def prompt_ids(self, request: OpponentRequest) -> list[int]:
        return self.codec.prompt_ids(first_messages(self.system_prompt, request.prompt))

    def act(self, request: OpponentRequest) -> str:
        reply = self.generate_replies([request])[0]
        if isinstance(reply, OpponentError):
            raise reply
        return reply

    def generate_replies(self, requests: Sequence[OpponentRequest]) -> list[str | OpponentError]:
        """Every request in one backend call; an empty reply is an `OpponentError` (retried by the policy)."""
        if not requests:
            return []
        # The seeds come from the episodes' random streams, so a seeded episode replays the same moves.
        seeds = [request.rng.randrange(2**31) for request in requests]
        prompts = [self.prompt_ids(request) for request in requests]
        options: dict[str, Any] = {"temperature": self.temperature, "top_p": self.top_p}
        if getattr(self.backend, "per_request_seeds", False):
            options["seeds"] = seeds
        else:
            options["seed"] = seeds[0]
        samples = self.backend.generate(prompts, self.max_new_tokens, **options)
        self.calls += 1
        self.requests += len(requests)
        replies: list[str | OpponentError] = []
        for sample in samples:
            reply = self.codec.decode_reply(sample.token_ids)
            replies.append(reply if reply.strip() else OpponentError("the policy opponent produced an empty reply"))
        return replies

    def refresh(self, source: Any) -> None:
        """Load the policy's current weights (a model or a state dict) into the frozen copy."""
        self.backend.sync_weights(source)
        self.refreshes += 1
