"""math-v0: generator correctness (independent re-solve), determinism, options, data loading and rewards."""

from __future__ import annotations

import ast
import json
import random
import re
import threading
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gift.errors import ConfigError
from gift.games import make
from gift.games.math import MathProblem
from gift.games.math_data import last_boxed, load_problems
from gift.games.math_generator import LEVELS, TEMPLATES, GeneratedProblem, format_number, generate_problem
from gift.games.protocol import FORMAT_PENALTY
from gift.grading import grade_math


def reply(answer: str) -> str:
    return f"<think>working it out</think><answer>{answer}</answer>"


# ----------------------------------------------------------------------------- an independent checker
def evaluate(expression: str, values: dict[str, Fraction]) -> Fraction:
    """Exact value of an ASCII arithmetic expression; walks the syntax tree, never evaluates text."""

    def walk(node: ast.AST) -> Fraction:
        match node:
            case ast.Expression(body=body):
                return walk(body)
            case ast.Constant(value=int() as v):
                return Fraction(v)
            case ast.Name(id=name):
                return values[name]
            case ast.UnaryOp(op=ast.USub(), operand=operand):
                return -walk(operand)
            case ast.BinOp(left=left, op=op, right=right):
                a, b = walk(left), walk(right)
                if isinstance(op, ast.Add):
                    return a + b
                if isinstance(op, ast.Sub):
                    return a - b
                if isinstance(op, ast.Mult):
                    return a * b
                if isinstance(op, ast.Div):
                    return a / b
        raise AssertionError(f"unexpected syntax in {expression!r}: {ast.dump(node)}")

    return walk(ast.parse(expression.strip(), mode="eval"))


def rank(rows: list[list[Fraction]]) -> int:
    rows = [row[:] for row in rows]
    rank_, cols = 0, len(rows[0]) if rows else 0
    for col in range(cols):
        pivot = next((r for r in range(rank_, len(rows)) if rows[r][col] != 0), None)
        if pivot is None:
            continue
        rows[rank_], rows[pivot] = rows[pivot], rows[rank_]
        for r in range(len(rows)):
            if r != rank_ and rows[r][col] != 0:
                factor = rows[r][col] / rows[rank_][col]
                rows[r] = [x - factor * y for x, y in zip(rows[r], rows[rank_], strict=True)]
        rank_ += 1
    return rank_


def assert_witness_solves_uniquely(problem: GeneratedProblem) -> None:
    """The witness is a linear system whose only solution is `values`, and values["ans"] is the gold answer."""
    assert problem.values["ans"] == problem.answer
    names = sorted(problem.values)
    zero = dict.fromkeys(names, Fraction(0))
    matrix = []
    for equation in problem.equations:
        lhs, rhs = equation.split("=")

        def residual(vals, lhs=lhs, rhs=rhs):
            return evaluate(lhs, vals) - evaluate(rhs, vals)

        assert residual(problem.values) == 0, (equation, problem.values)
        const = residual(zero)
        coefs = [residual({**zero, n: Fraction(1)}) - const for n in names]
        probe = {n: Fraction(i + 2, 3) for i, n in enumerate(names)}  # linearity: exact at a second point
        assert residual(probe) == const + sum(c * probe[n] for c, n in zip(coefs, names, strict=True))
        matrix.append(coefs)
    assert rank(matrix) == len(names), f"{problem.template}: answer not pinned down by {problem.equations}"


def shown_to_ascii(expression: str) -> str:
    return expression.replace("×", "*").replace("÷", "/")


# ----------------------------------------------------------------------------- generator
ALL_TEMPLATES = [(level, name, make_one) for level in LEVELS for name, make_one in TEMPLATES[level]]


def test_each_level_has_several_templates():
    assert all(len(TEMPLATES[level]) >= 4 for level in LEVELS)


@pytest.mark.parametrize(("level", "name", "make_one"), ALL_TEMPLATES, ids=[t[1] for t in ALL_TEMPLATES])
def test_every_template_gold_is_recomputed_exactly(level, name, make_one):
    for seed in range(25):
        problem = make_one(random.Random(seed))
        assert (problem.level, problem.template) == (level, name)
        assert isinstance(problem.answer, Fraction)
        assert_witness_solves_uniquely(problem)
        if problem.expression is not None:  # the expression the reader sees has the gold value
            assert problem.expression in problem.text
            assert evaluate(shown_to_ascii(problem.expression), {}) == problem.answer
        assert "<answer>" in problem.text


