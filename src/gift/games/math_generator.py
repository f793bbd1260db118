"""Built-in generator of verifiable math problems, so `math-v0` trains without any dataset.

Three levels, each with several templates of our own:

1. integer arithmetic: multi-step expressions with parentheses, negatives, small word problems;
2. fractions, percentages and ratios;
3. linear equations in one unknown, 2x2 systems and word problems that reduce to them.

Every answer is an exact `Fraction`, computed from the numbers drawn rather than parsed back from text. Each
problem also carries a *witness*: linear relations in plain ASCII (`equations`) that hold for the recorded
`values` (the key "ans" is the answer). Tests solve the witness independently, which checks that the gold
answer is right and unique without trusting the generator's own arithmetic.
"""

from __future__ import annotations

import operator
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction

LEVELS = (1, 2, 3)
_OPERATIONS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}

INTEGER_INSTRUCTION = "Write only the final number inside <answer> </answer>, with no words or units."
EXACT_INSTRUCTION = (
    "Give the exact value as an integer or a fraction in lowest terms (for example 7/3) and write only that "
    "number inside <answer> </answer>, with no words or units."
)


@dataclass(frozen=True)
class GeneratedProblem:
    text: str
    answer: Fraction
    level: int
    template: str
    equations: tuple[str, ...]
    """Linear relations ("lhs = rhs", ASCII) that hold under `values`; they pin the answer down uniquely."""
    values: dict[str, Fraction] = field(default_factory=dict)
    expression: str | None = None
    """For "evaluate this" templates: the expression exactly as shown in `text`."""


def format_number(value: Fraction) -> str:
    """Plain text of an exact value: "12", "-3/4" (the form math-verify parses and the prompt asks for)."""
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _signed(value: Fraction | int) -> str:
    """A number as an operand: negatives in parentheses, so "3 × (-4)" never reads as "3 × -4"."""
    text = format_number(Fraction(value))
    return f"({text})" if value < 0 else text


def _problem(
    text: str,
    answer: Fraction,
    level: int,
    template: str,
    equations: list[str],
    values: dict[str, Fraction] | None = None,
    expression: str | None = None,
) -> GeneratedProblem:
    values = {**(values or {}), "ans": answer}
    return GeneratedProblem(text, answer, level, template, (*equations,), values, expression)


# ----------------------------------------------------------------------------- expression trees
@dataclass(frozen=True)
class _Expr:
    shown: str  # as displayed: × ÷ and fractions a/b
    ascii: str  # fully parenthesised ASCII for the witness
    value: Fraction
    kind: str = "compound"  # "int", "frac" or "compound": decides where the display needs brackets


def _leaf(value: Fraction) -> _Expr:
    if value.denominator != 1:
        return _Expr(format_number(value), f"({format_number(value)})", value, "frac")
    return _Expr(_signed(value), f"({value.numerator})", value, "int")


def _combine(op: str, left: _Expr, right: _Expr) -> _Expr:
    """Join two operands; brackets go around compound operands and around a fraction after ÷."""
    value = _OPERATIONS[op](left.value, right.value)
    symbol = {"+": "+", "-": "-", "*": "×", "/": "÷"}[op]
    lhs = f"({left.shown})" if left.kind == "compound" else left.shown
    bracket_right = right.kind == "compound" or (right.kind == "frac" and op == "/")
    rhs = f"({right.shown})" if bracket_right else right.shown
    return _Expr(f"{lhs} {symbol} {rhs}", f"({left.ascii} {op} {right.ascii})", value)


def _random_tree(rng: random.Random, leaves: int, draw_leaf: Callable[[], Fraction], cap: int) -> _Expr:
    """A random binary expression over `leaves` operands; products stay below `cap`, divisions are exact."""
    if leaves == 1:
        return _leaf(draw_leaf())
    split = rng.randint(1, leaves - 1)
    left = _random_tree(rng, split, draw_leaf, cap)
    right = _random_tree(rng, leaves - split, draw_leaf, cap)
    op = rng.choice("+-*/")
    if op == "/" and (right.value == 0 or (left.value / right.value).denominator != 1):
        op = "*"
    if op == "*" and abs(left.value * right.value) > cap:
        op = rng.choice("+-")
    return _combine(op, left, right)


