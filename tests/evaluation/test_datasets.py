"""Loading benchmark items from the shapes of the public datasets, and one-line errors for bad data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from gift.errors import ConfigError
from gift.evaluation.datasets import BENCHMARKS, format_prompt, load_items, parse_hf_source
from gift.evaluation.scorers import score_choice, score_math

DATA = Path(__file__).parent / "data"


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_mmlu_index_answers_become_letters() -> None:
    items = load_items("mmlu", str(DATA / "mmlu.jsonl"))
    assert [it.gold for it in items] == ["B", "A", "C", "D"]
    first = items[0]
    assert first.options == ("Venus", "Mercury", "Mars", "Earth")
    assert first.id == "0" and first.meta["subject"] == "astronomy"
    assert first.is_multiple_choice and first.n_options == 4


def test_mmlu_pro_letters_and_indices_agree() -> None:
    items = load_items("mmlu-pro", str(DATA / "mmlu_pro.jsonl"))
    assert [it.gold for it in items] == ["E", "C", "C", "I"]
    assert items[0].n_options == 10 and items[0].id == "101"
    assert items[3].meta["category"] == "biology"


def test_socialiqa_labels_are_one_based() -> None:
    items = load_items("socialiqa", str(DATA / "socialiqa.jsonl"))
    assert [it.gold for it in items] == ["A", "B", "C"]
    assert items[0].question.startswith("Maya forgot her lunch") and items[0].question.endswith("result?")
    assert items[2].options[2] == "hand the keys back to him"


def test_math500_answers_and_boxed_solutions() -> None:
    items = load_items("math500", str(DATA / "math500.jsonl"))
    assert [it.gold for it in items] == ["\\frac{7}{8}", "6", "9", "5"]
    assert items[1].id == "own/algebra/2.json" and items[1].meta["level"] == 1
    assert format_prompt(items[1]) == "Solve for $x$: $3x - 7 = 11$."
    assert score_math("<answer>7/8</answer>", items[0].gold)


def test_commongen_lite_shape() -> None:
    items = load_items("commongen", str(DATA / "commongen.jsonl"))
    assert [it.id for it in items] == ["cg-1", "cg-2", "cg-3"]
    assert items[0].concepts == ("dog_N", "catch_V", "frisbee_N", "park_N")
    assert len(items[0].references) == 2 and items[1].references == (
        "She baked fresh bread in the oven of her small kitchen.",
    )
    prompt = format_prompt(items[0])
    assert "Concepts: dog (noun), catch (verb), frisbee (noun), park (noun)\nSentence:" in prompt
    assert prompt.count("Sentence:") == 3  # two worked examples, then the item


def test_commongen_rows_sharing_a_concept_set_are_merged() -> None:
    items = load_items("commongen", str(DATA / "common_gen_rows.jsonl"))
    assert len(items) == 2
    assert items[0].concepts == ("ski", "mountain", "skier") and len(items[0].references) == 2
    assert items[1].references == ("Cows graze in the green field.",)


def test_multiple_choice_prompt_lists_lettered_options() -> None:
    item = load_items("mmlu-pro", str(DATA / "mmlu_pro.jsonl"))[0]
    prompt = format_prompt(item)
    assert prompt.startswith(item.question)
    assert "\nA. 60\n" in prompt and "\nJ. 90\n" in prompt
    assert prompt.rstrip().endswith("(A-J).")
    assert score_choice("<answer>E</answer>", item.gold, item.n_options)


def test_headerless_mmlu_csv_and_a_folder_of_files(tmp_path: Path) -> None:
    items = load_items("mmlu", str(DATA / "mmlu_raw_test.csv"))
    assert [it.gold for it in items] == ["C", "B"]
    assert items[0].meta["subject"] == "mmlu_raw" and items[0].options[2] == "29"
    folder = tmp_path / "mmlu"
    folder.mkdir()
    (folder / "algebra_test.csv").write_text((DATA / "mmlu_raw_test.csv").read_text())
    (folder / "history_test.csv").write_text('"Who came first?",x,y,z,w,A\n')
    (folder / "notes.txt").write_text("ignored")
    items = load_items("mmlu", str(folder))
    assert [it.id for it in items] == ["algebra_test/0", "algebra_test/1", "history_test/0"]
    assert items[2].meta["subject"] == "history"


def test_csv_with_header_json_and_parquet_give_the_same_items(tmp_path: Path) -> None:
    reference = load_items("mmlu", str(DATA / "mmlu.jsonl"))
    rows = [json.loads(line) for line in (DATA / "mmlu.jsonl").read_text().splitlines()]
    with (tmp_path / "mmlu.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["question", "subject", "choices", "answer"])
        for r in rows:
            writer.writerow([r["question"], r["subject"], json.dumps(r["choices"]), r["answer"]])
    (tmp_path / "list.json").write_text(json.dumps(rows))
    (tmp_path / "wrapped.json").write_text(json.dumps({"data": rows}))
    columns = {key: [r[key] for r in rows] for key in rows[0]}
    (tmp_path / "columns.json").write_text(json.dumps(columns))
    names = ["mmlu.csv", "list.json", "wrapped.json", "columns.json"]
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow

    pq.write_table(pyarrow.Table.from_pylist(rows), tmp_path / "mmlu.parquet")
    names.append("mmlu.parquet")
    for name in names:
        assert load_items("mmlu", str(tmp_path / name)) == reference, name


def test_limit_takes_the_first_items() -> None:
    assert [it.gold for it in load_items("mmlu", str(DATA / "mmlu.jsonl"), limit=2)] == ["B", "A"]


def test_missing_file_is_one_clear_line(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "mmlu.jsonl"
    with pytest.raises(ConfigError) as err:
        load_items("mmlu", str(missing))
    message = str(err.value)
    assert "\n" not in message
    assert str(missing) in message and "does not exist" in message
    assert "hf:cais/mmlu:all:test" in message and "hub" in message


def test_unknown_benchmark_lists_the_allowed_ones() -> None:
    with pytest.raises(ConfigError) as err:
        load_items("gsm8k", str(DATA / "mmlu.jsonl"))
    assert all(name in str(err.value) for name in BENCHMARKS)


@pytest.mark.parametrize(
    ("benchmark", "row", "needle"),
    [
        ("mmlu", {"choices": ["a", "b"], "answer": 0}, "missing field 'question'"),
        ("mmlu", {"question": "q?", "answer": 0}, "missing field 'choices'"),
        ("mmlu", {"question": "q?", "choices": ["a", "b"]}, "missing field 'answer'"),
        ("mmlu", {"question": "q?", "choices": ["a", "b"], "answer": 2}, "'answer'=2"),
        ("mmlu", {"question": "q?", "choices": ["a", "b", "c", "d", "e"], "answer": 0}, "2 to 4 options"),
        (
            "mmlu-pro",
            {"question": "q?", "options": ["a", "b"], "answer": "A", "answer_index": 1},
            "disagrees",
        ),
        (
            "socialiqa",
            {"context": "c", "question": "q?", "answerA": "x", "answerB": "y", "answerC": "z", "label": "0"},
            "'label'='0'",
        ),
        ("math500", {"problem": "1+1?"}, "missing field 'answer'"),
        ("commongen", {"concepts": ["dog"]}, "missing field 'references'"),
        ("commongen", {"concepts": [], "target": "x"}, "at least one concept"),
    ],
)
def test_bad_rows_name_the_row_and_field(tmp_path: Path, benchmark: str, row: dict, needle: str) -> None:
    good = {
        "mmlu": {"question": "ok?", "choices": ["a", "b"], "answer": 1},
        "mmlu-pro": {"question": "ok?", "options": ["a", "b"], "answer": "B"},
        "socialiqa": {
            "context": "c",
            "question": "q?",
            "answerA": "x",
            "answerB": "y",
            "answerC": "z",
            "label": 1,
        },
        "math500": {"problem": "1+2?", "answer": "3"},
        "commongen": {"concepts": ["cat"], "target": "A cat."},
    }[benchmark]
    path = write_jsonl(tmp_path / "rows.jsonl", [good, row])
    with pytest.raises(ConfigError) as err:
        load_items(benchmark, path)
    message = str(err.value)
    assert f"{benchmark} row 1 of {path}" in message and needle in message and "\n" not in message


def test_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"question": "q"}\n{not json\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: not valid JSON"):
        load_items("mmlu", str(tmp_path / "bad.jsonl"))
    (tmp_path / "items.txt").write_text("x")
    with pytest.raises(ConfigError, match="not supported"):
        load_items("mmlu", str(tmp_path / "items.txt"))
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ConfigError, match="holds no items"):
        load_items("mmlu", str(tmp_path / "empty.jsonl"))


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("hf:cais/mmlu:all:test", ("cais/mmlu", "all", "test")),
        ("hf:cais/mmlu:all", ("cais/mmlu", "all", "test")),
        ("hf:HuggingFaceH4/MATH-500:test", ("HuggingFaceH4/MATH-500", None, "test")),
        ("hf:allenai/social_i_qa", ("allenai/social_i_qa", None, "validation")),
        ("hf:some/set:validation[:100]", ("some/set", None, "validation[:100]")),
    ],
)
def test_parse_hf_source(source: str, expected: tuple) -> None:
    benchmark = "socialiqa" if "social" in source else "mmlu"
    assert parse_hf_source(source, benchmark) == expected


@pytest.mark.parametrize("source", ["hf:", "hf:a:b:c:d", "hf:name::test"])
def test_malformed_hf_sources(source: str) -> None:
    with pytest.raises(ConfigError, match="malformed"):
        load_items("mmlu", source)


def test_unreachable_hub_is_a_config_error() -> None:
    # The test session runs offline (HF_HUB_OFFLINE=1), so this fails fast without touching the network.
    with pytest.raises(ConfigError, match="could not load 'hf:gift-rl-tests/does-not-exist:test'"):
        load_items("mmlu", "hf:gift-rl-tests/does-not-exist:test")