@given(seed=st.integers(0, 2**32 - 1), level=st.sampled_from(LEVELS))
@settings(max_examples=150, deadline=None)
def test_generated_gold_is_recomputed_for_any_seed(seed, level):
    problem = generate_problem(random.Random(seed), level)
    assert problem.level == level
    assert_witness_solves_uniquely(problem)
    assert Fraction(format_number(problem.answer)) == problem.answer


_IMPLICIT_PRODUCT = re.compile(r"(\d)(?=[a-z(])")


def test_equations_shown_in_the_text_hold_for_the_gold_answer():
    """Re-read the rendered equations of the equation templates and substitute the answer back in."""
    checked = 0
    for name in ("linear", "brackets", "system"):
        make_one = dict(TEMPLATES[3])[name]
        for seed in range(30):
            problem = make_one(random.Random(seed))
            lines = [line for line in problem.text.splitlines() if " = " in line]
            assert lines
            for line in lines:
                equation = line.split(": ", 1)[-1].split(" if ", 1)[-1].rstrip(".")
                equation = _IMPLICIT_PRODUCT.sub(r"\1*", equation)
                variables = set(re.findall(r"[a-z]", equation))
                values = {v: problem.values.get(v, problem.answer) for v in variables}
                lhs, rhs = equation.split(" = ")
                assert evaluate(lhs, values) == evaluate(rhs, values), (problem.text, values)
                checked += 1
    assert checked >= 120


@pytest.mark.parametrize(("level", "name", "make_one"), ALL_TEMPLATES, ids=[t[1] for t in ALL_TEMPLATES])
def test_math_verify_accepts_every_templates_own_gold(level, name, make_one):
    for seed in range(2):
        problem = make_one(random.Random(seed))
        gold = format_number(problem.answer)
        assert grade_math(gold, gold, plain_number=True)
        assert not grade_math(format_number(problem.answer + 1), gold, plain_number=True)
        if problem.answer.denominator in (2, 4, 5, 8, 10, 20, 25):  # terminating decimals are exact too
            assert grade_math(str(float(problem.answer)), gold, plain_number=True)


def test_same_seed_same_problem_and_seeds_vary():
    game_a, game_b = MathProblem(), MathProblem()
    texts = set()
    for seed in range(30):
        obs_a, info_a = game_a.reset(seed=seed)
        obs_b, info_b = game_b.reset(seed=seed)
        assert (obs_a, info_a["gold_answer"]) == (obs_b, info_b["gold_answer"])
        texts.add(obs_a)
    assert len(texts) >= 28


def test_level_option_fixes_the_level_and_mixed_covers_all():
    for level in LEVELS:
        game = make("math-v0", level=level)
        assert {game.reset(seed=s)[1]["level"] for s in range(15)} == {level}
    mixed = MathProblem()
    infos = [mixed.reset(seed=s)[1] for s in range(90)]
    assert {i["level"] for i in infos} == set(LEVELS)
    assert len({i["template"] for i in infos}) >= 12
    assert MathProblem(level="2").level == 2


@pytest.mark.parametrize("options", [
    {"level": 0}, {"level": 4}, {"level": "hard"}, {"level": True}, {"level": 1.5}, {"data": 3},
    {"data": ""}, {"max_turns": 0}, {"parser": "loose"}, {"difficulty": 1},
])  # fmt: skip
def test_bad_options_raise_config_error(options):
    with pytest.raises(ConfigError):
        make("math-v0", **options)


