"""`gift eval` end to end with the tiny model: the table, resume, seeds, exploitability, ratings, and errors."""

from __future__ import annotations

import csv
import json
import re
import statistics
from pathlib import Path

import pytest

from gift.evaluation import cli_main
from gift.evaluation.benchmarks_eval import judge_rng
from gift.evaluation.exploitability import collect_matrix_answers, matrix_exploitability
from gift.evaluation.extras import LM_EVAL_MISSING
from gift.evaluation.report import COLUMNS
from gift.evaluation.scorers import judge_order
from tests.evaluation.scripted import first_legal_move, scripted_loader, single_thread_torch, user_turns, wrap  # noqa: F401
from tests.opponents.chat_server import ChatServer, last_user_text, reply, respond

DATA = Path(__file__).parent / "data"
pytestmark = pytest.mark.usefixtures("single_thread_torch")


def script(prompt: str) -> str | None:
    """Fixed answers for the benchmarks and TicTacToe; everything else is left to the tiny model."""
    if "Concepts: " in prompt:
        return wrap("A dog jumps to catch the frisbee in the park.")
    if "Options:" in prompt:
        return wrap("B")
    if "Solve for $x$" in prompt:
        return wrap("6")
    return first_legal_move(prompt)


def table_rows(out: Path) -> list[dict[str, str]]:
    with (out / "table.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_full_table_over_games_and_benchmarks_with_a_judge(tiny_model_dir, tmp_path, capsys) -> None:
    out = tmp_path / "eval"
    loader = scripted_loader(script)
    with ChatServer(reply("Both use every concept.\nVerdict: tie")) as judge:
        code = cli_main(
            ["--model", tiny_model_dir, "--suite", "games,math,mmlu,mmlu-pro,socialiqa,commongen",
             "--data", f"mmlu={DATA / 'mmlu.jsonl'}", "--data", f"mmlu-pro={DATA / 'mmlu_pro.jsonl'}",
             "--data", f"socialiqa={DATA / 'socialiqa.jsonl'}", "--data", f"math500={DATA / 'math500.jsonl'}",
             "--data", f"commongen={DATA / 'commongen.jsonl'}", "--limit", "3",
             "--episodes", "matrix=5", "--episodes", "matrix-balanced=4", "--episodes", "tictactoe-v0=3", "--episodes", "spy=2",
             "--opponent", "tictactoe-v0=perfect", "--opponent", "spy-v0=bot",
             "--judge-endpoint", judge.base_url, "--judge-model", "judge",
             "--max-new-tokens", "12", "--out", str(out)],
            model_loader=loader,
        )  # fmt: skip
        judged = [r.user_text for r in judge.requests]
    assert code == 0
    assert len(judged) == 3  # every CommonGen sentence went to the judge once
    for name in ("table.md", "table.csv", "results.json", "items.jsonl", "settings.json"):
        assert (out / name).is_file()
    [row] = table_rows(out)
    assert row["model"] == tiny_model_dir
    n = {c: int(row[f"{c}_n"]) for c in COLUMNS}
    assert n == {"MATH": 3, "Matrix": 5, "Matrix (balanced)": 4, "TicTacToe": 3, "Spy": 2, "MMLU": 3, "MMLU-Pro": 3, "CommonGen": 3,
                 "SocialIQA": 3}  # fmt: skip
    for column in COLUMNS:
        assert float(row[f"{column}_low"]) <= float(row[column]) <= float(row[f"{column}_high"])
    # Scripted answers: "B" is right for 1 of 3 MMLU items (B, A, C), none of MMLU-Pro (E, C, C), 1 of 3 SocialIQA
    # (A, B, C); MATH item 2 is solved; the judge calls every CommonGen sentence a tie; nobody beats "perfect".
    values = {c: float(row[c]) for c in COLUMNS}
    assert values["MMLU"] == values["SocialIQA"] == pytest.approx(33.33, abs=0.01)
    assert values["MMLU-Pro"] == 0.0 and values["CommonGen"] == 100.0 and values["TicTacToe"] == 0.0
    assert values["MATH"] >= 33.33
    assert float(row["Avg"]) == pytest.approx((33.333 + 0 + 100 + 33.333) / 4, abs=0.01)
    assert int(row["Avg_n"]) == 12

    table = (out / "table.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| Model"))
    assert [h.strip() for h in header.strip("|").split("|")] == ["Model", *COLUMNS, "Avg"]
    model_line = next(line for line in table.splitlines() if line.startswith(f"| {tiny_model_dir} "))
    assert len(re.findall(r"\d+\.\d \[\d+\.\d, \d+\.\d\] \(n=\d+\)", model_line)) == len(COLUMNS) + 1
    # Trivial baselines under the model: Matrix exact, the others played on the same seeds and opponents.
    constant = next(
        line for line in table.splitlines() if line.startswith("| baseline: best constant answer")
    )
    assert "52.8 (exact) ('2')" in constant
    random_row = next(line for line in table.splitlines() if line.startswith("| baseline: random legal move"))
    assert "0.0 [0.0, " in random_row.split("|")[COLUMNS.index("TicTacToe") + 2]  # random never beats perfect
    baselines = json.loads((out / "results.json").read_text())["baselines"]
    assert set(baselines) == {"matrix-v0", "matrix-balanced-v0", "tictactoe-v0", "spy-v0"}  # MATH500 is a benchmark, not a game
    assert {b["n"] for b in baselines["spy-v0"]} == {2}
    assert (out / "baselines.csv").read_text().startswith("suite,policy,answer,method,value")
    assert table in capsys.readouterr().out

    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert len(items) == 5 + 4 + 3 + 2 + 3 * 5
    assert all({"model", "suite", "item", "seed", "correct", "reply"} <= set(r) for r in items)
    # Fresh single-turn prompts for every game turn (and every benchmark item).
    prompts = loader.backends[tiny_model_dir].prompts
    assert prompts and all(user_turns(p) == 1 for p in prompts)
    # The A/B order comes from an rng seeded by (seed, item id), and the judge saw the sentence in that seat.
    sentence = "A dog jumps to catch the frisbee in the park."
    for record in (r for r in items if r["suite"] == "commongen"):
        rng = judge_rng(1, record["item"])
        refs = [json.loads(x) for x in (DATA / "commongen.jsonl").read_text().splitlines()]
        [row_refs] = [[a["ref"] for a in x["human_annotations"]] for x in refs if x["id"] == record["item"]]
        assert record["reference"] == row_refs[rng.randrange(len(row_refs))]
        assert record["model_is_a"] == judge_order(rng)
        [asked] = [text for text in judged if record["reference"] in text]
        seat = "A" if record["model_is_a"] else "B"
        assert f"Sentence {seat}: {sentence}" in asked and record["outcome"] == "tie"
    results = json.loads((out / "results.json").read_text())
    assert results["rows"][0]["cells"]["CommonGen"]["n"] == 3 and results["rows"][0]["Avg"]["n"] == 12


