"""Prompt layouts for the matrix game: the same payoffs written in many different ways.

Varying the presentation (tables, lists, arrays, stories, JSON …) keeps a policy from latching onto one surface
form; the strategic content is identical in every layout. Each layout states which player the reader is, shows
every payoff of both players and asks for one action number in 1..N (N = the reader's own action count). Rows are
always Player 1's actions and columns Player 2's.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Matrix = tuple[tuple[int, ...], ...]

PEOPLE = (("Ingrid", "Tomas"), ("Priya", "Mateo"), ("Yuki", "Omar"), ("Lena", "Kwame"), ("Sofia", "Declan"))
COMPANIES = (
    ("Northwind Ltd", "Bluepeak Inc"),
    ("Ardent Foods", "Cobalt Grocers"),
    ("Helix Motors", "Vireo Cars"),
    ("Quarry Telecom", "Lumen Mobile"),
)
ANIMALS = (("heron", "otter"), ("fox", "badger"), ("crow", "magpie"), ("lynx", "wolf"), ("gecko", "toad"))


@dataclass(frozen=True)
class View:
    """Everything a layout needs: both payoff matrices, the reader's role and two display names."""

    A: Matrix
    B: Matrix
    role: int
    names: tuple[str, str] = ("Player 1", "Player 2")

    @property
    def rows(self) -> int:
        return len(self.A)

    @property
    def cols(self) -> int:
        return len(self.A[0])

    @property
    def own_actions(self) -> int:
        return self.rows if self.role == 1 else self.cols

    @property
    def other_actions(self) -> int:
        return self.cols if self.role == 1 else self.rows

    @property
    def me(self) -> str:
        return self.names[self.role - 1]

    def cells(self):
        """(row, col, P1 payoff, P2 payoff) for every cell, 1-indexed, row-major."""
        for i in range(self.rows):
            for j in range(self.cols):
                yield i + 1, j + 1, self.A[i][j], self.B[i][j]


def _numbers(n: int) -> str:
    return ", ".join(str(k) for k in range(1, n + 1))


def _side(role: int) -> str:
    return "row" if role == 1 else "column"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def _grid(v: View, label_row: str, label_col: str, cell: Callable[[int, int], str]) -> str:
    header = [""] + [f"{label_col} {j}" for j in range(1, v.cols + 1)]
    body = [
        [f"{label_row} {i}"] + [cell(i - 1, j - 1) for j in range(1, v.cols + 1)]
        for i in range(1, v.rows + 1)
    ]
    return _md_table(header, body)


# ---------------------------------------------------------------------------------------------- the layouts
def _two_tables(v: View) -> str:
    p1 = _grid(v, "P1 action", "P2 action", lambda i, j: str(v.A[i][j]))
    p2 = _grid(v, "P1 action", "P2 action", lambda i, j: str(v.B[i][j]))
    return (
        f"You are Player {v.role} (P{v.role}). Both players move at the same time: P1 picks a row, "
        f"P2 picks a column.\n\nPayoffs received by P1:\n{p1}\n\nPayoffs received by P2:\n{p2}\n\n"
        f"Choose your action: reply with a single number from 1 to {v.own_actions}."
    )


def _combined_table(v: View) -> str:
    grid = _grid(v, "P1 plays", "P2 plays", lambda i, j: f"({v.A[i][j]}, {v.B[i][j]})")
    return (
        f"Each cell below shows (payoff of P1, payoff of P2). Player 1 owns the rows, Player 2 the columns.\n\n"
        f"{grid}\n\nYou play as Player {v.role}, the {_side(v.role)} player. "
        f"Which of your actions {_numbers(v.own_actions)} do you pick?"
    )


def _cell_list(v: View) -> str:
    lines = [
        f"- P1 takes action {i}, P2 takes action {j}: P1 earns {a}, P2 earns {b}" for i, j, a, b in v.cells()
    ]
    return (
        f"A simultaneous-move game between Player 1 ({v.rows} actions) and Player 2 ({v.cols} actions).\n"
        "Every possible outcome:\n" + "\n".join(lines) + f"\n\nYou are Player {v.role}. "
        f"State the action you take as one integer between 1 and {v.own_actions}."
    )