def _evaluate_problem(tree: _Expr, level: int, template: str, lead: str) -> GeneratedProblem:
    instruction = INTEGER_INSTRUCTION if tree.value.denominator == 1 else EXACT_INSTRUCTION
    text = f"{lead} {tree.shown}\n\n{instruction}"
    return _problem(text, tree.value, level, template, [f"ans = {tree.ascii}"], expression=tree.shown)


# ----------------------------------------------------------------------------- level 1
def _l1_nested(rng: random.Random) -> GeneratedProblem:
    tree = _random_tree(rng, rng.randint(3, 5), lambda: Fraction(rng.randint(1, 20)), cap=400)
    return _evaluate_problem(tree, 1, "nested", rng.choice(("Evaluate:", "Compute:", "Work out:")))


def _l1_negatives(rng: random.Random) -> GeneratedProblem:
    tree = _random_tree(
        rng, rng.randint(3, 4), lambda: Fraction(rng.choice((-1, 1)) * rng.randint(1, 15)), 300
    )
    return _evaluate_problem(tree, 1, "negatives", "Find the value of")


def _l1_grouped(rng: random.Random) -> GeneratedProblem:
    """a × (b ± c) − d ÷ e: precedence with one bracket and one exact division."""
    a, b, c, e, q = (rng.randint(2, 12) for _ in range(5))
    d = e * q
    inner = _combine(rng.choice("+-"), _leaf(Fraction(b)), _leaf(Fraction(c)))
    product = _combine("*", _leaf(Fraction(a)), inner)
    quotient = _combine("/", _leaf(Fraction(d)), _leaf(Fraction(e)))
    shown = f"{a} × ({inner.shown}) - {d} ÷ {e}"
    value = product.value - quotient.value
    tree = _Expr(shown, f"({product.ascii} - {quotient.ascii})", value)
    return _evaluate_problem(tree, 1, "grouped", "Using the usual order of operations, evaluate")