def _mmlu6(tmp_path: Path) -> Path:
    rows = [json.loads(line) for line in (DATA / "mmlu.jsonl").read_text().splitlines()]
    six = [{**r, "question": f"{r['question']} (variant {k})"} for k in (1, 2) for r in rows][:6]
    path = tmp_path / "mmlu6.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in six))
    return path


def test_resume_generates_only_what_is_missing_and_matches_a_fresh_run(tiny_model_dir, tmp_path) -> None:
    data = _mmlu6(tmp_path)

    def run(out: Path, limit: int, episodes: int, *extra: str) -> scripted_loader:
        loader = scripted_loader()  # the tiny model answers everything itself (greedy)
        args = ["--model", tiny_model_dir, "--suite", "mmlu,matrix", "--data", f"mmlu={data}", "--limit", str(limit),
                "--episodes", f"matrix={episodes}", "--temperature", "0", "--max-new-tokens", "8",
                "--max-batch", "1", "--out", str(out), *extra]  # fmt: skip
        assert cli_main(args, model_loader=loader) == 0
        return loader

    out = tmp_path / "resumed"
    first = run(out, 3, 2)
    assert len(first.backends[tiny_model_dir].prompts) == 3 + 2
    assert (
        cli_main(["--model", tiny_model_dir, "--suite", "mmlu", "--data", f"mmlu={data}", "--out", str(out)])
        == 2
    )
    second = run(out, 6, 4, "--resume")
    assert len(second.backends[tiny_model_dir].prompts) == 3 + 2  # only the new items and episodes
    lines = (out / "items.jsonl").read_text().splitlines()
    assert len(lines) == 6 + 4 and len({(json.loads(x)["suite"], json.loads(x)["item"]) for x in lines}) == 10

    fresh = tmp_path / "fresh"
    run(fresh, 6, 4)
    assert (out / "table.csv").read_text() == (fresh / "table.csv").read_text()

    def replies(folder: Path) -> dict:
        records = [json.loads(x) for x in (folder / "items.jsonl").read_text().splitlines()]
        return {(r["suite"], r["item"]): (r["reply"], r["correct"]) for r in records}

    assert replies(out) == replies(fresh)  # greedy: the resumed items are exactly what a fresh run produces
    assert table_rows(out)[0]["MMLU_n"] == "6" and table_rows(out)[0]["Matrix_n"] == "4"

    third = run(out, 6, 4, "--resume")  # nothing left: the model is not even loaded
    assert third.loads == []
    assert cli_main(["--model", tiny_model_dir, "--suite", "mmlu", "--data", f"mmlu={data}", "--temperature", "0.7",
                     "--out", str(out), "--resume"]) == 2  # fmt: skip