# ----------------------------------------------------------------------------- rewards through step()
def test_correct_answers_in_any_equivalent_form_earn_one():
    game = MathProblem(level=3)
    for seed in range(4):
        _, info = game.reset(seed=seed)
        gold = info["gold_answer"]
        forms = [gold, f"x = {gold}", f"\\boxed{{{gold}}}"]
        value = Fraction(gold)
        if value.denominator != 1:
            forms.append(f"\\frac{{{value.numerator}}}{{{value.denominator}}}")
        for form in forms:
            game.reset(seed=seed)
            obs, reward, terminated, truncated, info = game.step(reply(form))
            assert (reward, terminated, truncated) == (1.0, True, False), form
            assert info["success"] is True and info["end_reason"] == "correct"
            assert info["terminal_reward"] == 1.0 and info["answer"] == form
            assert "is correct" in obs


def test_wrong_empty_and_unparsable_answers():
    game = MathProblem(level=1)
    _, info = game.reset(seed=11)
    wrong = str(Fraction(info["gold_answer"]) + 1)
    _, reward, terminated, _, info = game.step(reply(wrong))
    assert (reward, terminated, info["success"], info["end_reason"]) == (0.0, True, False, "wrong")
    game.reset(seed=11)
    _, reward, terminated, _, info = game.step(reply(""))
    assert (reward, terminated, info["end_reason"], info["answer"]) == (0.0, True, "wrong", "")
    game.reset(seed=11)
    _, reward, terminated, truncated, info = game.step(f"The answer is {info['gold_answer']}")
    assert (reward, terminated, truncated) == (FORMAT_PENALTY, False, True)
    assert info["format_error"] is True and info["end_reason"] == "out_of_turns"


def test_copying_the_expression_back_earns_nothing():
    game = MathProblem(level=1)
    copied = 0
    for seed in range(40):
        game.reset(seed=seed)
        if game.template not in ("nested", "negatives"):
            continue
        expression = re.search(r"(?:Evaluate:|Compute:|Work out:|Find the value of) (.+)", game.problem_text)
        assert expression is not None
        _, reward, *_ = game.step(reply(shown_to_ascii(expression.group(1))))
        assert reward == 0.0
        copied += 1
        if copied == 3:
            break
    assert copied == 3


def test_step_works_from_a_worker_thread():
    game = MathProblem(level=2)
    _, info = game.reset(seed=5)
    results = []
    worker = threading.Thread(target=lambda: results.append(game.step(reply(info["gold_answer"]))[1]))
    worker.start()
    worker.join()
    assert results == [1.0]


def test_game_info_reports_problem_level_gold_and_answer():
    game = MathProblem(level=2)
    _, info = game.reset(seed=9)
    assert info["source"] == "generated" and info["level"] == 2 and info["problem_index"] is None
    assert info["problem_id"] == f"L2-{info['template']}-seed9"
    assert info["answer"] is None and info["gold_answer"] == game.gold
    game.step(reply("0"))
    assert game.last_info["answer"] == "0" and game.last_info["gold_answer"] == info["gold_answer"]


# ----------------------------------------------------------------------------- data files
ROWS = [
    {"problem": "What is 1/2 + 1/4?", "answer": "\\frac{3}{4}", "unique_id": "p-0"},
    {"question": "Compute 2 + 3.", "solution": "We add: $2+3=\\boxed{5}$."},
    {"problem": "Name the interval.", "answer": "[1,2)"},
]


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_jsonl_loader_accepts_aliases_and_draws_by_seed(tmp_path):
    path = write_jsonl(tmp_path / "set.jsonl", ROWS)
    records = load_problems(path)
    assert [(r.problem, r.answer, r.id) for r in records] == [
        ("What is 1/2 + 1/4?", "\\frac{3}{4}", "p-0"),
        ("Compute 2 + 3.", "5", "1"),
        ("Name the interval.", "[1,2)", "2"),
    ]
    game = make("math-v0", data=str(path))
    seen = set()
    for seed in range(30):
        obs, info = game.reset(seed=seed)
        assert info["source"] == "data" and info["level"] is None
        assert obs.startswith(
            ROWS[info["problem_index"]].get("problem") or ROWS[info["problem_index"]]["question"]
        )
        assert game.reset(seed=seed)[1]["problem_index"] == info["problem_index"]
        seen.add(info["problem_index"])
    assert seen == {0, 1, 2}


