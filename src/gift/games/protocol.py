"""The answer protocol shared by every game: `<think>…</think><answer>…</answer>`.

The strict parser reproduces the paper's rule (the reply must *end* with `</answer>`); the lenient one takes the
last answer block anywhere in the reply, closed or not, and is what opponents and evaluation use. A reply that
neither parser accepts costs `FORMAT_PENALTY` and does not step the game.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

FORMAT_PENALTY = -0.1
"""Charged for each unparsable reply (paper-notes §3, general conventions)."""

FORMAT_INSTRUCTION = (
    "Reason step by step inside <think> </think>, then give your final answer inside <answer> </answer>. "
    "Your reply must be exactly: <think> your reasoning </think> <answer> your answer </answer>, "
    "with nothing after </answer>."
)

# Greedy leading `.*` (as in the paper's regex): the *last* think/answer pair counts, so a tag mentioned inside
# the reasoning does not swallow the real answer.
_STRICT = re.compile(r".*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*$", re.DOTALL)
_ANSWER_CLOSED = re.compile(r".*<answer>(.*?)</answer>", re.DOTALL)
_ANSWER_OPEN = re.compile(r".*<answer>(.*)$", re.DOTALL)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)

PARSERS = ("strict", "lenient", "raw")


@dataclass(frozen=True)
class Parsed:
    think: str
    answer: str

    def packed(self) -> str:
        """The canonical text of this reply, as the paper stores it in the transcript."""
        return f"<think>{self.think}</think><answer>{self.answer}</answer>"


def parse_strict(reply: str) -> Parsed | None:
    """`<think>…</think>` then `<answer>…</answer>` at the very end (trailing whitespace allowed)."""
    m = _STRICT.match(reply)
    if m is None:
        return None
    return Parsed(think=m.group(1).strip(), answer=m.group(2).strip())


def parse_lenient(reply: str) -> Parsed | None:
    """The last `<answer>` block anywhere (an unclosed one runs to the end); the think block is optional."""
    m = _ANSWER_CLOSED.match(reply) or _ANSWER_OPEN.match(reply)
    if m is None:
        return None
    answer = m.group(1)
    think = _THINK.search(reply)
    return Parsed(think=think.group(1).strip() if think else "", answer=answer.strip())


def parse_reply(reply: str, parser: str = "strict") -> Parsed | None:
    """Parse with the named parser; "raw" treats the whole reply as the answer (human play, scripted bots)."""
    if parser == "strict":
        return parse_strict(reply)
    if parser == "lenient":
        return parse_lenient(reply)
    if parser == "raw":
        return Parsed(think="", answer=reply.strip())
    raise ValueError(f"parser={parser!r}; choose one of {PARSERS}")


def answer_text(reply: str) -> str:
    """Best-effort answer for replies from opponents: the lenient answer block, else the whole text."""
    parsed = parse_lenient(reply)
    return parsed.answer if parsed is not None else reply.strip()


def split_actions(answer: str, limit: int) -> list[str]:
    """Split an answer on `||` into at most `limit` non-empty actions; with limit 1 the answer is one action."""
    if limit <= 1:
        return [answer.strip()]
    parts = [p.strip() for p in answer.split("||")]
    parts = [p for p in parts if p]
    return parts[:limit] if parts else [""]


MAX_REPLY_CHARS = 16_000
"""Replies from other seats are cut to this many characters before any game logic reads them."""


def excerpt(text: str, limit: int = 200) -> str:
    """At most `limit` characters of `text` (an ellipsis marks a cut), for feedback that quotes a reply."""
    return text if len(text) <= limit else text[:limit] + "…"


def bound_reply(text: str) -> str:
    """A reply cut to `MAX_REPLY_CHARS`, so that hostile lengths never reach the rules."""
    return text if len(text) <= MAX_REPLY_CHARS else text[:MAX_REPLY_CHARS]