def test_seeds_repeat_generation_and_report_the_spread(tiny_model_dir, tmp_path) -> None:
    out = tmp_path / "seeds"
    loader = scripted_loader()
    args = ["--model", tiny_model_dir, "--suite", "matrix", "--episodes", "4", "--seeds", "2", "--max-new-tokens", "8",
            "--out", str(out)]  # fmt: skip
    assert cli_main(args, model_loader=loader) == 0
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert sorted((r["seed"], r["item"]) for r in items) == [
        (s, f"episode-{e}") for s in (1, 2) for e in range(1, 5)
    ]
    seeds = loader.backends[tiny_model_dir].seeds
    assert len(seeds) == 2 and seeds[0] != seeds[1]  # each repeat samples with its own seed
    [row] = table_rows(out)
    assert row["Matrix_n"] == "4"  # items are the unit; the seeds add the spread
    cell = json.loads((out / "results.json").read_text())["rows"][0]["cells"]["Matrix"]
    assert len(cell["per_seed"]) == 2 and cell["seeds"] == 2
    expected_std = statistics.stdev(cell["per_seed"])
    assert float(row["Matrix_seed_std"]) == pytest.approx(expected_std, abs=0.01)
    assert "(2 seeds)" in (out / "table.md").read_text()


def test_exploitability_from_the_matrix_answers(tiny_model_dir, tmp_path) -> None:
    out = tmp_path / "exploit"
    loader = scripted_loader(lambda p: first_legal_move(p) or wrap("1"))  # matrix: always action 1
    args = ["--model", tiny_model_dir, "--suite", "matrix", "--episodes", "matrix=8", "--episodes", "tictactoe=2",
            "--exploitability", "--max-new-tokens", "8", "--out", str(out)]  # fmt: skip
    assert cli_main(args, model_loader=loader) == 0
    text = (out / "exploitability.md").read_text()
    assert "Matrix: mean normalised exploitability" in text and "TicTacToe vs perfect" in text
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    infos = [r["info"] for r in items if r["suite"] == "matrix-v0"]
    assert len(infos) == 8 and {i["chosen_action"] for i in infos} == {1}
    expected = matrix_exploitability(collect_matrix_answers(infos))
    got = json.loads((out / "results.json").read_text())["exploitability"][tiny_model_dir]
    assert got["matrix"]["mean_normalised"] == pytest.approx(expected.mean_normalised)
    assert len(got["matrix"]["cells"]) == len(expected.rows)
    assert got["tictactoe"]["games"] == 2 and 0.0 <= got["tictactoe"]["value"] <= 0.5
    assert (
        "Matrix" in table_rows(out)[0] and table_rows(out)[0]["TicTacToe"] == ""
    )  # extra games stay off the table


def test_ratings_among_bots_only(tmp_path) -> None:
    out = tmp_path / "ratings"
    args = ["--ratings", "--rating-players", "random,perfect", "--rating-players", "epsilon:epsilon=0.3",
            "--rating-seeds", "3", "--out", str(out)]  # fmt: skip
    assert cli_main(args) == 0
    text = (out / "ratings.md").read_text()
    ratings = json.loads((out / "results.json").read_text())["ratings"]
    assert set(ratings) == {"random", "perfect", "epsilon:epsilon=0.3"}
    assert ratings["random"]["rating"] == pytest.approx(1000.0)  # the anchor
    assert ratings["perfect"]["rating"] > ratings["random"]["rating"]
    assert all(r["games"] == 2 * 2 * 3 for r in ratings.values())  # 2 opponents x 2 seats x 3 seeds
    assert "| perfect |" in text and "Head-to-head" in text
    assert len((out / "ratings.jsonl").read_text().splitlines()) == 3 * 2 * 3


