"""grade_math: math-verify equivalences, rejections, the plain-number rule, the safety screen and threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from gift.grading import MAX_ANSWER_CHARS, grade_math, is_safe_answer, parse_math

EQUIVALENT = [
    ("0.75", "3/4"),
    ("3/4", "\\frac{3}{4}"),
    ("\\dfrac34", "3/4"),
    ("\\frac{6}{8}", "3/4"),
    ("-0.5", "-\\frac{1}{2}"),
    ("3 \\frac{1}{2}", "7/2"),
    ("3.5", "7/2"),
    ("\\boxed{12}", "12"),
    ("12.", "12"),
    ("12.0", "12"),
    ("$12$", "12"),
    ("\\(12\\)", "12"),
    ("\\[12\\]", "12"),
    ("x = 5", "5"),
    ("x=5", "5"),
    ("5", "x=5"),
    ("1,000", "1000"),
    ("50\\%", "\\frac{1}{2}"),
    ("25%", "25"),
    ("2^{1/2}", "\\sqrt{2}"),
    ("\\{2, 1\\}", "\\{1,2\\}"),
    ("[1,2)", "[1, 2)"),
    ("(3, 4)", "(3,4)"),
    ("0.333333", "\\frac{1}{3}"),
    ("(A)", "\\text{(A)}"),
]

NOT_EQUIVALENT = [
    ("0.7", "3/4"),
    ("\\frac{4}{3}", "3/4"),
    ("0.333", "\\frac{1}{3}"),
    ("-3", "3"),
    ("[1,2]", "[1,2)"),
    ("(1, 3)", "(1,2)"),
    ("1, 2, 3", "3"),  # a list of candidates is not the answer, even if it ends with it
    ("3, 4", "4"),
    ("x", "2"),
    ("hello", "2"),
    ("12 dollars and change", "7"),
    ("<answer>", "1"),
    ("", "5"),
    ("   ", "5"),
    ("\\frac{", "1/2"),
]


# Gold answers as MATH writes them: money with an escaped dollar, units, percentages, intervals and tuples.
EQUIVALENT_BY_KIND = {
    "money": [
        ("\\$18.90", "\\$18.90"),  # an escaped-dollar gold answer matches itself
        ("18.90", "\\$18.90"),
        ("18.9", "\\$18.90"),
        ("\\$18.90", "18.9"),
        ("$18.90$", "\\$18.90"),
        ("18.90\\$", "\\$18.90"),
        ("\\$1,000", "1000"),
        ("\\$0.50", "\\frac{1}{2}"),
        ("\\boxed{\\$42}", "\\$42"),
    ],
    "units": [
        ("5\\text{ cm}", "5"),
        ("5 cm", "5\\text{ cm}"),
        ("5\\text{ cm}^2", "5"),
        ("45^\\circ", "45"),
        ("45", "45^\\circ"),
    ],
    "percent": [("50\\%", "0.5"), ("50\\%", "50\\%"), ("12.5\\%", "\\frac{1}{8}")],
    "interval": [
        ("(-\\infty, 3]", "(-\\infty,3]"),
        ("[2,\\infty)", "[2, \\infty)"),
        ("(-1, 1)", "(-1,1)"),
        ("(-\\infty,-2) \\cup (3,\\infty)", "(-\\infty,-2)\\cup(3,\\infty)"),
    ],
    "tuple": [("(1,2,3)", "(1, 2, 3)"), ("(3,-4)", "\\left(3,-4\\right)"), ("(\\frac{1}{2}, 2)", "(0.5,2)")],
}

NOT_EQUIVALENT_BY_KIND = {
    "money": [("\\$18.91", "\\$18.90"), ("\\$19", "\\$18.90"), ("18", "\\$18.90"), ("", "\\$18.90")],
    "units": [("6\\text{ cm}", "5"), ("50^\\circ", "45^\\circ")],
    "percent": [("5\\%", "50\\%"), ("0.4", "50\\%")],
    "interval": [("(-\\infty, 3)", "(-\\infty,3]"), ("(2,\\infty)", "[2,\\infty)"), ("[-1,1]", "(-1,1)")],
    "tuple": [("(1,3,2)", "(1,2,3)"), ("(4,3)", "(3,4)"), ("(1,2)", "(1,2,3)")],
}


def _by_kind(table):
    return [pytest.param(a, g, id=f"{kind}:{a}|{g}") for kind, pairs in table.items() for a, g in pairs]


@pytest.mark.parametrize(("answer", "gold"), _by_kind(EQUIVALENT_BY_KIND))
def test_money_units_percent_intervals_tuples_are_graded_right(answer, gold):
    assert grade_math(answer, gold) is True


@pytest.mark.parametrize(("answer", "gold"), _by_kind(NOT_EQUIVALENT_BY_KIND))
def test_wrong_money_units_percent_intervals_tuples_are_graded_wrong(answer, gold):
    assert grade_math(answer, gold) is False


def test_escaped_dollar_is_money_not_a_math_delimiter():
    assert [str(x) for x in parse_math("\\$18.90")][:1] == ["18.9000000000000"]
    assert grade_math("\\$18.90", "\\$18.90", plain_number=True) is True
    assert grade_math("\\$18.91", "\\$18.90", plain_number=True) is False


@pytest.mark.parametrize(("answer", "gold"), EQUIVALENT)
def test_equivalent_answers_are_graded_right(answer, gold):
    assert grade_math(answer, gold) is True


@pytest.mark.parametrize(("answer", "gold"), NOT_EQUIVALENT)
def test_wrong_or_garbage_answers_are_graded_wrong(answer, gold):
    assert grade_math(answer, gold) is False


def test_empty_gold_and_non_text_never_match():
    assert grade_math("5", "") is False
    assert grade_math(None, "5") is False  # type: ignore[arg-type]
    assert grade_math("5", 5) is False  # type: ignore[arg-type]


def test_whole_answer_is_parsed_not_its_last_number():
    # Wrapping in $…$ keeps ratios and intervals whole instead of extracting "4" or "2".
    assert grade_math("3:4", "3/4") is True
    assert grade_math("3:4", "4") is False
    assert [str(x) for x in parse_math("(1, 2)")][:1] == ["Interval.open(1, 2)"]


def test_plain_number_rule_rejects_expressions_still_to_compute():
    assert grade_math("(3+4)*2", "14") is True
    assert grade_math("(3+4)*2", "14", plain_number=True) is False
    assert grade_math("7 + 7", "14", plain_number=True) is False
    assert grade_math("10^2", "100", plain_number=True) is False
    for answer in ("14", "14.0", "\\boxed{14}", "x = 14", "1400\\%"):
        assert grade_math(answer, "14", plain_number=True) is True, answer
    assert grade_math("-\\frac{3}{4}", "-3/4", plain_number=True) is True
    assert grade_math("75%", "3/4", plain_number=True) is True
    assert grade_math("15", "14", plain_number=True) is False


@pytest.mark.parametrize(
    "answer",
    [
        "9^{9^{9^{9}}}",
        "10^{10^{10}}",
        "10^{10}^{10}",
        "2**2**40",
        "10^{12345678}",
        "1000000!",
        "(10^{100})!",
        "\\binom{1000000}{500000}",
        "\\prod_{k=1}^{1000000000} k",
        "(" * 40 + "1" + ")" * 40,
        "1" * (MAX_ANSWER_CHARS + 1),
    ],
)
def test_explosive_answers_are_screened_and_graded_wrong(answer):
    assert is_safe_answer(answer) is False
    assert grade_math(answer, "5") is False


@pytest.mark.parametrize("answer", ["10^{100}", "2^{10}", "5!", "\\binom{10}{3}", "\\frac{1}{2}", "(1, 2]"])
def test_ordinary_answers_pass_the_screen(answer):
    assert is_safe_answer(answer) is True


def test_small_factorials_and_binomials_still_grade():
    assert grade_math("5!", "120") is True
    assert grade_math("\\binom{5}{2}", "10") is True


def test_grading_in_worker_threads_matches_the_main_thread():
    pairs = [
        ("0.75", "3/4"),
        ("x = 5", "5"),
        ("\\boxed{7}", "8"),
        ("[1,2)", "[1,2)"),
        ("", "1"),
        ("9^{9^{9}}", "1"),
    ]
    expected = [grade_math(a, g) for a, g in pairs]
    assert expected == [True, True, False, True, False, False]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda pair: grade_math(*pair), pairs))
        plain = list(
            pool.map(lambda pair: grade_math(*pair, plain_number=True), [("2*7", "14"), ("14", "14")])
        )
    assert results == expected
    assert plain == [False, True]
