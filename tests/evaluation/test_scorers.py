"""Answer extraction and scoring on well-formed, sloppy and hostile model output; the CommonGen judge path."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gift.errors import ConfigError
from gift.evaluation.scorers import (
    CommonGenCase,
    answer_block,
    commongen_judge_messages,
    commongen_outcome,
    extract_choice,
    judge_commongen,
    judge_order,
    parse_judge_verdict,
    score_choice,
    score_math,
)
from gift.opponents import OpponentError
from gift.opponents.openai_client import OpenAIChatOpponent
from tests.opponents.chat_server import ChatServer, http_error, reply, respond


def wrap(answer: str, think: str = "thinking") -> str:
    return f"<think>{think}</think><answer>{answer}</answer>"


# ---- answer blocks ------------------------------------------------------------------------------------------------
def test_answer_block_rule() -> None:
    assert answer_block(wrap(" B ")) == "B"
    assert answer_block("<answer>first</answer> then <answer>second</answer>") == "second"
    assert answer_block("<think>so</think><answer>C") == "C"  # unclosed: runs to the end
    assert answer_block("The answer is B.") is None
    assert answer_block("") is None
    assert answer_block(None) is None


# ---- multiple choice ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "n", "expected"),
    [
        ("B", 4, "B"),
        ("(C)", 4, "C"),
        ("Answer: D.", 4, "D"),
        ("the answer is b", 4, "B"),
        ("**a**", 4, "A"),
        ("[J]", 10, "J"),
        ("Option C", 4, "C"),
        ("The answer is C because the others are too large.", 4, "C"),
        ("I choose option b.", 4, "B"),
        ("the answer is a mammal, so (B)", 4, "B"),
        ("Looking at it again, (D) fits best", 4, "D"),
        ("I think it's C", 4, "C"),  # "I" is past D, and "it's" is a word
        ("A and B both look right", 4, "A"),  # first standalone letter, as in the reference
        ("AB", 4, None),
        ("E", 4, None),  # past the last option: names no option
        ("The answer is E", 4, None),
        ("2", 4, None),
        ("", 4, None),
        ("Paris", 4, None),
        ("answer is Paris", 4, None),
        ("i", 10, "I"),
    ],
)
def test_extract_choice(answer: str, n: int, expected: str | None) -> None:
    assert extract_choice(wrap(answer), n) == expected


def test_letters_outside_the_answer_block_do_not_count() -> None:
    assert extract_choice("<think>Clearly B.</think>", 4) is None
    assert extract_choice("<think>Clearly B.</think><answer>C</answer>", 4) == "C"
    assert extract_choice("B", 4) is None


def test_score_choice() -> None:
    assert score_choice(wrap("(c)"), "C", 4)
    assert score_choice(wrap("c"), "c", 4)
    assert not score_choice(wrap("B"), "C", 4)
    assert not score_choice("no tags at all: C", "C", 4)
    assert score_choice(wrap("J"), "J", 10)
    with pytest.raises(ConfigError):
        score_choice(wrap("E"), "E", 4)
    with pytest.raises(ConfigError):
        extract_choice(wrap("A"), 0)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80), st.integers(min_value=1, max_value=26))
def test_extract_choice_never_raises_and_stays_in_range(text: str, n: int) -> None:
    for candidate in (text, wrap(text)):
        choice = extract_choice(candidate, n)
        assert choice is None or (len(choice) == 1 and "A" <= choice < chr(ord("A") + n))


# ---- math ---------------------------------------------------------------------------------------------------------
def test_score_math_uses_the_answer_block() -> None:
    assert score_math(wrap("0.75"), "\\frac{3}{4}")
    assert score_math(wrap("\\boxed{7/8}"), "\\frac{7}{8}")
    assert not score_math(wrap("5"), "6")
    assert not score_math("<think>the result is 6</think>", "6")
    assert not score_math(wrap(""), "6")
    assert not score_math(None, "6")


def test_flexible_math_reads_the_reply_without_an_answer_block() -> None:
    text = "Adding gives \\boxed{6}, which checks out."
    assert not score_math(text, "6")
    assert score_math(text, "6", flexible=True)
    assert score_math("so x is\n6", "6", flexible=True)
    assert not score_math(wrap("5") + " \\boxed{6}", "6", flexible=True)  # the answer block wins


# ---- CommonGen judge ----------------------------------------------------------------------------------------------
def test_judge_messages_show_concepts_and_both_sentences() -> None:
    messages = commongen_judge_messages(["dog_N", "run_V"], "Dogs run.", "A dog is running.")
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    assert "dog (noun), run (verb)" in user
    assert "Sentence A: Dogs run." in user and "Sentence B: A dog is running." in user
    assert "Verdict: tie" in user


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Both use all concepts but A is smoother.\nVerdict: A", "A"),
        ("verdict: b", "B"),
        ("Verdict: **Tie**", "tie"),
        ("Verdict: A ... on reflection, Verdict: B", "B"),
        ("B", "B"),
        ("Sentence A", "A"),
        ("<answer>tie</answer>", "tie"),
        ("I cannot decide.", None),
        ("Verdict: Apple", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_judge_verdict(text, expected) -> None:
    assert parse_judge_verdict(text) == expected


@pytest.mark.parametrize(
    ("sentence", "reply", "model_is_a", "expected"),
    [
        ("The dog runs.", "Verdict: A", True, "win"),
        ("The dog runs.", "Verdict: A", False, "loss"),
        ("The dog runs.", "Verdict: B", False, "win"),
        ("The dog runs.", "Verdict: tie", False, "tie"),
        ("The dog runs.", "no idea", True, None),
        (None, "Verdict: A", True, "loss"),  # no answer block is a loss, whatever the judge says
        ("   ", None, True, "loss"),
        ("a dog jumps", None, True, "tie"),  # same as the reference up to case and punctuation
    ],
)
def test_commongen_outcome(sentence, reply, model_is_a, expected) -> None:
    assert commongen_outcome(sentence, "A dog jumps!", reply, model_is_a) == expected


def test_judge_order_is_a_fair_seeded_coin() -> None:
    first = [judge_order(random.Random(7)) for _ in range(3)]
    assert len(set(first)) == 1
    rng = random.Random(0)
    heads = sum(judge_order(rng) for _ in range(2000))
    assert 900 < heads < 1100


class ScriptedJudge:
    """A judge that prefers the sentence containing `marker`; raises on sentences containing 'CRASH'."""

    def __init__(self, marker: str = "model") -> None:
        self.marker = marker
        self.calls: list[str] = []

    def chat(self, messages) -> str:
        text = messages[-1]["content"]
        self.calls.append(text)
        if "CRASH" in text:
            raise OpponentError("judge endpoint unavailable")
        if "MUMBLE" in text:
            return "Hard to say."
        line_a = next(line for line in text.splitlines() if line.startswith("Sentence A:"))
        return "Verdict: A" if self.marker in line_a else "Verdict: B"


def cases() -> list[CommonGenCase]:
    refs = ("A human wrote this.", "Another human sentence.")
    return [
        CommonGenCase("1", ("dog",), refs, wrap("the model dog")),
        CommonGenCase("2", ("cat",), refs, wrap("the model cat")),
        CommonGenCase("3", ("sun",), refs, "no answer block"),
        CommonGenCase("4", ("sea",), refs, wrap("CRASH the model")),
        CommonGenCase("5", ("sky",), refs, wrap("MUMBLE model")),
    ]


def test_judge_commongen_counts_failures_and_never_scores_them() -> None:
    judge = ScriptedJudge()
    report = judge_commongen(judge, cases(), random.Random(3))
    by_id = {it.id: it for it in report.items}
    assert by_id["1"].outcome == by_id["2"].outcome == "win"  # the judge prefers the model wherever it stands
    assert by_id["3"].outcome == "loss" and by_id["3"].judge_reply is None
    assert by_id["4"].outcome is None and "OpponentError" in by_id["4"].error
    assert by_id["5"].outcome is None and by_id["5"].error is None
    assert len(judge.calls) == 4  # the answerless item costs no call
    assert (report.failures, report.unparsed, report.scored) == (1, 1, 3)
    summary = report.summary()
    assert (summary["wins"], summary["ties"], summary["losses"]) == (2, 0, 1)
    win_or_tie = report.win_or_tie()
    assert win_or_tie.n == 3 and win_or_tie.value == pytest.approx(2 / 3)


def test_judge_draws_depend_only_on_the_seed() -> None:
    first = judge_commongen(ScriptedJudge(), cases(), random.Random(11))
    # Different outputs, same seed: the references and orders drawn per item are the same.
    other = [CommonGenCase(c.id, c.concepts, c.references, wrap("something else")) for c in cases()]
    second = judge_commongen(ScriptedJudge(), other, random.Random(11), workers=3)
    assert [(a.reference, a.model_is_a) for a in first.items] == [
        (b.reference, b.model_is_a) for b in second.items
    ]
    orders = [it.model_is_a for it in first.items]
    assert len(set(orders)) == 2  # both positions occur with this seed


def test_judge_commongen_accepts_mappings_and_rejects_items_without_references() -> None:
    report = judge_commongen(
        ScriptedJudge(),
        [{"id": "m", "concepts": ["dog"], "references": ["ref"], "output": wrap("model")}],
        random.Random(0),
    )
    assert report.items[0].outcome == "win"
    with pytest.raises(ConfigError, match="no human references"):
        judge_commongen(
            ScriptedJudge(), [{"id": "x", "concepts": ["dog"], "references": []}], random.Random(0)
        )


def test_judge_commongen_over_a_real_endpoint() -> None:
    def verdict(body) -> str:
        text = body["messages"][-1]["content"]
        line_a = next(line for line in text.splitlines() if line.startswith("Sentence A:"))
        return "Reasoning...\nVerdict: A" if "model" in line_a else "Reasoning...\nVerdict: B"

    items = [
        CommonGenCase(str(i), ("dog", "ball"), ("A dog chases a ball.",), wrap("model dog ball"))
        for i in range(4)
    ]
    with ChatServer(respond(verdict), script=[reply("Verdict: B"), http_error(400)]) as server:
        judge = OpenAIChatOpponent(
            base_url=server.base_url, model="judge", retries=0, timeout=2.0, backoff=0.0
        )
        report = judge_commongen(judge, items, random.Random(5))
        seen = server.requests
    assert len(seen) == 4
    assert seen[0].body["messages"][0]["role"] == "system"
    first = report.items[0]
    assert first.outcome == ("loss" if first.model_is_a else "win")  # the scripted "Verdict: B"
    assert report.items[1].outcome is None and report.failures == 1
    assert [it.outcome for it in report.items[2:]] == ["win", "win"]
