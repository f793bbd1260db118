"""The results table: one row per model, the paper's columns, every number with its interval and count.

Columns follow the paper (MATH, Matrix, TicTacToe, Spy, MMLU, MMLU-Pro, CommonGen, SocialIQA, Avg). A cell is
"value [low, high] (n=…)" in percent: a 95% Wilson interval over the scored items. With several seeds the unit of
independence is the item, so the interval is a t-interval over per-item mean scores (n = items), and the cell adds
the spread of the per-seed scores ("±std, K seeds"). Items that could not be scored (an opponent that failed, a
judge that gave no verdict) are excluded, counted, and named in the notes.

Avg is the mean of the four general-ability columns (MMLU, MMLU-Pro, CommonGen, SocialIQA) and exists only when all
four do; its interval combines their standard errors as if independent (normal approximation).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gift.errors import ConfigError
from gift.evaluation.stats import Estimate, SeedSpread, binomial_ci, mean_ci, seed_spread

COLUMNS = ("MATH", "Matrix", "Matrix (balanced)", "TicTacToe", "Spy", "MMLU", "MMLU-Pro", "CommonGen", "SocialIQA")
"""The paper's columns, with the balanced Matrix game (no constant answer beats chance) beside its own."""
GENERAL_COLUMNS = ("MMLU", "MMLU-Pro", "CommonGen", "SocialIQA")
AVG = "Avg"
BENCHMARK_COLUMNS = {
    "math500": "MATH",
    "mmlu": "MMLU",
    "mmlu-pro": "MMLU-Pro",
    "commongen": "CommonGen",
    "socialiqa": "SocialIQA",
}


def column_of(suite: str) -> str | None:
    """The table column of a suite: a benchmark's, or the column in a game's registration."""
    if suite in BENCHMARK_COLUMNS:
        return BENCHMARK_COLUMNS[suite]
    from gift.games.registry import REGISTRY

    try:
        protocol = REGISTRY.spec(suite).eval
    except ConfigError:
        return None
    return protocol.column if protocol is not None else None


def table_columns(rows: Sequence[TableRow]) -> tuple[str, ...]:
    """The paper's columns, then a column for every other game (a plugin's) that has a result."""
    extra = [c for row in rows for c in row.cells if c not in COLUMNS]
    return (*COLUMNS, *dict.fromkeys(extra))
_Z95 = 1.959963984540054


@dataclass
class Cell:
    """One model's score on one column."""

    suite: str
    estimate: Estimate
    excluded: int = 0
    """Items left out of the score (opponent failed, judge failed)."""
    seeds: int = 1
    spread: SeedSpread | None = None
    """Per-seed scores' spread, with two or more seeds."""
    per_seed: list[float] = field(default_factory=list)
    exact: bool = False
    """Computed, not sampled (a baseline over a finite episode distribution): shown without an interval."""
    note: str = ""
    """Shown after the value, e.g. a constant baseline's answer."""

    def format(self) -> str:
        text = self.estimate.format() if not self.exact else f"{100 * self.estimate.value:.1f} (exact)"
        if self.note:
            text += f" {self.note}"
        if self.spread is not None and self.estimate.n:
            std = "nan" if math.isnan(self.spread.std) else f"{100 * self.spread.std:.1f}"
            text += f" ±{std} ({self.seeds} seeds)"
        return text

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"suite": self.suite, **_percent(self.estimate), "excluded": self.excluded}
        out["seeds"] = self.seeds
        out["per_seed"] = [_round(100 * v) for v in self.per_seed]
        if self.spread is not None:
            out["seed_mean"] = _round(100 * self.spread.mean)
            out["seed_std"] = _round(100 * self.spread.std)
        return out


@dataclass
class TableRow:
    model: str
    cells: dict[str, Cell | None]
    """Column → cell; None for a column that was not evaluated (or cannot be, e.g. CommonGen without a judge)."""
    baseline: bool = False
    """A trivial policy's row (random, best constant, perfect), not a model's."""

    @property
    def average(self) -> Estimate | None:
        return average_estimate([self.cells.get(c) for c in GENERAL_COLUMNS])


