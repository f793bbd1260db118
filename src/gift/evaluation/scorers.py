"""Answer extraction and scoring for the benchmarks: pure functions that never raise on model text.

The rule for every benchmark (the paper's evaluation protocol): the answer is the content of the reply's answer block, taken by
`gift.games.protocol.parse_lenient` (the last `<answer>` block, closed or not). A reply without any `<answer>` tag
has no answer and scores as wrong — it is never re-read from the reasoning, so a model cannot earn credit for a
letter it merely mentioned while thinking. (`score_math(..., flexible=True)` is the one documented exception,
kept to reproduce the reference code's "flexible" MATH score.)

CommonGen is scored pairwise by a judge model: the model's sentence against one human reference, in a random
A/B order drawn from a seeded rng, counting win-or-tie. Judge failures are counted and left out, never scored.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from gift.errors import ConfigError
from gift.evaluation.stats import Estimate, binomial_ci
from gift.games.protocol import parse_lenient

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
Verdict = Literal["A", "B", "tie"]
CommonGenOutcome = Literal["win", "tie", "loss"]
_ERROR_CHARS = 200


# ---------------------------------------------------------------------------------------------- answer blocks
def answer_block(text: str | None) -> str | None:
    """The stripped content of the reply's answer block, or None when the reply has no `<answer>` tag.

    None means "no answer": every scorer below counts it as wrong.
    """
    if not isinstance(text, str):
        return None
    parsed = parse_lenient(text)
    return None if parsed is None else parsed.answer


# ---------------------------------------------------------------------------------------------- multiple choice
_WHOLE_ANSWER = re.compile(
    r"^[\W_]*(?:(?:the\s+)?(?:final\s+|correct\s+|best\s+)?(?:answer|option|choice)(?:\s+is)?[\s:=\-]*)?"
    r"[\(\[\{]?\s*([A-Za-z])\s*[\)\]\}]?[\W_]*$",
    re.IGNORECASE,
)
_MARKED = re.compile(
    r"(?:answer|option|choice)(?:\s+is)?[\s:=\-]*(?:(?:option|choice)\s+)?(\(|\[)?([A-Za-z])(\)|\])?(?=(.?))",
    re.IGNORECASE,
)
_PARENTHESISED = re.compile(r"\(([A-Z])\)")
_STANDALONE = re.compile(r"(?<![A-Za-z0-9'’])([A-Z])(?![A-Za-z0-9'’])")
_END_OF_CHOICE = set(".,;:!?)]}*\"'\n")


def _option_letters(n_options: int) -> str:
    if isinstance(n_options, bool) or not isinstance(n_options, int) or not 1 <= n_options <= len(LETTERS):
        raise ConfigError(
            f"n_options={n_options!r} is out of range; allowed: 1 <= n_options <= {len(LETTERS)}"
        )
    return LETTERS[:n_options]


def extract_choice(text: str | None, n_options: int) -> str | None:
    """The option letter chosen in a reply's answer block, or None when the block names no valid option.

    Rules, tried in order on the answer block only:

    1. the whole block is one letter, optionally bracketed and/or after "answer", "option" or "choice"
       ("B", "(c)", "Answer: D.", "the answer is b") — either case;
    2. an explicit marker inside a longer block: "answer is C because…", "option (b)", "choice: D" — an
       upper-case letter, or a lower-case one only when bracketed or followed by punctuation or the end
       (so "the answer is a mammal" does not read as "A");
    3. the first upper-case letter in parentheses, e.g. "… so (C) fits";
    4. the first standalone upper-case letter (not part of a word, "AB" is not a choice), as in the reference.

    A letter past the last option is not a choice: under rules 1–2 the block then names no option at all (None);
    under rules 3–4 such letters are skipped (this skips the pronoun "I" when there are fewer than nine
    options; with MMLU-Pro's ten, a bare "I think …" block without any marker reads as option I).
    Numbers ("2") are not letters and are never mapped to options.
    """
    letters = _option_letters(n_options)
    block = answer_block(text)
    if not block:
        return None
    whole = _WHOLE_ANSWER.match(block)
    if whole:
        letter = whole.group(1).upper()
        return letter if letter in letters else None
    for m in _MARKED.finditer(block):
        opened, raw, closed, after = m.group(1), m.group(2), m.group(3), m.group(4)
        if raw.isupper():
            if after and (after.isalnum() or after in "'’"):
                continue  # the start of a word, e.g. "answer is Paris"
        elif not ((opened and closed) or not after or after in _END_OF_CHOICE):
            continue
        letter = raw.upper()
        return letter if letter in letters else None
    for pattern in (_PARENTHESISED, _STANDALONE):
        for m in pattern.finditer(block):
            if m.group(1) in letters:
                return m.group(1)
    return None


def score_choice(text: str | None, gold_letter: str, n_options: int) -> bool:
    """True when the reply's chosen letter equals `gold_letter` (case-insensitive)."""
    letters = _option_letters(n_options)
    gold = gold_letter.strip().upper() if isinstance(gold_letter, str) else ""
    if len(gold) != 1 or gold not in letters:
        raise ConfigError(f"gold_letter={gold_letter!r} is not allowed; choose one of: {', '.join(letters)}")
    return extract_choice(text, n_options) == gold


# ---------------------------------------------------------------------------------------------- math
def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{…} in a text (braces balanced), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j].strip() or None
    return None


