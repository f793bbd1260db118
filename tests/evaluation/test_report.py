"""The results table: cells with intervals and counts, seed spread, Avg, and the Markdown/CSV/JSON files."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics

import pytest

from gift.evaluation.report import (
    COLUMNS,
    GENERAL_COLUMNS,
    Cell,
    TableRow,
    average_estimate,
    csv_text,
    markdown_table,
    summarise,
    write_report,
)
from gift.evaluation.stats import Estimate, binomial_ci, mean_ci


def records(outcomes: list[bool | None], seed: int = 1, suite: str = "mmlu") -> list[dict]:
    return [{"suite": suite, "item": str(i), "seed": seed, "correct": c} for i, c in enumerate(outcomes)]


def test_single_seed_cell_is_a_wilson_interval_over_scored_items() -> None:
    cell = summarise(records([True, False, True, None, True]), "mmlu", [1])
    assert cell.excluded == 1
    assert cell.estimate == binomial_ci(3, 4)
    assert cell.spread is None
    assert cell.format() == binomial_ci(3, 4).format() == "75.0 [30.1, 95.4] (n=4)"


def test_several_seeds_use_items_as_units_and_report_the_spread() -> None:
    seed1 = records([True, True, False, False])
    seed2 = records([True, False, False, False], seed=2)
    cell = summarise(seed1 + seed2, "mmlu", [1, 2])
    assert cell.estimate.n == 4  # items, not item-seed pairs
    expected = mean_ci([1.0, 0.5, 0.0, 0.0], bounds=(0.0, 1.0))
    assert cell.estimate.value == pytest.approx(0.375)
    assert (cell.estimate.low, cell.estimate.high) == pytest.approx((expected.low, expected.high))
    assert cell.per_seed == [0.5, 0.25]
    assert cell.spread.std == pytest.approx(statistics.stdev([0.5, 0.25]))
    assert cell.format().endswith(f"±{100 * statistics.stdev([0.5, 0.25]):.1f} (2 seeds)")


def test_identical_seeds_fall_back_to_a_wilson_interval_instead_of_zero_width() -> None:
    cell = summarise(records([False] * 3) + records([False] * 3, seed=2), "mmlu", [1, 2])
    assert cell.estimate.value == 0.0
    assert cell.estimate.high == pytest.approx(binomial_ci(0, 3).high)


def _cell(value: float, n: int, column: str = "mmlu") -> Cell:
    return Cell(column, binomial_ci(round(value * n), n))


def test_average_needs_all_four_general_columns() -> None:
    cells = [_cell(0.5, 100), _cell(0.2, 100), _cell(0.3, 50), _cell(0.6, 100)]
    avg = average_estimate(cells)
    assert avg.value == pytest.approx((0.5 + 0.2 + 0.3 + 0.6) / 4)
    assert avg.low < avg.value < avg.high and avg.n == 350
    # Narrower than any single column: four independent estimates averaged.
    assert avg.half_width < min(c.estimate.half_width for c in cells)
    assert average_estimate([*cells[:3], None]) is None
    assert average_estimate([*cells[:3], Cell("x", Estimate(math.nan, math.nan, math.nan, 0))]) is None


def _rows() -> list[TableRow]:
    full = {c: _cell(0.5, 10) for c in COLUMNS}
    partial = {"MATH": _cell(0.25, 4), "Matrix": _cell(0.0, 5)}
    return [TableRow("base", full), TableRow("ckpt|1", partial)]


def test_markdown_has_the_paper_columns_and_na_cells() -> None:
    text = markdown_table(_rows(), notes=["TicTacToe: 2 episodes excluded"])
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| Model"))
    assert [h.strip() for h in header.strip("|").split("|")] == ["Model", *COLUMNS, "Avg"]
    base = next(line for line in lines if line.startswith("| base"))
    assert base.count("50.0 [23.7, 76.3] (n=10)") == len(COLUMNS) + 0  # every column
    assert base.rstrip(" |").endswith("(n=40)")  # Avg over the four general columns
    ckpt = next(line for line in lines if line.startswith("| ckpt\\|1"))  # pipes in names are escaped
    assert ckpt.count("n/a") == len(COLUMNS) - 2 + 1
    assert "- TicTacToe: 2 episodes excluded" in text


def test_csv_columns_values_and_missing_cells() -> None:
    rows = list(csv.DictReader(io.StringIO(csv_text(_rows()))))
    assert rows[0]["MMLU"] == "50.0" and rows[0]["MMLU_n"] == "10" and float(rows[0]["MMLU_low"]) < 50
    assert rows[0]["Avg"] == "50.0" and rows[0]["Avg_n"] == str(10 * len(GENERAL_COLUMNS))
    assert rows[1]["MATH"] == "25.0" and rows[1]["MMLU"] == "" and rows[1]["Avg"] == ""
    assert "MMLU_seed_std" not in rows[0]


def test_write_report_files_and_strict_json(tmp_path) -> None:
    rows = _rows()
    paths = write_report(tmp_path, rows, ["a note"], {"extra": {"nan": float("nan")}})
    assert {p.name for p in paths.values()} == {"table.md", "table.csv", "results.json"}
    data = json.loads(paths["json"].read_text())
    assert data["columns"] == [*COLUMNS, "Avg"]
    assert data["rows"][1]["cells"]["MMLU"] is None and data["rows"][1]["Avg"] is None
    assert data["rows"][0]["cells"]["MATH"]["n"] == 10
    assert data["extra"]["nan"] is None and data["notes"] == ["a note"]


def test_baseline_rows_sit_under_the_models_in_markdown_but_not_in_the_csv(tmp_path):
    from gift.evaluation.baselines import BaselineRow

    exact = BaselineRow("matrix-v0", "constant", Estimate(0.528, 0.528, 0.528, 96), "exact", "2")
    simulated = BaselineRow("spy-v0", "oracle", binomial_ci(26, 100), "simulated")
    rand = BaselineRow("spy-v0", "random", binomial_ci(15, 100), "simulated")
    model = TableRow("m", {"Matrix": summarise(records([True, False], suite="matrix-v0"), "matrix-v0", [1])})
    paths = write_report(tmp_path, [model], [], baselines={"matrix-v0": [exact], "spy-v0": [rand, simulated]})
    lines = (tmp_path / "table.md").read_text().splitlines()
    body = [line for line in lines if line.startswith("| ") and not line.startswith("| Model")]
    assert [line.split("|")[1].strip() for line in body] == [
        "m", "baseline: best constant answer", "baseline: random legal move", "baseline: perfect player"]  # fmt: skip
    assert "52.8 (exact) ('2')" in body[1]
    assert "26.0 [" in body[3] and "(oracle)" in body[3]
    assert [r["model"] for r in csv.DictReader(io.StringIO(paths["csv"].read_text()))] == ["m"]
    saved = list(csv.DictReader(io.StringIO(paths["baselines"].read_text())))
    assert [(r["suite"], r["policy"], r["value"]) for r in saved] == [
        ("matrix-v0", "constant", "52.8"), ("spy-v0", "random", "15.0"), ("spy-v0", "oracle", "26.0")]  # fmt: skip
    assert json.loads(paths["json"].read_text())["baselines"]["matrix-v0"][0]["method"] == "exact"