def summarise(records: Sequence[Mapping[str, Any]], suite: str, seeds: Sequence[int]) -> Cell:
    """The cell for one model and suite from its per-item records (`correct` True/False, or None = excluded)."""
    scored = [r for r in records if r.get("correct") is not None]
    excluded = len(records) - len(scored)
    per_seed = []
    for seed in seeds:
        outcomes = [bool(r["correct"]) for r in scored if int(r["seed"]) == int(seed)]
        if outcomes:
            per_seed.append(sum(outcomes) / len(outcomes))
    if len(seeds) <= 1:
        estimate = binomial_ci(sum(bool(r["correct"]) for r in scored), len(scored))
        return Cell(suite, estimate, excluded, 1, None, per_seed)
    by_item: dict[str, list[float]] = {}
    for r in scored:
        by_item.setdefault(str(r["item"]), []).append(1.0 if r["correct"] else 0.0)
    item_means = [sum(v) / len(v) for v in by_item.values()]
    estimate = mean_ci(item_means, bounds=(0.0, 1.0))
    if estimate.n and (math.isnan(estimate.low) or estimate.low == estimate.high):
        # A lone item, or every item with the same mean: the t-interval says nothing; use Wilson on the items.
        wilson = binomial_ci(round(estimate.value * estimate.n), estimate.n)
        estimate = Estimate(estimate.value, wilson.low, wilson.high, estimate.n)
    spread = seed_spread(per_seed) if per_seed else None
    return Cell(suite, estimate, excluded, len(seeds), spread, per_seed)


def average_estimate(cells: Sequence[Cell | None]) -> Estimate | None:
    """Mean of the cells' values with a normal-approximation interval; None unless every cell has a score."""
    if not cells or any(c is None or c.estimate.n == 0 or math.isnan(c.estimate.value) for c in cells):
        return None
    values = [c.estimate.value for c in cells if c is not None]
    mean = math.fsum(values) / len(values)
    variance = 0.0
    for c in cells:
        assert c is not None
        se = c.estimate.half_width / _Z95 if not math.isnan(c.estimate.half_width) else 0.0
        variance += se * se
    half = _Z95 * math.sqrt(variance) / len(values)
    n = sum(c.estimate.n for c in cells if c is not None)
    return Estimate(mean, max(0.0, mean - half), min(1.0, mean + half), n)


BASELINE_ROW_NAMES = {
    "random": "baseline: random legal move",
    "constant": "baseline: best constant answer",
    "perfect": "baseline: perfect player",
    "oracle": "baseline: perfect player",
}
"""Spy has no perfect player; its cell in the perfect row is the oracle that knows who the spy is."""


def baseline_table_rows(baselines: Mapping[str, Sequence[Any]]) -> list[TableRow]:
    """Table rows of the trivial policies from suite → `BaselineRow`s (one row per policy, one cell per game)."""
    rows: dict[str, TableRow] = {}
    for suite, entries in baselines.items():
        column = column_of(suite)
        if column is None:
            continue
        for b in entries:
            name = BASELINE_ROW_NAMES.get(b.policy, f"baseline: {b.policy}")
            note = f"({b.answer!r})" if b.answer is not None else ("(oracle)" if b.policy == "oracle" else "")
            cell = Cell(suite, b.estimate, b.excluded, exact=b.method == "exact", note=note)
            rows.setdefault(name, TableRow(name, {}, baseline=True)).cells[column] = cell
    return list(rows.values())


