"""The policy's chat transcript and its token bookkeeping (token-in/token-out).

Layout of one trajectory (the paper's rollout format, in our own wording):

    system     the system prompt
    user       "Turn 1:" / observation / "You have N actions left." / format instruction
    assistant  reply 1 (the sampled tokens, kept verbatim)
    user       "Reward: r" and then the next turn block, in the same message
    assistant  reply 2
    ...        (no user message after the last reply)

Why token-in/token-out: re-rendering a chat after every turn and re-tokenising it does not reproduce the tokens the
model actually sampled — BPE merges can differ at message boundaries, and templates such as Qwen3's rewrite earlier
assistant turns (they drop old `<think>` blocks). The training sequence must be exactly what the model saw and
emitted, so `ChatCodec` only ever tokenises *environment* text: the prompt, and for each turn the text the chat
template puts after an assistant message (end-of-turn marker, the next user message, the generation prompt).
That text is found generically by rendering the template with a placeholder assistant message and cutting after it.

Deviation from the paper: its transcript stores the re-packed parsed reply (`<think>…</think><answer>…</answer>`);
we keep the raw sampled tokens, so the tokens trained on are the tokens sampled.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from gift.errors import ConfigError
from gift.prompts import (  # noqa: F401 - the chat's text pieces, re-exported for the rollout
    DEFAULT_SYSTEM_PROMPT,
    feedback_message,
    first_messages,
    format_instruction,
    format_reward,
    turn_block,
)

_PLACEHOLDER = "\u2063GIFTREPLYPLACEHOLDER\u2063"
"""An assistant content that no template alters and no model writes, used to locate the text around a reply."""


def stop_token_ids(tokenizer: Any, extra: Iterable[int] = ()) -> list[int]:
    """The tokenizer's eos id(s) plus `extra`, deduplicated, in order."""
    ids: list[int] = []
    eos = getattr(tokenizer, "eos_token_id", None)
    for value in [*(eos if isinstance(eos, list | tuple) else [eos]), *extra]:
        if value is not None and int(value) not in ids:
            ids.append(int(value))
    return ids


class ChatCodec:
    """Turns chat messages into token ids for the prompt and for the environment text between replies.

    The tokenizer must carry a chat template. Rendered text is tokenised without adding special tokens: the
    template already contains any begin-of-sequence marker it wants.
    """

    def __init__(self, tokenizer: Any) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError("tokenizer has no chat_template; the rollout needs a chat model's tokenizer")
        self.tokenizer = tokenizer
        self.turn_end_id, self.turn_end_text = self._find_turn_end()

    # ------------------------------------------------------------------ rendering
    def render(self, messages: Sequence[dict[str, str]], add_generation_prompt: bool) -> str:
        text = self.tokenizer.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
        )
        if not isinstance(text, str):
            raise ConfigError("tokenizer.apply_chat_template(tokenize=False) did not return text")
        return text

    def encode(self, text: str) -> list[int]:
        """Environment text → ids (never used on sampled text)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode_reply(self, token_ids: Sequence[int]) -> str:
        """The reply text passed to the game: special tokens (the end-of-turn marker) are dropped."""
        return self.tokenizer.decode(list(token_ids), skip_special_tokens=True)

    def text_after_reply(self, history: Sequence[dict[str, str]], next_user: str | None) -> str:
        """What the template writes after an assistant reply that follows `history`.

        With `next_user`, that is the end of the assistant turn, the next user message and the generation prompt;
        without it (episode over) just the end of the assistant turn.
        """
        messages = [*history, {"role": "assistant", "content": _PLACEHOLDER}]
        if next_user is not None:
            messages.append({"role": "user", "content": next_user})
        text = self.render(messages, add_generation_prompt=next_user is not None)
        cut = text.rfind(_PLACEHOLDER)
        if cut < 0:
            raise ConfigError("the chat template dropped the assistant message; cannot place replies in it")
        return text[cut + len(_PLACEHOLDER) :]

    # ------------------------------------------------------------------ token ids
    def prompt_ids(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """The ids the first reply is generated from (with the generation prompt)."""
        return self.encode(self.render(messages, add_generation_prompt=True))

    def env_ids(
        self, history: Sequence[dict[str, str]], reply_ids: Sequence[int], next_user: str | None
    ) -> list[int]:
        """The environment ids that follow the sampled `reply_ids` (loss mask 0).

        When the reply already ends with the template's end-of-turn token (it stopped at eos), that token is not
        repeated; when it was cut by the length cap, the end-of-turn token is part of these environment ids. After
        the last reply (`next_user` None) only the missing end-of-turn token, if any, is returned.
        """
        ends_turn = bool(reply_ids) and self.turn_end_id is not None and reply_ids[-1] == self.turn_end_id
        if next_user is None:
            return [] if ends_turn or self.turn_end_id is None else [self.turn_end_id]
        text = self.text_after_reply(history, next_user)
        if ends_turn and self.turn_end_text and text.startswith(self.turn_end_text):
            text = text[len(self.turn_end_text) :]
        return self.encode(text)

    def _find_turn_end(self) -> tuple[int | None, str | None]:
        """The single token the template closes an assistant turn with (e.g. <|im_end|>), if there is one."""
        after = self.text_after_reply([{"role": "user", "content": "x"}], None)
        ids = self.encode(after)
        if not ids:
            return None, None
        first = ids[0]
        text = self.tokenizer.decode([first], skip_special_tokens=False)
        stops = stop_token_ids(self.tokenizer)
        special = set(getattr(self.tokenizer, "all_special_ids", []) or [])
        if (first in stops or first in special) and after.startswith(text):
            return first, text
        return None, None
