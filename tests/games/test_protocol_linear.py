"""The answer parsers run in linear time on hostile replies and agree exactly with the paper's regexes.

The regexes below are the reference definition (the strict one is the paper's rule); they backtrack
quadratically on repeated tags, so the parsers are written with string searches and checked against them.
"""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gift.games.protocol import (
    MAX_REPLY_CHARS,
    Parsed,
    answer_text,
    bound_reply,
    excerpt,
    parse_lenient,
    parse_strict,
)

STRICT = re.compile(r".*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*$", re.DOTALL)
ANSWER_CLOSED = re.compile(r".*<answer>(.*?)</answer>", re.DOTALL)
ANSWER_OPEN = re.compile(r".*<answer>(.*)$", re.DOTALL)
THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


def reference_strict(reply: str) -> Parsed | None:
    m = STRICT.match(reply)
    return None if m is None else Parsed(m.group(1).strip(), m.group(2).strip())


def reference_lenient(reply: str) -> Parsed | None:
    m = ANSWER_CLOSED.match(reply) or ANSWER_OPEN.match(reply)
    if m is None:
        return None
    think = THINK.search(reply)
    return Parsed(think.group(1).strip() if think else "", m.group(1).strip())


PIECES = (
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    " ",
    "\n",
    "\u00a0",
    "x",
    "<",
    ">",
    "</",
    "answer",
    "a b",
)
soup = st.lists(st.sampled_from(PIECES), max_size=24).map("".join)


@settings(max_examples=3000, deadline=None)
@given(soup)
def test_parsers_agree_with_the_reference_regexes(reply: str) -> None:
    assert parse_strict(reply) == reference_strict(reply)
    assert parse_lenient(reply) == reference_lenient(reply)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=60))
def test_parsers_agree_on_arbitrary_text(reply: str) -> None:
    assert parse_strict(reply) == reference_strict(reply)
    assert parse_lenient(reply) == reference_lenient(reply)


MILLION = 1_000_000


def _fill(unit: str, size: int = MILLION) -> str:
    return unit * (size // len(unit))


HOSTILE = {
    "think-answer pairs, never closed": _fill("<think>a</think><answer>b"),
    "think-answer pairs, trailing junk": _fill("<think>a</think><answer>b</answer>") + "x",
    "repeated <answer>": _fill("<answer>"),
    "repeated <answer> then one close": _fill("<answer>") + "</answer>",
    "repeated <think>": _fill("<think>"),
    "repeated </think> <answer> joins": "<think>" + _fill("</think> <answer>") + "</answer>",
    "whitespace between tags": "<think>" + " " * MILLION + "</think>" + " " * MILLION,
    "tags cut in half": _fill("</thin<answe</answe"),
    "one valid pair after a flood": _fill("<think>") + "<think>t</think><answer>a</answer>",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_million_hostile_characters_parse_well_under_a_second(name: str) -> None:
    reply = HOSTILE[name]
    began = time.perf_counter()
    parse_strict(reply)
    parse_lenient(reply)
    answer_text(reply)
    elapsed = time.perf_counter() - began
    assert elapsed < 1.0, f"{name}: {elapsed:.2f} s for {len(reply):,} characters"


def test_hostile_results_are_still_right() -> None:
    assert parse_strict(HOSTILE["one valid pair after a flood"]) == Parsed("t", "a")
    assert parse_strict(HOSTILE["think-answer pairs, never closed"]) is None
    assert parse_lenient(HOSTILE["repeated <answer> then one close"]) == Parsed("", "")
    assert parse_strict(HOSTILE["repeated </think> <answer> joins"]).think == ""


def test_excerpt_is_bounded_and_marks_the_cut() -> None:
    long = "x" * 100_000
    assert len(excerpt(long)) == 200 and excerpt(long).endswith("…")
    assert len(excerpt(long, limit=50)) == 50
    assert excerpt("short reply") == "short reply"
    assert excerpt("abc", limit=0) == ""


def test_bound_reply_cuts_hostile_lengths_only() -> None:
    assert bound_reply("ok") == "ok"
    assert len(bound_reply("y" * (MAX_REPLY_CHARS * 3))) == MAX_REPLY_CHARS
