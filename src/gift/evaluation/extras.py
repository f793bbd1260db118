"""What goes beyond the paper's table: exploitability from the played games, and an lm-eval harness run.

Matrix exploitability is computed per (game, sign, role) cell from the model's sampled answers in the Matrix
episodes (`collect_matrix_answers` → `matrix_exploitability`): how far below its equilibrium payoff a
best-responding opponent could push the model's action mix. TicTacToe exploitability is empirical: 0.5 minus the
mean score (win 1, draw 0.5, loss 0) of games against the perfect player (a lower bound of the exact value).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from typing import Any

from gift.errors import ConfigError
from gift.evaluation.exploitability import (
    collect_matrix_answers,
    empirical_exploitability,
    matrix_exploitability,
)
from gift.evaluation.games_eval import episode_score

HARNESSES = ("lm-eval",)
LM_EVAL_MISSING = "install lm-eval (pip install lm-eval) to use --harness lm-eval"


def model_exploitability(
    matrix_records: Sequence[Mapping[str, Any]], tictactoe_records: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Both measures for one model from its episode records (either list may be empty)."""
    out: dict[str, Any] = {"matrix": None, "tictactoe": None}
    infos = [r["info"] for r in matrix_records if "matrix_game_index" in r.get("info", {})]
    if infos:
        report = matrix_exploitability(collect_matrix_answers(infos))
        out["matrix"] = {
            "episodes": len(infos),
            "mean_normalised": report.mean_normalised,
            "mean_normalised_worst_case": report.mean_normalised_worst_case,
            "by_game": report.by_game(),
            "by_role": {str(k): v for k, v in report.by_role().items()},
            "cells": report.table(),
        }
    scores = [episode_score(r) for r in tictactoe_records if r.get("correct") is not None]
    if scores:
        est = empirical_exploitability(scores)
        out["tictactoe"] = {
            **est.as_dict(),
            "games": len(scores),
            "wins": scores.count(1.0),
            "draws": scores.count(0.5),
        }
    return out


def _num(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None or x != x else f"{x:.{digits}f}"


def exploitability_markdown(results: Mapping[str, Mapping[str, Any]], notes: Sequence[str] = ()) -> str:
    """exploitability.md: per model, the matrix summary and cells, and TicTacToe against the perfect player."""
    lines = ["# Exploitability", ""]
    lines += [
        "Matrix: per (game, sign, role) cell, the model's action mix from its sampled answers (invalid answers "
        "forfeit); exploitability = max(0, equilibrium payoff - payoff against a best-responding opponent), "
        "normalised by the role's payoff range. Few samples per cell make single cells noisy (see n).",
        "TicTacToe: 0.5 - mean score against the perfect player (0 = never beaten; at most 0.5).",
    ]
    for model, result in results.items():
        lines += ["", f"## {model}", ""]
        matrix = result.get("matrix")
        if matrix is None:
            lines.append("Matrix: n/a (no Matrix episodes; add matrix to --suite)")
        else:
            lines.append(
                f"Matrix: mean normalised exploitability {_num(matrix['mean_normalised'])}, worst case "
                f"{_num(matrix['mean_normalised_worst_case'])} over {len(matrix['cells'])} cells "
                f"from {matrix['episodes']} episodes."
            )
            lines += [
                "",
                "| Game | Sign | Role | n | Invalid | Nash value | Best-reply payoff | Exploitability | Normalised |",
            ]
            lines.append("|---|---|---|---|---|---|---|---|---|")
            for c in matrix["cells"]:
                lines.append(
                    f"| {c['game']} | {c['sign']:+d} | P{c['role']} | {c['n']} | {_num(c['invalid'], 2)} | "
                    f"{_num(c['nash_value'], 2)} | {_num(c['best_response_payoff'], 2)} | "
                    f"{_num(c['exploitability'], 2)} | {_num(c['normalised'])} |"
                )
            by_game = ", ".join(f"{g} {_num(v)}" for g, v in matrix["by_game"].items())
            by_role = ", ".join(f"P{r} {_num(v)}" for r, v in matrix["by_role"].items())
            lines += ["", f"By game: {by_game}.", f"By role: {by_role}."]
        ttt = result.get("tictactoe")
        lines.append("")
        if ttt is None:
            lines.append("TicTacToe: n/a (no scored games against the perfect player)")
        else:
            lines.append(
                f"TicTacToe vs perfect: exploitability {_num(ttt['value'])} [{_num(ttt['low'])}, {_num(ttt['high'])}] "
                f"(n={ttt['games']}; wins {ttt['wins']}, draws {ttt['draws']})."
            )
    if notes:
        lines += ["", "Notes:", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def check_harness(harness: str | None, tasks: Sequence[str]) -> None:
    """Fail early (before any model loads) when the harness is unknown, missing, or has no tasks."""
    if harness is None:
        if tasks:
            raise ConfigError("--tasks only applies with --harness lm-eval")
        return
    if harness not in HARNESSES:
        raise ConfigError(f"--harness {harness!r} is not allowed; choose one of: {', '.join(HARNESSES)}")
    if importlib.util.find_spec("lm_eval") is None:
        raise ConfigError(LM_EVAL_MISSING)
    if not tasks:
        raise ConfigError("--harness lm-eval needs --tasks, e.g. --tasks mmlu,arc_easy")


def run_lm_eval(weights: str, adapter: str | None, tasks: Sequence[str], limit: int | None) -> dict[str, Any]:
    """lm_eval.simple_evaluate on the model (base + peft adapter for LoRA checkpoints); its `results` part."""
    import lm_eval

    from gift.models import EMBEDDED, resolve_model

    weights = resolve_model(weights) if weights == EMBEDDED else weights
    model_args = f"pretrained={weights}" + (f",peft={adapter}" if adapter else "")
    output = lm_eval.simple_evaluate(model="hf", model_args=model_args, tasks=list(tasks), limit=limit)
    return dict((output or {}).get("results", {}))