def baselines_csv(baselines: Mapping[str, Sequence[Any]]) -> str:
    """One line per game and trivial policy: its answer, method, value and interval (percent), n, exclusions."""
    fields = ["suite", "policy", "answer", "method", "value", "low", "high", "n", "excluded"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for suite, entries in baselines.items():
        for b in entries:
            writer.writerow({"suite": suite, "policy": b.policy, "answer": b.answer, "method": b.method,
                             **_percent(b.estimate), "excluded": b.excluded})  # fmt: skip
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------- rendering
def markdown_table(rows: Sequence[TableRow], notes: Sequence[str] = (), title: str = "Results") -> str:
    columns = table_columns(rows)
    header = ["Model", *columns, AVG]
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [(row.cells.get(c).format() if row.cells.get(c) is not None else "n/a") for c in columns]
        avg = row.average
        cells.append(avg.format() if avg is not None else "n/a")
        lines.append("| " + " | ".join([row.model.replace("|", "\\|"), *cells]) + " |")
    lines += ["", "Values in percent: value [95% interval] (n = scored items)."]
    if any(row.baseline for row in rows):
        lines[-1] += " Baseline rows: trivial policies on the same games (see the notes)."
    if notes:
        lines += ["", "Notes:", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"


def csv_text(rows: Sequence[TableRow]) -> str:
    """One row per model; per column its value, interval, n, exclusions (and seed mean/std); empty = n/a.

    Baseline rows are left out (they go to baselines.csv)."""
    rows = [r for r in rows if not r.baseline]
    columns = table_columns(rows)
    multi_seed = any(c is not None and c.spread is not None for r in rows for c in r.cells.values())
    fields = ["model"]
    for column in columns:
        fields += [column, f"{column}_low", f"{column}_high", f"{column}_n", f"{column}_excluded"]
        if multi_seed:
            fields += [f"{column}_seed_mean", f"{column}_seed_std"]
    fields += [AVG, f"{AVG}_low", f"{AVG}_high", f"{AVG}_n"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        line: dict[str, Any] = {"model": row.model}
        for column in columns:
            cell = row.cells.get(column)
            if cell is None:
                continue
            values = cell.as_dict()
            line.update(
                {column: values["value"], f"{column}_low": values["low"], f"{column}_high": values["high"]}
            )
            line.update({f"{column}_n": cell.estimate.n, f"{column}_excluded": cell.excluded})
            if multi_seed and cell.spread is not None:
                line.update(
                    {f"{column}_seed_mean": values["seed_mean"], f"{column}_seed_std": values["seed_std"]}
                )
        avg = row.average
        if avg is not None:
            values = _percent(avg)
            line.update({AVG: values["value"], f"{AVG}_low": values["low"], f"{AVG}_high": values["high"]})
            line[f"{AVG}_n"] = avg.n
        writer.writerow(line)
    return buffer.getvalue()


def rows_as_dicts(rows: Sequence[TableRow]) -> list[dict[str, Any]]:
    out = []
    columns = table_columns(rows)
    for row in rows:
        cells = {c: (row.cells[c].as_dict() if row.cells.get(c) is not None else None) for c in columns}
        avg = row.average
        out.append({"model": row.model, "cells": cells, AVG: _percent(avg) if avg is not None else None})
    return out


def write_report(
    out_dir: str | Path,
    rows: Sequence[TableRow],
    notes: Sequence[str],
    extra: Mapping[str, Any] | None = None,
    baselines: Mapping[str, Sequence[Any]] | None = None,
) -> dict[str, Path]:
    """Write table.md, table.csv and results.json (and baselines.csv) into `out_dir`; return their paths.

    `baselines` (suite → `BaselineRow`s) adds the trivial policies' rows under the models in table.md."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "table.md", "csv": out / "table.csv", "json": out / "results.json"}
    paths["markdown"].write_text(markdown_table([*rows, *baseline_table_rows(baselines or {})], notes))
    paths["csv"].write_text(csv_text(rows))
    payload = {
        "columns": [*table_columns(rows), AVG],
        "rows": rows_as_dicts(rows),
        "notes": list(notes),
        **dict(extra or {}),
    }
    if baselines:
        paths["baselines"] = out / "baselines.csv"
        paths["baselines"].write_text(baselines_csv(baselines))
        payload["baselines"] = {suite: [b.as_dict() for b in entries] for suite, entries in baselines.items()}
    paths["json"].write_text(json.dumps(_clean(payload), indent=2, default=str, allow_nan=False) + "\n")
    return paths


def _clean(value: Any) -> Any:
    """NaN and infinities become null, so results.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _round(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 2)


def _percent(estimate: Estimate) -> dict[str, Any]:
    return {
        "value": _round(100 * estimate.value),
        "low": _round(100 * estimate.low),
        "high": _round(100 * estimate.high),
        "n": estimate.n,
    }
