"""Test doubles for the rollout tests: a multi-turn toy game and backends that are real, simple implementations."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from gift.games.base import Outcome, TextGame
from gift.rollout.backends import GenerationBackend, Sample

# A Qwen3-style template: earlier assistant turns lose their <think> block when the chat is re-rendered.
QWEN3_STYLE_TEMPLATE = (
    "{%- set ns = namespace(last_user=-1) -%}"
    "{%- for m in messages -%}{%- if m['role'] == 'user' -%}{%- set ns.last_user = loop.index0 -%}{%- endif -%}"
    "{%- endfor -%}"
    "{%- for m in messages -%}"
    "{%- if m['role'] == 'assistant' and loop.index0 < ns.last_user and '</think>' in m['content'] -%}"
    "{{ '<|im_start|>assistant\n' + (m['content'].split('</think>')[-1] | trim) + '<|im_end|>\n' }}"
    "{%- else -%}"
    "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)


class GuessGame(TextGame):
    """Guess a secret number with at most 3 guesses; a wrong guess says higher/lower, a non-number is invalid."""

    id = "guess-v0"
    default_max_turns = 3

    def __init__(self, tag: int = 0, secret: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tag = tag
        self.fixed_secret = secret
        self.secret = 0
        self.last = "no guess yet"

    def _reset(self) -> None:
        self.secret = self.fixed_secret if self.fixed_secret is not None else self.rng.randint(1, 9)
        self.last = "no guess yet"

    def _act(self, action: str) -> Outcome:
        if not action.isdigit():
            return Outcome(valid=False, penalty=-0.1, message=f"{action!r} is not a number.")
        guess = int(action)
        if guess == self.secret:
            return Outcome(terminated=True, reward=1.0, success=True, end_reason="correct")
        self.last = "higher" if guess < self.secret else "lower"
        return Outcome()

    def render(self) -> str:
        return f"Game {self.tag}. Guess my number from 1 to 9. Last hint: {self.last}."


class RecordingBackend(GenerationBackend):
    """Wraps a backend and records every call's prompts."""

    def __init__(self, inner: GenerationBackend) -> None:
        self.inner = inner
        self.calls: list[list[list[int]]] = []
        self.samples: list[list[Sample]] = []

    def generate(self, prompts, max_new_tokens, temperature=1.0, top_p=1.0, seed=None):
        self.calls.append([list(p) for p in prompts])
        out = self.inner.generate(prompts, max_new_tokens, temperature=temperature, top_p=top_p, seed=seed)
        self.samples.append(out)
        return out


class ScriptedBackend(GenerationBackend):
    """Replies chosen from the prompt's text: `script(game_tag, turn)` → (reply text, ends with eos?)."""

    def __init__(self, tokenizer: Any, script: Callable[[int, int], tuple[str, bool]]) -> None:
        self.tokenizer = tokenizer
        self.script = script

    def generate(self, prompts, max_new_tokens, temperature=1.0, top_p=1.0, seed=None):
        samples = []
        for prompt in prompts:
            text = self.tokenizer.decode(prompt)
            tag = int(re.search(r"Game (\d+)\.", text).group(1))
            turn = int(re.findall(r"Turn (\d+):", text)[-1])
            reply, eos = self.script(tag, turn)
            ids = self.tokenizer(reply, add_special_tokens=False)["input_ids"][:max_new_tokens]
            if eos and len(ids) < max_new_tokens:
                ids.append(self.tokenizer.eos_token_id)
            samples.append(Sample(token_ids=ids, logprobs=[-0.5] * len(ids), finished=eos))
        return samples


def answer(text: str, think: str = "thinking") -> str:
    return f"<think> {think} </think> <answer> {text} </answer>"


def segments(traj) -> list[tuple[int, list[int]]]:
    """Split a trajectory into maximal runs of equal loss mask: [(mask, ids), ...]."""
    runs: list[tuple[int, list[int]]] = []
    for token, mask in zip(traj.input_ids, traj.loss_mask, strict=True):
        if runs and runs[-1][0] == mask:
            runs[-1][1].append(token)
        else:
            runs.append((mask, [token]))
    return runs


class LegalMoveBackend(GenerationBackend):
    """Answers every live game with its first legal action (a well-formed reply ending in eos).

    It reads the games themselves: the engine sends the prompts of the unfinished games in input order.
    """

    def __init__(self, games: list[TextGame], tokenizer: Any) -> None:
        self.games = games
        self.tokenizer = tokenizer

    def generate(self, prompts, max_new_tokens, temperature=1.0, top_p=1.0, seed=None):
        live = [g for g in self.games if not g.done]
        assert len(live) == len(prompts)
        samples = []
        for game in live:
            ids = self.tokenizer(answer(game.legal_actions()[0], think="legal"), add_special_tokens=False)[
                "input_ids"
            ]
            ids = [*ids, self.tokenizer.eos_token_id]
            samples.append(Sample(token_ids=ids, logprobs=[-1.0] * len(ids), finished=True))
        return samples