def score_math(text: str | None, gold: str, flexible: bool = False) -> bool:
    """Math-Verify equivalence of the answer block with `gold` (via `gift.grading.grade_math`).

    A reply without an answer block is wrong. With `flexible=True` such a reply is read instead for its last
    \\boxed{…}, else its last non-empty line (close to the reference code's "flexible" score, which lets an
    answer stated only in the reasoning count).
    """
    from gift.grading import grade_math

    block = answer_block(text)
    if block is None:
        if not (flexible and isinstance(text, str) and text.strip()):
            return False
        block = last_boxed(text) or text.strip().splitlines()[-1]
    if not block.strip():
        return False
    try:
        return bool(grade_math(block, str(gold)))
    except Exception:  # a grader crash on odd model text is a wrong answer, never an aborted run
        return False


# ---------------------------------------------------------------------------------------------- CommonGen judge
_JUDGE_SYSTEM = "You judge short English sentences carefully and fairly."
_JUDGE_TEMPLATE = """\
Two sentences were written for the same exercise: combine every one of the concepts below into a single \
sentence that describes an everyday scene.

Concepts: {concepts}

Sentence A: {a}
Sentence B: {b}

Compare the two sentences on these points, the first being the most important:
1. Coverage: every concept appears in the sentence (any grammatical form of the word counts).
2. Naturalness: a fluent speaker could have written it, and the scene it describes makes sense.
3. Simplicity: if both are equally good on the points above, prefer the plainer and shorter sentence.

Reason in a few sentences, then end your reply with one line that is exactly one of:
Verdict: A
Verdict: B
Verdict: tie"""

_VERDICT = re.compile(
    r"verdict[\s*_:=\-]*(?:sentence\s+)?[\(\[\"'*]*\s*(A|B|tie|draw|equal)(?![A-Za-z0-9])", re.IGNORECASE
)
_BARE_VERDICT = re.compile(r"^[\W_]*(?:sentence\s+)?(A|B|tie|draw|equal)[\W_]*$", re.IGNORECASE)


def concept_text(concepts: Sequence[str]) -> str:
    """Concepts as the judge and the model see them: "dog (noun), run (verb)" from CommonGen's "dog_N", "run_V"."""
    shown = []
    for c in concepts:
        c = str(c).strip()
        if c.endswith("_N"):
            c = c[:-2] + " (noun)"
        elif c.endswith("_V"):
            c = c[:-2] + " (verb)"
        shown.append(c)
    return ", ".join(shown)


def commongen_judge_messages(
    concepts: Sequence[str], sentence_a: str, sentence_b: str
) -> list[dict[str, str]]:
    """Chat messages asking a judge which sentence better uses all `concepts` (natural, complete, simple)."""
    user = _JUDGE_TEMPLATE.format(concepts=concept_text(concepts), a=sentence_a.strip(), b=sentence_b.strip())
    return [{"role": "system", "content": _JUDGE_SYSTEM}, {"role": "user", "content": user}]


def parse_judge_verdict(text: str | None) -> Verdict | None:
    """ "A", "B" or "tie" from a judge reply: the last "Verdict: …" line, else a reply (or answer block)
    that is just the verdict; None when the reply does not say.
    """
    if not isinstance(text, str):
        return None
    found = _VERDICT.findall(text)
    if not found:
        for candidate in (text, answer_block(text) or ""):
            m = _BARE_VERDICT.match(candidate.strip())
            if m:
                found = [m.group(1)]
                break
    if not found:
        return None
    word = found[-1].lower()
    if word in ("a", "b"):
        return "A" if word == "a" else "B"
    return "tie"


def judge_order(rng: random.Random) -> bool:
    """One fair coin from the run's seeded rng: True puts the model's sentence in position A."""
    return rng.random() < 0.5


