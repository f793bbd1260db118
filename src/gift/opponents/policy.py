"""Self-play: the opponent is a frozen copy of the policy, refreshed by the trainer every K steps.

    opponent = PolicyOpponent.from_model(policy_model, tokenizer)   # deep copy, its own HFBackend
    game = make("tictactoe-v0", opponent=opponent)
    ...
    if step % K == 0:
        opponent.refresh(policy_model)                               # or a state dict

Each request is answered as a single-turn chat (system prompt, the game's opponent prompt and the format
instruction). Moves are asked for from inside `game.step`; when the rollout engine steps a turn's games in
threads (it does when given `opponent.batcher`), all games waiting for a move are answered by one `generate` call
(`gift.opponents.batching.MoveBatcher`); otherwise each move is its own call. They are not batched with the
policy's own replies: those are generated before the games step. Torch is only needed once a model-backed backend
is used.
"""

from __future__ import annotations

import copy
from typing import Any

from gift.games.protocol import FORMAT_INSTRUCTION
from gift.opponents.base import Opponent, OpponentError, OpponentRequest
from gift.opponents.batching import MoveBatcher
from gift.rollout.backends import GenerationBackend, HFBackend
from gift.rollout.transcript import DEFAULT_SYSTEM_PROMPT, ChatCodec, first_messages


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
        self.batcher = MoveBatcher(backend)
        self.codec = ChatCodec(tokenizer)
        self.system_prompt = system_prompt
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.refreshes = 0

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
        text = request.prompt
        if request.feedback:
            text = f"{text}\n\n{request.feedback}"
        text = f"{text}\n\n{FORMAT_INSTRUCTION}"
        return self.codec.prompt_ids(first_messages(self.system_prompt, text))

    def act(self, request: OpponentRequest) -> str:
        # The seed comes from the episode's random stream, so a seeded episode replays the same opponent moves.
        seed = request.rng.randrange(2**31)
        sample = self.batcher.generate(
            self.prompt_ids(request), self.max_new_tokens, self.temperature, self.top_p, seed
        )
        reply = self.codec.decode_reply(sample.token_ids)
        if not reply.strip():
            raise OpponentError("the policy opponent produced an empty reply")
        return reply

    def refresh(self, source: Any) -> None:
        """Load the policy's current weights (a model or a state dict) into the frozen copy."""
        self.backend.sync_weights(source)
        self.refreshes += 1