def test_data_rewards_use_math_verify_equivalence(tmp_path):
    game = MathProblem(data=write_jsonl(tmp_path / "set.jsonl", ROWS))
    answers = {0: ("0.75", "0.7"), 1: ("5", "6"), 2: ("[1, 2)", "[1,2]")}
    done = set()
    for seed in range(40):
        _, info = game.reset(seed=seed)
        index = info["problem_index"]
        right, wrong = answers[index]
        assert game.step(reply(right))[1] == 1.0
        game.reset(seed=seed)
        assert game.step(reply(wrong))[1] == 0.0
        done.add(index)
        if done == set(answers):
            break
    assert done == set(answers)


def test_data_is_loaded_once_not_per_reset(tmp_path):
    path = write_jsonl(tmp_path / "set.jsonl", ROWS)
    assert load_problems(path) is load_problems(str(path))
    game = MathProblem(data=str(path))
    path.unlink()
    assert game.reset(seed=3)[1]["gold_answer"] in {"\\frac{3}{4}", "5", "[1,2)"}


def test_parquet_json_and_csv_loaders(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    verl_rows = [
        {"prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "What is 6 x 7?"}],
         "reward_model": {"ground_truth": "42", "style": "rule"}, "id": 17},
        {"prompt": [{"role": "user", "content": "Half of 9?"}],
         "reward_model": {"ground_truth": "\\frac{9}{2}", "style": "rule"}, "id": 18},
    ]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(verl_rows), tmp_path / "train.parquet")
    records = load_problems(tmp_path / "train.parquet")
    assert [(r.problem, r.answer, r.id) for r in records] == [
        ("What is 6 x 7?", "42", "17"),
        ("Half of 9?", "\\frac{9}{2}", "18"),
    ]

    (tmp_path / "set.json").write_text(json.dumps({"data": [{"Question": "Q?", "final_answer": 12.0}]}))
    assert [(r.problem, r.answer) for r in load_problems(tmp_path / "set.json")] == [("Q?", "12")]

    (tmp_path / "gsm.csv").write_text('question,answer\n"How many?","3 + 4 = 7\n#### 7"\n', encoding="utf-8")
    assert [(r.problem, r.answer) for r in load_problems(tmp_path / "gsm.csv")] == [("How many?", "7")]

    game = MathProblem(data=tmp_path / "train.parquet")
    _, info = game.reset(seed=0)
    assert game.step(reply("42" if info["problem_index"] == 0 else "4.5"))[1] == 1.0


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "math.jsonl"
    with pytest.raises(ConfigError, match=re.escape(str(missing))):
        make("math-v0", data=str(missing))


@pytest.mark.parametrize(("content", "message"), [
    ('{"problem": "Q?"}\n', "has no answer"),
    ('{"answer": "3"}\n', "has no problem text"),
    ('{"question": "Q?", "solution": "no box here"}\n', "has no answer"),
    ('{"problem": "Q?", "answer": "1"}\nnot json\n', ":2 is not valid JSON"),
    ("\n\n", "holds no problems"),
    ('["just a string"]\n', "not an object"),
])  # fmt: skip
def test_bad_rows_raise_config_error(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_problems(path)


def test_unsupported_file_type_and_level_with_data(tmp_path):
    (tmp_path / "set.txt").write_text("What is 1+1? 2")
    with pytest.raises(ConfigError, match="unsupported type"):
        make("math-v0", data=str(tmp_path / "set.txt"))
    with pytest.raises(ConfigError, match="level=2"):
        make("math-v0", data=str(write_jsonl(tmp_path / "set.jsonl", ROWS)), level=2)


def test_hub_dataset_offline_is_a_clear_config_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ConfigError, match="math-v0: .*gift-test-missing/none"):
        make("math-v0", data="hf:gift-test-missing/none:train")
    with pytest.raises(ConfigError, match="must look like"):
        make("math-v0", data="hf:")


def test_last_boxed_matches_nested_braces():
    assert last_boxed("so $\\boxed{\\frac{1}{2}}$ and finally \\boxed{\\sqrt{3}}.") == "\\sqrt{3}"
    assert last_boxed("\\boxed{\\frac{1}{2}") == ""
    assert last_boxed("no answer") == ""
