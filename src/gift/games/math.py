"""Math (`math-v0`): the formal task — one verifiable problem, one answer, reward 1 if it is right.

Problems come from the built-in generator (`level` 1, 2, 3 or "mixed"; see `gift.games.math_generator`) or
from a MATH-style file or dataset (`data`; see `gift.games.math_data` for the accepted formats and fields).
The seed picks the problem, so a GRPO group that shares a seed answers the same question.

Grading (`gift.grading.grade_math`) accepts any answer that math-verify finds equivalent to the gold answer:
"3/4", "0.75", "\\frac{3}{4}" and "\\boxed{3/4}" are all right. For generated problems the answer must also be a
number rather than an expression still to be evaluated, so repeating the question's expression earns nothing;
data problems are graded by math-verify alone, as in the reference setup (the paper's Math environment).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from gift.errors import ConfigError
from gift.games.base import Outcome, TextGame
from gift.games.math_data import MathRecord, load_problems
from gift.games.math_generator import LEVELS, GeneratedProblem, format_number, generate_problem
from gift.grading import grade_math

LEVEL_CHOICES = (*LEVELS, "mixed")
DATA_INSTRUCTION = (
    "Inside <answer> </answer> write only the final answer (a number or a LaTeX expression such as "
    "\\frac{3}{4}), with no words, units or explanation."
)


class MathProblem(TextGame):
    """Single-turn problem solving; the episode ends with the first answer, right ("correct") or not ("wrong")."""

    id: ClassVar[str] = "math-v0"
    default_max_turns: ClassVar[int] = 1

    def __init__(
        self,
        level: int | str = "mixed",
        data: str | os.PathLike[str] | None = None,
        max_turns: int | None = None,
        parser: str = "strict",
    ) -> None:
        super().__init__(max_turns=max_turns, parser=parser)
        self.level = _parse_level(level)
        self.records: tuple[MathRecord, ...] | None = None
        if data is not None:
            if not isinstance(data, str | os.PathLike) or not os.fspath(data).strip():
                raise ConfigError(f"math-v0: data={data!r} must be a file path or 'hf:NAME:SPLIT'")
            if self.level != "mixed":
                raise ConfigError(
                    f"math-v0: level={level!r} applies to generated problems only; leave it at 'mixed' with data"
                )
            self.records = load_problems(data)
        self.data = None if data is None else os.fspath(data)
        # Episode state, set by _reset.
        self.problem_text = ""
        self.gold = ""
        self.problem_id: str | None = None
        self.problem_index: int | None = None
        self.problem_level: int | None = None
        self.template: str | None = None
        self.answer: str | None = None
        self.correct: bool | None = None

    def _reset(self) -> None:
        self.answer = None
        self.correct = None
        if self.records is not None:
            index = self.rng.randrange(len(self.records))
            record = self.records[index]
            self.problem_index, self.problem_id = index, record.id
            self.problem_level = self.template = None
            self.problem_text = f"{record.problem}\n\n{DATA_INSTRUCTION}"
            self.gold = record.answer
            return
        level = self.level if self.level != "mixed" else self.rng.choice(LEVELS)
        problem: GeneratedProblem = generate_problem(self.rng, level)
        self.problem_index = None
        self.problem_level, self.template = problem.level, problem.template
        self.problem_id = f"L{problem.level}-{problem.template}-seed{self.seed}"
        self.problem_text = problem.text
        self.gold = format_number(problem.answer)

    def _act(self, action: str) -> Outcome:
        self.answer = action.strip()
        self.correct = grade_math(self.answer, self.gold, plain_number=self.records is None)
        return Outcome(
            terminated=True,
            reward=1.0 if self.correct else 0.0,
            success=self.correct,
            end_reason="correct" if self.correct else "wrong",
        )

    def render(self) -> str:
        if self.done and self.answer is not None:
            verdict = "correct" if self.correct else "not correct"
            return f"{self.problem_text}\n\nYour answer {self.answer!r} is {verdict}. The episode is over."
        return self.problem_text

    @classmethod
    def oracle_answer(cls, info: dict[str, Any], legal: list[str] | None, rng: Any) -> str | None:
        return str(info["gold_answer"])

    @classmethod
    def recorded_answer(cls, info: dict[str, Any]) -> str | None:
        return info.get("answer")

    def solution(self) -> str | None:
        return f"the answer is {self.gold}" if self.gold else None

    def game_info(self) -> dict[str, Any]:
        return {
            "source": "generated" if self.records is None else "data",
            "problem_id": self.problem_id,
            "problem_index": self.problem_index,
            "level": self.problem_level,
            "template": self.template,
            "gold_answer": self.gold,
            "answer": self.answer,
        }


def _parse_level(level: object) -> int | str:
    """1, 2, 3 or "mixed"; "2" from a command line or YAML string is read as 2."""
    if isinstance(level, str) and level.strip().isdigit():
        level = int(level.strip())
    if isinstance(level, bool) or level not in LEVEL_CHOICES:
        shown = ", ".join(repr(c) for c in LEVEL_CHOICES)
        raise ConfigError(f"math-v0: level={level!r} is not allowed; choose one of: {shown}")
    return "mixed" if level == "mixed" else int(level)  # type: ignore[call-overload]