def _l1_stock(rng: random.Random) -> GeneratedProblem:
    trays, per, extra = rng.randint(3, 9), rng.randint(6, 24), rng.randint(2, 5)
    sold_am = rng.randint(1, trays * per // 2)
    sold_pm = rng.randint(0, trays * per - sold_am)
    answer = Fraction(trays * per - sold_am - sold_pm + extra * per)
    text = (
        f"A bakery bakes {trays} trays with {per} rolls on each tray. It sells {sold_am} rolls in the "
        f"morning and {sold_pm} in the afternoon, then bakes {extra} more trays of the same size. "
        f"How many rolls does it have at the end of the day?\n\n{INTEGER_INSTRUCTION}"
    )
    return _problem(
        text, answer, 1, "stock", [f"ans = {trays}*{per} - {sold_am} - {sold_pm} + {extra}*{per}"]
    )


def _l1_share(rng: random.Random) -> GeneratedProblem:
    groups, each, per_pack = rng.randint(2, 9), rng.randint(4, 30), rng.choice((4, 5, 6, 8, 10, 12))
    total = groups * each
    while total % per_pack:
        total += groups
    packs = total // per_pack
    kept = rng.randint(1, total // groups - 1) if total // groups > 1 else 0
    answer = Fraction(total // groups - kept)
    text = (
        f"A club buys {packs} packs of {per_pack} stickers and shares all of them equally among its "
        f"{groups} teams. Each team then gives away {kept} stickers. How many stickers does each team "
        f"have left?\n\n{INTEGER_INSTRUCTION}"
    )
    return _problem(text, answer, 1, "share", [f"ans = {packs}*{per_pack}/{groups} - {kept}"])


# ----------------------------------------------------------------------------- level 2
_FRIENDLY_DENOMINATORS = (2, 3, 4, 5, 6, 8, 9, 10, 12)


def _fraction(rng: random.Random, max_den: int = 12) -> Fraction:
    """A proper or improper fraction that is not a whole number, over a denominator people work with."""
    den = rng.choice([d for d in _FRIENDLY_DENOMINATORS if d <= max_den])
    num = rng.randint(1, 2 * den - 1)
    if num % den == 0:
        num += 1
    return Fraction(num, den)


def _l2_fraction_sum(rng: random.Random) -> GeneratedProblem:
    tree = _leaf(_fraction(rng))
    for _ in range(rng.randint(1, 2)):
        tree = _combine(rng.choice("+-"), tree, _leaf(_fraction(rng)))
    return _evaluate_problem(tree, 2, "fraction_sum", "Simplify")


def _l2_fraction_product(rng: random.Random) -> GeneratedProblem:
    inner = _combine(rng.choice("+-"), _leaf(_fraction(rng, 9)), _leaf(_fraction(rng, 9)))
    outer = _leaf(_fraction(rng, 9))
    op = rng.choice("*/")
    if op == "/" and inner.value == 0:
        op = "*"
    tree = _combine(op, inner, outer) if rng.random() < 0.5 or op == "/" else _combine(op, outer, inner)
    return _evaluate_problem(tree, 2, "fraction_product", "Compute")


def _l2_percent_of(rng: random.Random) -> GeneratedProblem:
    pct = Fraction(rng.choice((5, 10, 15, 20, 25, 30, 35, 40, 45, 60, 75, 120, 150, 250)))
    if rng.random() < 0.2:
        pct += Fraction(1, 2)
    base = rng.randint(2, 60) * rng.choice((2, 4, 5, 10))
    answer = pct * base / 100
    text = f"What is {format_decimal(pct)}% of {base}?\n\n{EXACT_INSTRUCTION}"
    return _problem(text, answer, 2, "percent_of", [f"ans = {format_number(pct)}/100 * {base}"])


def format_decimal(value: Fraction) -> str:
    """Terminating fractions as decimals ("12.5"), used where people write percentages or prices."""
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):g}"


def _l2_percent_change(rng: random.Random) -> GeneratedProblem:
    price = rng.randint(2, 40) * 5
    up, down = rng.choice((5, 10, 15, 20, 25, 40, 50)), rng.choice((5, 10, 20, 25, 30, 50))
    answer = Fraction(price) * (100 + up) / 100 * (100 - down) / 100
    item = rng.choice(("jacket", "bicycle", "lamp", "guitar", "kettle"))
    text = (
        f"A {item} costs {price} dollars. Its price is raised by {up}%, and the new price is then cut by "
        f"{down}%. What is the final price in dollars?\n\n{EXACT_INSTRUCTION}"
    )
    return _problem(
        text, answer, 2, "percent_change", [f"ans = {price} * (100 + {up})/100 * (100 - {down})/100"]
    )


def _l2_what_percent(rng: random.Random) -> GeneratedProblem:
    whole = rng.choice((8, 20, 25, 40, 50, 80, 125, 200, 250, 400))
    part = rng.randint(1, 2 * whole)
    answer = Fraction(100 * part, whole)
    text = (
        f"{part} is what percent of {whole}? Answer with the percentage as a number.\n\n{EXACT_INSTRUCTION}"
    )
    return _problem(text, answer, 2, "what_percent", [f"ans * {whole} = 100 * {part}"])


def _l2_ratio_split(rng: random.Random) -> GeneratedProblem:
    parts = [rng.randint(1, 9) for _ in range(rng.choice((2, 3)))]
    total = sum(parts) * rng.randint(2, 25)
    names = rng.sample(("Ana", "Ben", "Chloe", "Dev", "Eli", "Fay"), len(parts))
    ask = rng.randrange(len(parts))
    answer = Fraction(total * parts[ask], sum(parts))
    ratio = ":".join(str(p) for p in parts)
    text = (
        f"{', '.join(names[:-1])} and {names[-1]} share {total} marbles in the ratio {ratio}, in that "
        f"order. How many marbles does {names[ask]} get?\n\n{INTEGER_INSTRUCTION}"
    )
    return _problem(text, answer, 2, "ratio_split", [f"ans * {sum(parts)} = {total} * {parts[ask]}"])


def _l2_ratio_scale(rng: random.Random) -> GeneratedProblem:
    a, b, k = rng.randint(1, 9), rng.randint(1, 9), rng.randint(2, 15)
    fruit_a, fruit_b = rng.sample(("apples", "pears", "plums", "oranges", "lemons"), 2)
    ask_total = rng.random() < 0.5
    answer = Fraction(k * (a + b) if ask_total else k * b)
    question = "How many pieces of fruit are in the crate?" if ask_total else f"How many {fruit_b} are there?"
    text = (
        f"In a crate the ratio of {fruit_a} to {fruit_b} is {a}:{b}. There are {k * a} {fruit_a}. "
        f"{question}\n\n{INTEGER_INSTRUCTION}"
    )
    equations = [f"{b} * p = {a} * q", f"p = {k * a}", "ans = p + q" if ask_total else "ans = q"]
    return _problem(text, answer, 2, "ratio_scale", equations, {"p": Fraction(k * a), "q": Fraction(k * b)})


# ----------------------------------------------------------------------------- level 3
def _term(coef: int, name: str, first: bool) -> str:
    """One term of a linear expression as people write it: "3x", "- x", "+ 2y"."""
    magnitude = "" if abs(coef) == 1 else str(abs(coef))
    if first:
        return f"{'-' if coef < 0 else ''}{magnitude}{name}"
    return f"{'-' if coef < 0 else '+'} {magnitude}{name}"


def _constant(value: int) -> str:
    """A trailing constant term: " + 4", " - 4", or nothing for 0."""
    if value == 0:
        return ""
    return f" - {-value}" if value < 0 else f" + {value}"


def _nonzero(rng: random.Random, low: int, high: int) -> int:
    return rng.choice([v for v in range(low, high + 1) if v != 0])


def _l3_linear(rng: random.Random) -> GeneratedProblem:
    """a x + b = c x + d with a != c; x = p / (a - c) may be a fraction."""
    a, c = _nonzero(rng, -9, 9), _nonzero(rng, -9, 9)
    while c == a:
        c = _nonzero(rng, -9, 9)
    b = rng.randint(-20, 20)
    p = (a - c) * rng.randint(-10, 10) if rng.random() < 0.7 else rng.randint(-30, 30)
    x = Fraction(p, a - c)
    d = p + b
    var = rng.choice("xnt")
    text = (
        f"Solve for {var}: {_term(a, var, True)}{_constant(b)} = {_term(c, var, True)}{_constant(d)}\n\n"
        f"{EXACT_INSTRUCTION}"
    )
    return _problem(text, x, 3, "linear", [f"{a}*x + {b} = {c}*x + {d}", "ans = x"], {"x": x})


def _l3_brackets(rng: random.Random) -> GeneratedProblem:
    """a(y - b) + c = d(y + e), solved exactly: y = (d e + a b - c) / (a - d)."""
    a, d = rng.randint(2, 9), rng.randint(1, 9)
    while d == a:
        d = rng.randint(1, 9)
    b, c, e = rng.randint(1, 12), rng.randint(-15, 15), rng.randint(1, 12)
    y = Fraction(d * e + a * b - c, a - d)
    text = f"Find y if {a}(y - {b}){_constant(c)} = {d}(y + {e}).\n\n{EXACT_INSTRUCTION}"
    return _problem(text, y, 3, "brackets", [f"{a}*(y - {b}) + {c} = {d}*(y + {e})", "ans = y"], {"y": y})


def _l3_system(rng: random.Random) -> GeneratedProblem:
    x, y = rng.randint(-9, 9), rng.randint(-9, 9)
    while True:
        a1, b1, a2, b2 = (_nonzero(rng, -6, 6) for _ in range(4))
        if a1 * b2 - a2 * b1 != 0:
            break
    c1, c2 = a1 * x + b1 * y, a2 * x + b2 * y
    ask = rng.choice(("x", "y", "x + y", "x - y"))
    answer = Fraction({"x": x, "y": y, "x + y": x + y, "x - y": x - y}[ask])
    lines = [
        f"{_term(a1, 'x', True)} {_term(b1, 'y', False)} = {c1}",
        f"{_term(a2, 'x', True)} {_term(b2, 'y', False)} = {c2}",
    ]
    text = (
        f"The numbers x and y satisfy both equations\n{lines[0]}\n{lines[1]}\nWhat is the value of {ask}?"
        f"\n\n{INTEGER_INSTRUCTION}"
    )
    equations = [f"{a1}*x + {b1}*y = {c1}", f"{a2}*x + {b2}*y = {c2}", f"ans = {ask}"]
    return _problem(text, answer, 3, "system", equations, {"x": Fraction(x), "y": Fraction(y)})


def _l3_ages(rng: random.Random) -> GeneratedProblem:
    young, gap, later = rng.randint(3, 40), rng.randint(1, 30), rng.randint(1, 15)
    total = 2 * young + gap + 2 * later
    older, younger = rng.sample(("Maya", "Omar", "Lena", "Tomas", "Iris"), 2)
    ask_older = rng.random() < 0.5
    answer = Fraction(young + gap if ask_older else young)
    text = (
        f"{older} is {gap} years older than {younger}. In {later} years the sum of their ages will be "
        f"{total}. How old is {older if ask_older else younger} now?\n\n{INTEGER_INSTRUCTION}"
    )
    equations = [
        f"o = y + {gap}",
        f"(o + {later}) + (y + {later}) = {total}",
        "ans = o" if ask_older else "ans = y",
    ]
    return _problem(text, answer, 3, "ages", equations, {"o": Fraction(young + gap), "y": Fraction(young)})


def _l3_coins(rng: random.Random) -> GeneratedProblem:
    small, large = rng.choice(((5, 10), (10, 25), (2, 5), (5, 20), (20, 50)))
    n_small, n_large = rng.randint(1, 30), rng.randint(1, 30)
    count, worth = n_small + n_large, small * n_small + large * n_large
    ask_large = rng.random() < 0.5
    answer = Fraction(n_large if ask_large else n_small)
    text = (
        f"A jar holds {count} coins, each worth either {small} cents or {large} cents. Together they are "
        f"worth {worth} cents. How many {large if ask_large else small}-cent coins are in the jar?\n\n"
        f"{INTEGER_INSTRUCTION}"
    )
    equations = [
        f"s + l = {count}",
        f"{small}*s + {large}*l = {worth}",
        "ans = l" if ask_large else "ans = s",
    ]
    return _problem(text, answer, 3, "coins", equations, {"s": Fraction(n_small), "l": Fraction(n_large)})


def _l3_consecutive(rng: random.Random) -> GeneratedProblem:
    k, first = rng.randint(3, 7), rng.randint(-20, 60)
    step = rng.choice((1, 2))
    total = k * first + step * k * (k - 1) // 2
    kind = (
        "consecutive integers"
        if step == 1
        else "consecutive even integers"
        if first % 2 == 0
        else ("consecutive odd integers")
    )
    ask_largest = rng.random() < 0.5
    answer = Fraction(first + step * (k - 1) if ask_largest else first)
    text = (
        f"The sum of {k} {kind} is {total}. What is the {'largest' if ask_largest else 'smallest'} of "
        f"them?\n\n{INTEGER_INSTRUCTION}"
    )
    equations = [
        f"{k}*m + {step * k * (k - 1) // 2} = {total}",
        f"ans = m + {step * (k - 1)}" if ask_largest else "ans = m",
    ]
    return _problem(text, answer, 3, "consecutive", equations, {"m": Fraction(first)})


def _l3_meeting(rng: random.Random) -> GeneratedProblem:
    """Speeds and distance are drawn so that they meet after a whole number of half hours."""
    v1, v2 = rng.randint(8, 30), rng.randint(8, 30)
    half_hours = rng.randint(1, 10)
    if half_hours % 2 and (v1 + v2) % 2:
        v2 += 1
    answer = Fraction(half_hours, 2)
    distance = (v1 + v2) * half_hours // 2
    text = (
        f"Two cyclists start {distance} km apart and ride straight towards each other, one at {v1} km/h "
        f"and the other at {v2} km/h. After how many hours do they meet?\n\n{EXACT_INSTRUCTION}"
    )
    return _problem(text, answer, 3, "meeting", [f"{v1}*t + {v2}*t = {distance}", "ans = t"], {"t": answer})


TEMPLATES: dict[int, tuple[tuple[str, Callable[[random.Random], GeneratedProblem]], ...]] = {
    1: (
        ("nested", _l1_nested),
        ("negatives", _l1_negatives),
        ("grouped", _l1_grouped),
        ("stock", _l1_stock),
        ("share", _l1_share),
    ),
    2: (
        ("fraction_sum", _l2_fraction_sum),
        ("fraction_product", _l2_fraction_product),
        ("percent_of", _l2_percent_of),
        ("percent_change", _l2_percent_change),
        ("what_percent", _l2_what_percent),
        ("ratio_split", _l2_ratio_split),
        ("ratio_scale", _l2_ratio_scale),
    ),
    3: (
        ("linear", _l3_linear),
        ("brackets", _l3_brackets),
        ("system", _l3_system),
        ("ages", _l3_ages),
        ("coins", _l3_coins),
        ("consecutive", _l3_consecutive),
        ("meeting", _l3_meeting),
    ),
}


def generate_problem(rng: random.Random, level: int) -> GeneratedProblem:
    """Draw one problem of `level` (1, 2 or 3); everything comes from `rng`, so a seed fixes the problem."""
    if level not in TEMPLATES:
        raise ValueError(f"level={level!r}; choose one of {LEVELS}")
    _, make = rng.choice(TEMPLATES[level])
    return make(rng)
