"""Test helpers for the evaluation runner: a backend wrapper that records prompts and can script replies.

`ScriptedBackend` sits in front of a real backend (the tiny model's `HFBackend`): it decodes and records every
prompt of every `generate` call, answers the prompts its `script` knows with fixed text, and passes the rest to the
real model. `scripted_loader` plugs it into `cli_main(..., model_loader=...)`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from gift.evaluation.loading import load_model
from gift.rollout.backends import GenerationBackend, Sample

Script = Callable[[str], str | None]
_MOVES = re.compile(r"available moves \(row, col\) are: \[(.*?)\]")


@pytest.fixture()
def single_thread_torch():
    """One torch thread: on a shared two-core machine, small matmuls are far faster without thread contention."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def wrap(answer: str, think: str = "ok") -> str:
    return f"<think>{think}</think> <answer>{answer}</answer>"


def first_legal_move(prompt: str) -> str | None:
    """A legal TicTacToe move from a game prompt (the first listed), as a protocol reply."""
    found = _MOVES.findall(prompt)
    if not found:
        return None
    return wrap(found[-1].split("),")[0].strip().rstrip(")") + ")")


class ScriptedBackend(GenerationBackend):
    def __init__(
        self, tokenizer: Any, inner: GenerationBackend | None = None, script: Script | None = None
    ) -> None:
        self.tokenizer = tokenizer
        self.inner = inner
        self.script = script or (lambda prompt: None)
        self.calls: list[list[str]] = []
        """Decoded prompts of every generate call (special tokens kept, so chat roles are visible)."""
        self.seeds: list[int | None] = []

    @property
    def prompts(self) -> list[str]:
        return [p for call in self.calls for p in call]

    def generate(self, prompts, max_new_tokens, temperature=1.0, top_p=1.0, seed=None) -> list[Sample]:
        texts = [self.tokenizer.decode(p, skip_special_tokens=False) for p in prompts]
        self.calls.append(texts)
        self.seeds.append(seed)
        out: list[Sample | None] = []
        passthrough = []
        for i, text in enumerate(texts):
            reply = self.script(text)
            if reply is None:
                out.append(None)
                passthrough.append(i)
            else:
                ids = self.tokenizer.encode(reply, add_special_tokens=False) + [self.tokenizer.eos_token_id]
                out.append(Sample(ids, [0.0] * len(ids), True))
        if passthrough:
            if self.inner is None:
                raise AssertionError(f"no scripted reply for: {texts[passthrough[0]][-300:]!r}")
            inner = self.inner.generate(
                [prompts[i] for i in passthrough],
                max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                seed=seed,
            )
            for i, sample in zip(passthrough, inner, strict=True):
                out[i] = sample
        return [s for s in out if s is not None]


class scripted_loader:  # noqa: N801 - used like a function
    """A `model_loader` for cli_main: the real loader, with the backend wrapped in a `ScriptedBackend`."""

    def __init__(self, script: Script | None = None) -> None:
        self.script = script
        self.backends: dict[str, ScriptedBackend] = {}
        self.loads: list[str] = []

    def __call__(self, source, **kwargs):
        loaded = load_model(source, **kwargs)
        backend = ScriptedBackend(loaded.tokenizer, loaded.backend, self.script)
        loaded.backend = backend
        self.backends[source.label] = backend
        self.loads.append(source.label)
        return loaded


def user_turns(prompt: str) -> int:
    """How many user messages a ChatML prompt holds."""
    return prompt.count("<|im_start|>user")