def test_a_checkpoint_as_opponent_and_excluded_episodes_in_the_notes(tiny_model_dir, tmp_path) -> None:
    out = tmp_path / "policy"
    loader = scripted_loader(
        first_legal_move
    )  # the evaluated model plays legal moves; the opponent is the raw model
    args = ["--model", tiny_model_dir, "--suite", "tictactoe", "--episodes", "3", "--max-new-tokens", "8",
            "--opponent", f"tictactoe=model:{tiny_model_dir}", "--out", str(out)]  # fmt: skip
    assert cli_main(args, model_loader=loader) == 0
    assert loader.loads == [tiny_model_dir, tiny_model_dir]  # the model, then its checkpoint opponent
    opponent_prompts = loader.backends[tiny_model_dir].prompts  # the opponent's backend was wrapped last
    assert opponent_prompts and all("Answer with the cell you take" in p and p.count("<answer>") == 1 for p in opponent_prompts)
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    failed = sum(r["excluded"] == "opponent_failed" for r in items)
    [row] = table_rows(out)
    assert failed >= 1 and int(row["TicTacToe_excluded"]) == failed and int(row["TicTacToe_n"]) == 3 - failed
    assert f"TicTacToe: {failed} item(s) excluded (opponent failed)" in (out / "table.md").read_text()


def _endpoint_move(body: dict) -> str:
    """An LLM opponent served over HTTP that plays the first legal move it is offered."""
    text = last_user_text(body)
    legal = re.findall(r"\(\d, \d\)", text.split("Legal moves (row, col):")[-1])
    return f"<answer>{legal[0]}</answer>"


def test_an_openai_compatible_endpoint_as_the_opponent(tiny_model_dir, tmp_path) -> None:
    out = tmp_path / "endpoint"
    with ChatServer(respond(_endpoint_move)) as server:
        args = ["--model", tiny_model_dir, "--suite", "tictactoe", "--episodes", "3", "--max-new-tokens", "8",
                "--endpoint", server.base_url, "--endpoint-model", "opponent-llm", "--out", str(out)]  # fmt: skip
        assert cli_main(args, model_loader=scripted_loader(first_legal_move)) == 0
        asked = len(server.requests)
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    assert asked >= 3 and len(items) == 3
    assert all(r["excluded"] is None and r["end_reason"] in ("win", "draw", "loss") for r in items)
    assert all(r["info"]["opponent"] == "openai:opponent-llm" for r in items)
    assert "vs openai(base_url=" in (out / "table.md").read_text()


def test_missing_dataset_is_one_line_before_any_model_loads(tiny_model_dir, tmp_path, capsys) -> None:
    loader = scripted_loader()
    code = cli_main(["--model", tiny_model_dir, "--suite", "games,mmlu", "--data-dir", str(tmp_path / "no-data"),
                     "--out", str(tmp_path / "o")], model_loader=loader)  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and loader.loads == []
    assert err.count("\n") == 1 and err.startswith("error: mmlu: no data; put the items at")
    assert "--data mmlu=PATH" in err and "hf:cais/mmlu" in err and "when a model hub is reachable" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--suite", "games,chess"], "unknown suite 'chess'"),
        (["--opponent", "matrix=perfect"], "matrix-v0 has no opponent"),
        (["--opponent", "tictactoe"], "must look like GAME=SPEC"),
        (["--opponent", "spy=openai"], "needs --endpoint URL and --endpoint-model NAME"),
        (["--episodes", "many"], "--episodes 'many' must be an integer"),
        (["--data", "imagenet=x.jsonl"], "unknown benchmark"),
        (
            ["--judge-endpoint", "http://127.0.0.1:9/v1"],
            "needs both --judge-endpoint URL and --judge-model NAME",
        ),
        (["--harness", "lm-eval", "--tasks", "mmlu"], re.escape(LM_EVAL_MISSING)),
        (["--temperature", "hot"], "invalid float value"),
        (["--backend", "tgi"], "--backend='tgi' is not allowed"),
        (["--seeds", "0"], "--seeds=0 must be an integer >= 1"),
    ],
)
def test_argument_errors_are_one_line_and_exit_2(args, message, tiny_model_dir, tmp_path, capsys) -> None:
    loader = scripted_loader()
    code = cli_main(["--model", tiny_model_dir, "--suite", "matrix", "--out", str(tmp_path / "o"), *args],
                    model_loader=loader)  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and loader.loads == []
    assert err.count("\n") == 1 and re.search(message, err), err


def test_help_exits_0(capsys) -> None:
    assert cli_main(["--help"]) == 0
    assert "--judge-endpoint" in capsys.readouterr().out


def test_no_baselines_leaves_the_trivial_rows_out(tiny_model_dir, tmp_path) -> None:
    out = tmp_path / "plain"
    args = ["--model", tiny_model_dir, "--suite", "matrix", "--episodes", "2", "--max-new-tokens", "4",
            "--no-baselines", "--out", str(out)]  # fmt: skip
    assert cli_main(args, model_loader=scripted_loader()) == 0
    assert "baseline:" not in (out / "table.md").read_text()
    assert not (out / "baselines.csv").exists()
    assert "baselines" not in json.loads((out / "results.json").read_text())
