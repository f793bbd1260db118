"""The answer protocol shared by every game: `<think>…</think><answer>…</answer>`.

The strict parser reproduces the paper's rule (the reply must *end* with `</answer>`); the lenient one takes the
last answer block anywhere in the reply, closed or not, and is what opponents and evaluation use. A reply that
neither parser accepts costs `FORMAT_PENALTY` and does not step the game.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

FORMAT_PENALTY = -0.1
"""Charged for each unparsable reply (the paper's format penalty)."""

FORMAT_INSTRUCTION = (
    "Reason step by step inside <think> </think>, then give your final answer inside <answer> </answer>. "
    "Your reply must be exactly: <think> your reasoning </think> <answer> your answer </answer>, "
    "with nothing after </answer>."
)

MAX_REPLY_CHARS = 32_768
"""Longest reply any game logic sees (`bound_reply`); a policy reply of 600 tokens is about 3,000 characters."""

EXCERPT_CHARS = 200
"""Default length of a reply echoed back in feedback (`excerpt`)."""

_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_ANSWER_OPEN, _ANSWER_CLOSE = "<answer>", "</answer>"
# `</think>`, optional whitespace, `<answer>`: literal anchors around one character class, so finditer is linear.
_THINK_THEN_ANSWER = re.compile(r"</think>\s*<answer>")

PARSERS = ("strict", "lenient", "raw")


@dataclass(frozen=True)
class Parsed:
    think: str
    answer: str

    def packed(self) -> str:
        """The canonical text of this reply, as the paper stores it in the transcript."""
        return f"<think>{self.think}</think><answer>{self.answer}</answer>"


def parse_strict(reply: str) -> Parsed | None:
    """`<think>…</think>` then `<answer>…</answer>` at the very end (trailing whitespace allowed).

    The paper's rule, `.*<think>(.*?)</think>\\s*<answer>(.*?)</answer>\\s*$`: the *last* think/answer pair
    counts, so a tag mentioned inside the reasoning does not swallow the real answer. Computed with string
    searches in linear time (the regex backtracks quadratically on repeated tags).
    """
    text = reply.rstrip()
    if not text.endswith(_ANSWER_CLOSE):
        return None
    answer_end = len(text) - len(_ANSWER_CLOSE)
    # Every `</think>\s*<answer>` whose `<answer>` ends before the final `</answer>`: (position, answer start).
    joins = [(m.start(), m.end()) for m in _THINK_THEN_ANSWER.finditer(text, 0, answer_end)]
    if not joins:
        return None
    # Greedy `.*<think>`: the last `<think>` that some join follows; lazy `(.*?)</think>`: the first such join.
    think_start = text.rfind(_THINK_OPEN, 0, joins[-1][0])
    if think_start < 0:
        return None
    content = think_start + len(_THINK_OPEN)
    close, answer_start = joins[bisect.bisect_left(joins, (content, -1))]
    return Parsed(think=text[content:close].strip(), answer=text[answer_start:answer_end].strip())


def parse_lenient(reply: str) -> Parsed | None:
    """The last `<answer>` block anywhere (an unclosed one runs to the end); the think block is optional.

    Same result as `.*<answer>(.*?)</answer>`, else `.*<answer>(.*)$`, for the answer and the first
    `<think>(.*?)</think>` for the reasoning, with linear-time string searches.
    """
    last_close = reply.rfind(_ANSWER_CLOSE)
    start = reply.rfind(_ANSWER_OPEN, 0, last_close) if last_close >= 0 else -1
    if start >= 0:
        content = start + len(_ANSWER_OPEN)
        answer = reply[content : reply.find(_ANSWER_CLOSE, content)]
    else:
        start = reply.rfind(_ANSWER_OPEN)
        if start < 0:
            return None
        answer = reply[start + len(_ANSWER_OPEN) :]
    return Parsed(think=_first_think(reply), answer=answer.strip())


def _first_think(reply: str) -> str:
    """The first `<think>…</think>` block's text (as `re.search(r"<think>(.*?)</think>")`), or ""."""
    start = reply.find(_THINK_OPEN)
    if start < 0:
        return ""
    content = start + len(_THINK_OPEN)
    close = reply.find(_THINK_CLOSE, content)
    return reply[content:close].strip() if close >= 0 else ""


def bound_reply(text: str) -> str:
    """`text` cut to `MAX_REPLY_CHARS`, so no game logic, prompt or log ever holds a hostile-length reply."""
    return text if len(text) <= MAX_REPLY_CHARS else text[:MAX_REPLY_CHARS]


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """At most `limit` characters of `text` for echoing in feedback; a cut one ends with "…" (counted)."""
    if limit < 1:
        return ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


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