def _raw_arrays(v: View) -> str:
    a = json.dumps([list(r) for r in v.A])
    b = json.dumps([list(r) for r in v.B])
    return (
        "Bimatrix game. Row index = Player 1's action, column index = Player 2's action (both counted from 1).\n"
        f"A (Player 1 payoffs) = {a}\nB (Player 2 payoffs) = {b}\n\n"
        f"Role: Player {v.role}. Output the index of your action, an integer in 1..{v.own_actions}."
    )


def _people(v: View) -> str:
    p, q = v.names
    lines = []
    for i in range(v.rows):
        parts = [f"{q} picks {j + 1} → {p} {v.A[i][j]}, {q} {v.B[i][j]}" for j in range(v.cols)]
        lines.append(f"If {p} picks {i + 1}: " + "; ".join(parts) + ".")
    return (
        f"{p} (Player 1) and {q} (Player 2) each secretly pick an option; {p} has {v.rows} options and "
        f"{q} has {v.cols}. The points each of them gets:\n" + "\n".join(lines) + "\n\n"
        f"You are {v.me} (Player {v.role}). Which option do you pick? Answer with a number from 1 to {v.own_actions}."
    )


def _companies(v: View) -> str:
    p, q = v.names
    grid = _grid(v, f"{p} strategy", f"{q} strategy", lambda i, j: f"{v.A[i][j]} / {v.B[i][j]}")
    return (
        f"Two firms compete in one market: {p} (Player 1) and {q} (Player 2). Each commits to a strategy "
        f"without seeing the rival's choice. Profit in each cell is written as {p} / {q}.\n\n{grid}\n\n"
        f"You run {v.me}, which is Player {v.role}. Which strategy do you commit to "
        f"({_numbers(v.own_actions)})?"
    )


def _animals(v: View) -> str:
    p, q = v.names
    lines = [
        f"{p} tactic {i} against {q} tactic {j}: {p} gains {a}, {q} gains {b}" for i, j, a, b in v.cells()
    ]
    return (
        f"At a shared watering hole a {p} (Player 1) and a {q} (Player 2) each choose a tactic at the same "
        f"moment. The {p} knows {v.rows} tactics, the {q} knows {v.cols}. Food gained for each pairing:\n"
        + "\n".join(lines)
        + f"\n\nYou are the {v.me}, Player {v.role}. Pick your tactic by number, 1 to {v.own_actions}."
    )


def _questions(v: View) -> str:
    qa = [f"Q: Which player are you?\nA: Player {v.role}, choosing the {_side(v.role)}."]
    qa += [
        f"Q: What if P1 plays {i} and P2 plays {j}?\nA: P1 receives {a} and P2 receives {b}."
        for i, j, a, b in v.cells()
    ]
    qa.append(f"Q: Which action do you play?\nA: (answer with one number from 1 to {v.own_actions})")
    return "\n".join(qa)


def _minimal(v: View) -> str:
    a = "\n".join(" ".join(str(x) for x in row) for row in v.A)
    b = "\n".join(" ".join(str(x) for x in row) for row in v.B)
    return f"You: P{v.role} (Player {v.role}). Rows = P1, columns = P2.\nP1 payoffs:\n{a}\nP2 payoffs:\n{b}\nAction (1..{v.own_actions})?"


def _step_guide(v: View) -> str:
    grid = _grid(v, "Row", "Col", lambda i, j: f"{v.A[i][j]}, {v.B[i][j]}")
    return (
        f"Game table (entries: Player 1 payoff, Player 2 payoff). Player 1 chooses a row, Player 2 a column.\n\n"
        f"{grid}\n\nYou are Player {v.role}. A careful way to decide:\n"
        "1. For each choice the opponent might make, note your best reply.\n"
        "2. Do the same from the opponent's point of view.\n"
        "3. Look for a pair of choices where each one is a best reply to the other.\n"
        f"Then give your own action as a number from 1 to {v.own_actions}."
    )


