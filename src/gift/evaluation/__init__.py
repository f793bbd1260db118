"""Model-free building blocks of evaluation: benchmark loading, answer scoring, intervals, exploitability, ratings.

Everything here is plain Python + numpy (scipy and `datasets` are imported only by the functions that need them),
so it imports without torch; the runner that generates with a model builds on these (`gift eval` is `cli_main`,
which imports torch only once a model loads).
"""

from gift.evaluation.cli import cli_main
from gift.evaluation.datasets import BENCHMARKS, BenchmarkItem, format_prompt, load_items
from gift.evaluation.exploitability import (
    empirical_exploitability,
    matrix_exploitability,
    role_exploitability,
    strategy_from_answers,
    tictactoe_exploitability,
    tictactoe_value,
)
from gift.evaluation.ratings import MatchResult, Rating, fit_ratings, schedule_matches
from gift.evaluation.scorers import (
    answer_block,
    commongen_judge_messages,
    commongen_outcome,
    extract_choice,
    judge_commongen,
    judge_order,
    parse_judge_verdict,
    score_choice,
    score_math,
)
from gift.evaluation.stats import Estimate, binomial_ci, mean_ci, proportion, seed_spread

__all__ = [
    "BENCHMARKS",
    "BenchmarkItem",
    "Estimate",
    "MatchResult",
    "Rating",
    "answer_block",
    "binomial_ci",
    "cli_main",
    "commongen_judge_messages",
    "commongen_outcome",
    "empirical_exploitability",
    "extract_choice",
    "fit_ratings",
    "format_prompt",
    "judge_commongen",
    "judge_order",
    "load_items",
    "matrix_exploitability",
    "mean_ci",
    "parse_judge_verdict",
    "proportion",
    "role_exploitability",
    "schedule_matches",
    "score_choice",
    "score_math",
    "seed_spread",
    "strategy_from_answers",
    "tictactoe_exploitability",
    "tictactoe_value",
]
