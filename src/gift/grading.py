"""Math answer grading with math-verify, shared by the `math-v0` game and evaluation.

    grade_math("0.75", "\\frac{3}{4}")  -> True

An answer block holds just the final answer, so both texts are parsed as one LaTeX formula (wrapped in `$…$`
unless they already carry math delimiters or `\\boxed{}`), which keeps "3:4", "[1,2)" or "x = 5, y = 3" whole
instead of extracting their last number; plain extraction is the fallback when that yields nothing. An escaped
dollar (`\\$18.90`, money in MATH gold answers) is not a delimiter, so such answers are wrapped too.

Threads: math-verify enforces its timeouts with `signal.alarm`, which only works in the main thread. We keep
them there and switch them off elsewhere (rollout workers), so grading never raises in a thread. Because a
timeout cannot stop a runaway computation off the main thread, answers that could make sympy evaluate an
enormous number (power towers, huge factorials, binomials or products, very long or deeply nested text) are
screened out first and graded wrong. The gold answer is trusted and not screened.
"""

from __future__ import annotations

import re
import threading
from typing import Any

MAX_ANSWER_CHARS = 400
"""Longer answers are graded wrong unparsed: final answers are short, and parsing cost grows with length."""
MAX_NESTING = 12
"""Deeper bracket nesting is graded wrong unparsed (parsing time explodes with depth)."""
MAIN_THREAD_TIMEOUT_S = 5
"""math-verify's own per-parse and per-comparison timeout, applied only in the main thread."""

_DELIMITED = re.compile(r"(?<!\\)\$|\\\(|\\\[|\\boxed|\\fbox")
"""Math delimiters that make an answer parseable as is. An escaped dollar (`\\$18.90`, money) is text, not a
delimiter: such answers are wrapped like any other, and math-verify's LaTeX normalisation drops the `\\$`."""
_DISPLAY_MATH = re.compile(r"^\\\[(.*)\\\]$|^\\\((.*)\\\)$", re.DOTALL)
_HEAVY_OPERATOR = re.compile(r"!|\\[dt]?binom|\\choose|\\prod|\\sum|\\Gamma|\\Pi")
_INTEGER = re.compile(r"\d+")
_BIG_EXPONENT_DIGITS = 7
_BIG_HEAVY_ARGUMENT = 10_000


def grade_math(answer: str, gold: str, *, plain_number: bool = False) -> bool:
    """True when `answer` is mathematically equivalent to `gold` by math-verify.

    `plain_number` additionally requires the answer to be a number (integer, decimal, fraction, percentage,
    optionally written as "x = …") rather than an expression still to be evaluated, so that copying "(3 + 4) × 2"
    back does not count as solving it. Empty, garbage, unsafe or unparsable answers are wrong; never raises.
    """
    if not isinstance(answer, str) or not isinstance(gold, str):
        return False
    answer, gold = answer.strip(), gold.strip()
    if not answer or not gold or not is_safe_answer(answer):
        return False
    from math_verify import verify
    from math_verify.errors import TimeoutException

    try:
        gold_parsed = parse_math(gold)
        answer_parsed = parse_math(answer)
        if not gold_parsed or not answer_parsed:
            return False
        if plain_number and not is_plain_number(_first_expression(answer_parsed)):
            return False
        return bool(verify(gold_parsed, answer_parsed, timeout_seconds=_timeout()))
    except (Exception, TimeoutException):
        return False


def parse_math(text: str) -> list[Any]:
    """math-verify's parse of a final answer (sympy objects, then the matched string); [] when unreadable."""
    from math_verify import parse

    text = text.strip()
    display = _DISPLAY_MATH.match(text)
    if display:
        text = (display.group(1) or display.group(2) or "").strip()
    timeout = _timeout()
    if not _DELIMITED.search(text):
        wrapped = parse(f"${text}$", parsing_timeout=timeout)
        if _first_expression(wrapped) is not None:
            return wrapped
    return parse(text, parsing_timeout=timeout)


def is_plain_number(expr: Any) -> bool:
    """A bare number, a percentage, or "symbol = number" — nothing left to compute."""
    from sympy import Eq, Mul, Number, Rational, Symbol, UnevaluatedExpr

    if isinstance(expr, Eq) and isinstance(expr.lhs, Symbol):
        expr = expr.rhs
    if isinstance(expr, Number):
        return True
    percent = UnevaluatedExpr(Rational(1, 100))
    if isinstance(expr, Mul) and len(expr.args) == 2 and percent in expr.args:
        return all(isinstance(a, Number) or a == percent for a in expr.args)
    return False


def is_safe_answer(text: str) -> bool:
    """False for answers that could make sympy compute an enormous number or parse for a very long time."""
    if len(text) > MAX_ANSWER_CHARS or _nesting_depth(text) > MAX_NESTING:
        return False
    text = text.replace("**", "^")
    heavy = _HEAVY_OPERATOR.search(text) is not None
    if heavy and ("^" in text or any(int(n) >= _BIG_HEAVY_ARGUMENT for n in _INTEGER.findall(text))):
        return False
    for start in (i for i, ch in enumerate(text) if ch == "^"):
        exponent, end = _exponent_at(text, start + 1)
        if "^" in exponent or _HEAVY_OPERATOR.search(exponent):
            return False  # a power tower
        if any(len(n) >= _BIG_EXPONENT_DIGITS for n in _INTEGER.findall(exponent)):
            return False
        if text[end:].lstrip().startswith("^"):
            return False  # chained exponents: a^{b}^{c}
    return True


def _exponent_at(text: str, pos: int) -> tuple[str, int]:
    """The exponent starting at `pos` (a braced group, a digit run or one character) and where it ends."""
    while pos < len(text) and text[pos] == " ":
        pos += 1
    if pos < len(text) and text[pos] in "{(":
        depth = 0
        for end in range(pos, len(text)):
            if text[end] in "{(":
                depth += 1
            elif text[end] in "})":
                depth -= 1
                if depth == 0:
                    return text[pos + 1 : end], end + 1
        return text[pos + 1 :], len(text)
    digits = _INTEGER.match(text, pos)
    if digits:
        return digits.group(), digits.end()
    return text[pos : pos + 1], pos + 1


def _nesting_depth(text: str) -> int:
    depth = deepest = 0
    for ch in text:
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]}" and depth > 0:
            depth -= 1
    return deepest


def _first_expression(parsed: list[Any]) -> Any:
    """The first sympy object of a parse result (the strings after it are only the matched text)."""
    return next((p for p in parsed if not isinstance(p, str)), None)


def _timeout() -> int | None:
    """math-verify's signal-based timeout works only in the main thread; elsewhere it must be off."""
    return MAIN_THREAD_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None