def _complete_information(v: View) -> str:
    rows = [
        f"Row {i + 1}: " + "  ".join(f"({v.A[i][j]}, {v.B[i][j]})" for j in range(v.cols))
        for i in range(v.rows)
    ]
    return (
        "One-shot game of complete information: both players know every payoff below, move simultaneously and "
        "cannot communicate. Each row lists, column by column, (Player 1 payoff, Player 2 payoff).\n"
        + "\n".join(rows)
        + f"\n\nYou are Player {v.role} and control the {_side(v.role)}s. "
        f"Which {_side(v.role)} do you choose? Options: {_numbers(v.own_actions)}."
    )


def _your_view(v: View) -> str:
    mine, theirs = (v.A, v.B) if v.role == 1 else (v.B, v.A)
    lines = []
    for x in range(v.own_actions):
        for y in range(v.other_actions):
            i, j = (x, y) if v.role == 1 else (y, x)
            lines.append(
                f"- you play {x + 1}, they play {y + 1}: you get {mine[i][j]}, they get {theirs[i][j]}"
            )
    return (
        f"You are Player {v.role}. You have {v.own_actions} actions and your opponent "
        f"(Player {3 - v.role}) has {v.other_actions}; you both choose at once.\n"
        + "\n".join(lines)
        + f"\n\nWhich action do you take? Reply with its number, 1 to {v.own_actions}."
    )


def _csv(v: View) -> str:
    lines = ["p1_action,p2_action,p1_payoff,p2_payoff"] + [f"{i},{j},{a},{b}" for i, j, a, b in v.cells()]
    return (
        "Payoff data for a two-player simultaneous game, one line per outcome:\n\n"
        + "\n".join(lines)
        + "\n\n"
        f"You are Player {v.role} (column prefix p{v.role}). Report your action: an integer from 1 to {v.own_actions}."
    )


def _json(v: View) -> str:
    data = {
        "you_are": f"Player {v.role}",
        "player_1_actions": list(range(1, v.rows + 1)),
        "player_2_actions": list(range(1, v.cols + 1)),
        "payoffs_player_1": [list(r) for r in v.A],
        "payoffs_player_2": [list(r) for r in v.B],
        "note": "payoffs[row][column]; rows are Player 1's actions, columns are Player 2's",
    }
    return (
        f"Game specification:\n{json.dumps(data)}\n\n"
        f"Play it as Player {v.role}: which of your actions {_numbers(v.own_actions)} do you choose?"
    )


LAYOUTS: tuple[tuple[str, Callable[[View], str], tuple[tuple[str, str], ...] | None], ...] = (
    ("two_tables", _two_tables, None),
    ("combined_table", _combined_table, None),
    ("cell_list", _cell_list, None),
    ("raw_arrays", _raw_arrays, None),
    ("people", _people, PEOPLE),
    ("companies", _companies, COMPANIES),
    ("animals", _animals, ANIMALS),
    ("questions", _questions, None),
    ("minimal", _minimal, None),
    ("step_guide", _step_guide, None),
    ("complete_information", _complete_information, None),
    ("your_view", _your_view, None),
    ("csv", _csv, None),
    ("json", _json, None),
)
"""(name, builder, pool of display-name pairs or None)."""

LAYOUT_NAMES = tuple(name for name, _, _ in LAYOUTS)


def render_prompt(layout: int, A: Matrix, B: Matrix, role: int, rng: random.Random) -> str:
    """The observation for one episode; `rng` picks display names for the story layouts."""
    _, build, pool = LAYOUTS[layout]
    names = rng.choice(pool) if pool else ("Player 1", "Player 2")
    return build(View(A=A, B=B, role=role, names=names))
