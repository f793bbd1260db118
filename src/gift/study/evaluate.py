"""The one place the study touches evaluation: the `gift eval` command line it runs and the results.json it reads.

Each run is evaluated by `gift eval --model RUN_DIR ... --out RUN_DIR/eval` in a subprocess (the run's final
checkpoint, the paper's protocol: fresh single-turn prompts, episode seeds 1..N). Only the documented command-line
options and the `rows[].cells[].{suite, value, low, high, n}` of results.json are used, so the evaluation code may
change underneath. Rows of results.json other than the run's own (reference policies, when gift eval adds them)
are kept as reference rows.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

"""Training game id → the `gift eval --suite` that plays it (other games have no held-out evaluation)."""


@dataclass(frozen=True)
class Score:
    """A held-out success rate (fraction) with gift eval's 95% interval and item count."""

    value: float
    low: float
    high: float
    n: int


def eval_suites(games: list[str] | tuple[str, ...], requested: list[str] | None) -> list[str]:
    """The suites to evaluate: the requested ones, else those of the run's games that gift eval plays."""
    if requested is not None:
        return list(requested)
    from gift.games.registry import eval_specs

    suite_of = {s.id: s.alias for s in eval_specs()}  # each game's `--suite` name, from its registration
    return [suite_of[g] for g in games if g in suite_of]


def eval_argv(
    run_dir: str,
    out_dir: str,
    suites: list[str],
    episodes: int,
    max_new_tokens: int,
    temperature: float,
    extra: list[str] | tuple[str, ...] = (),
) -> list[str]:
    """`gift eval` arguments for the final evaluation of one run (continues a half-done evaluation)."""
    argv = ["--model", run_dir, "--suite", ",".join(suites), "--episodes", str(episodes)]
    # --limit sets how many math problems are generated when no MATH500 file is given.
    argv += ["--limit", str(episodes), "--max-new-tokens", str(max_new_tokens)]
    argv += ["--temperature", str(temperature), "--out", out_dir]
    if (Path(out_dir) / "items.jsonl").is_file():
        argv.append("--resume")
    return argv + list(extra)


def _score(cell: dict[str, Any]) -> Score | None:
    value = cell.get("value")
    if value is None:
        return None

    def frac(x: Any) -> float:
        return float(x) / 100.0 if x is not None else math.nan

    return Score(frac(value), frac(cell.get("low")), frac(cell.get("high")), int(cell.get("n") or 0))


def read_scores(out_dir: str | Path) -> tuple[dict[str, Score], dict[str, dict[str, Score]]]:
    """(the run's score per suite id, e.g. "matrix-v0"; reference rows: label → suite → score).

    The run's row is the first row (gift eval lists the --model values first); an absent file gives ({}, {}).
    """
    path = Path(out_dir) / "results.json"
    if not path.is_file():
        return {}, {}
    rows = json.loads(path.read_text()).get("rows", [])
    tables: list[tuple[str, dict[str, Score]]] = []
    for row in rows:
        scores = {}
        for cell in (row.get("cells") or {}).values():
            if isinstance(cell, dict) and cell.get("suite") and (score := _score(cell)) is not None:
                scores[str(cell["suite"])] = score
        tables.append((str(row.get("model")), scores))
    if not tables:
        return {}, {}
    return tables[0][1], dict(tables[1:])