def _normalise_sentence(s: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", s.lower()).split())


def commongen_outcome(
    model_sentence: str | None, reference: str, judge_reply: str | None, model_is_a: bool
) -> CommonGenOutcome | None:
    """The model's result against the reference: "win", "tie", "loss", or None when the judge gave no verdict.

    No sentence (no answer block, or an empty one) is a loss without asking the judge; a sentence identical
    to the reference up to case and punctuation is a tie.
    """
    if model_sentence is None or not model_sentence.strip():
        return "loss"
    if _normalise_sentence(model_sentence) == _normalise_sentence(reference):
        return "tie"
    verdict = parse_judge_verdict(judge_reply)
    if verdict is None:
        return None
    if verdict == "tie":
        return "tie"
    return "win" if (verdict == "A") == model_is_a else "loss"


class ChatClient(Protocol):
    """Anything with `chat(messages) -> str`, such as `gift.opponents.openai_client.OpenAIChatOpponent`."""

    def chat(self, messages: Sequence[Mapping[str, str]]) -> str: ...


@dataclass(frozen=True)
class CommonGenCase:
    """One CommonGen item to judge: its concepts, the human references and the model's raw reply."""

    id: str
    concepts: tuple[str, ...]
    references: tuple[str, ...]
    output: str | None


@dataclass(frozen=True)
class JudgedItem:
    id: str
    outcome: CommonGenOutcome | None
    """None: left out (the judge failed or gave no verdict)."""
    sentence: str | None
    reference: str
    model_is_a: bool
    verdict: Verdict | None = None
    judge_reply: str | None = None
    error: str | None = None
    """The judge call's exception, as "Type: message" (truncated)."""


@dataclass
class CommonGenReport:
    """Per-item judgements and their totals; failed and unparsed judgements are counted, never scored."""

    items: list[JudgedItem] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for it in self.items if it.outcome == outcome)

    @property
    def failures(self) -> int:
        """Judge calls that raised (network errors, refusals…)."""
        return sum(1 for it in self.items if it.error is not None)

    @property
    def unparsed(self) -> int:
        """Judge replies without a readable verdict."""
        return sum(1 for it in self.items if it.outcome is None and it.error is None)

    @property
    def scored(self) -> int:
        return sum(1 for it in self.items if it.outcome is not None)

    def win_or_tie(self, level: float = 0.95) -> Estimate:
        """The paper's CommonGen metric over scored items, with a Wilson interval."""
        return binomial_ci(self.count("win") + self.count("tie"), self.scored, level=level)

    def win_rate(self, level: float = 0.95) -> Estimate:
        return binomial_ci(self.count("win"), self.scored, level=level)

    def summary(self) -> dict[str, Any]:
        return {
            "items": len(self.items),
            "scored": self.scored,
            "wins": self.count("win"),
            "ties": self.count("tie"),
            "losses": self.count("loss"),
            "judge_failures": self.failures,
            "judge_unparsed": self.unparsed,
            "win_or_tie": self.win_or_tie().as_dict(),
        }


def _case(item: CommonGenCase | Mapping[str, Any] | Any, index: int) -> CommonGenCase:
    if isinstance(item, CommonGenCase):
        case = item
    else:
        get = item.get if isinstance(item, Mapping) else (lambda k, d=None: getattr(item, k, d))
        case = CommonGenCase(
            id=str(get("id", index)),
            concepts=tuple(get("concepts", ()) or ()),
            references=tuple(get("references", ()) or ()),
            output=get("output", None),
        )
    if not case.references:
        raise ConfigError(f"CommonGen item {case.id!r} has no human references; it cannot be judged")
    if not case.concepts:
        raise ConfigError(f"CommonGen item {case.id!r} has no concepts; it cannot be judged")
    return case


def judge_commongen(
    client: ChatClient,
    items: Iterable[CommonGenCase | Mapping[str, Any]],
    rng: random.Random,
    workers: int = 1,
) -> CommonGenReport:
    """Judge every item's answer against one randomly drawn reference, in a random A/B order.

    The reference and the order are drawn from `rng` for every item up front, before any judging, so they depend
    only on the seed and the item order, not on the model's outputs or on judge failures. Items without an answer
    are losses and cost no judge call. Judge calls may run in `workers` threads; the client must be thread-safe
    for workers > 1 (OpenAIChatOpponent is).
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers={workers!r} must be an integer >= 1")
    cases = [_case(item, i) for i, item in enumerate(items)]
    draws = [(c.references[rng.randrange(len(c.references))], judge_order(rng)) for c in cases]

    def judge_one(job: tuple[CommonGenCase, tuple[str, bool]]) -> JudgedItem:
        case, (reference, model_is_a) = job
        sentence = answer_block(case.output)
        base = {"id": case.id, "sentence": sentence, "reference": reference, "model_is_a": model_is_a}
        outcome = commongen_outcome(sentence, reference, None, model_is_a)
        if outcome is not None:  # decided without the judge
            return JudgedItem(outcome=outcome, **base)
        a, b = (sentence, reference) if model_is_a else (reference, sentence)
        try:
            reply = client.chat(commongen_judge_messages(case.concepts, a, b))
        except Exception as err:  # every judge failure is counted and left out
            message = f"{type(err).__name__}: {err}"[:_ERROR_CHARS]
            return JudgedItem(outcome=None, error=message, **base)
        reply = reply if isinstance(reply, str) else None
        return JudgedItem(
            outcome=commongen_outcome(sentence, reference, reply, model_is_a),
            verdict=parse_judge_verdict(reply),
            judge_reply=reply,
            **base,
        )

    jobs = list(zip(cases, draws, strict=True))
    if workers == 1 or len(jobs) <= 1:
        judged = [judge_one(job) for job in jobs]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            judged = list(pool.map(judge_one, jobs))
    return CommonGenReport(items=judged)
