"""TicTacToe (`tictactoe-v0`): the trained player against a scripted, LLM or self-play opponent on a 3x3 board.

Pure board functions come first so that bots, tests and evaluation share one definition of the rules. A board is
a tuple of 9 cells in row-major order; Player 1 plays 'O' and moves first, Player 2 plays 'X', empty is '.'.
Moves are shown to players as 1-indexed (row, col) pairs and used internally as 0-based cell indices.

Scripted opponents live here too (adding a game stays one file): `RandomPlayer`, `PerfectPlayer` (memoised
minimax) and `EpsilonPlayer`, which mixes the two and is the skill knob.

Opponent `OpponentRequest.state` keys: "board" (tuple of 9 chars), "mark" ("O" or "X", the opponent's own mark),
"legal" (list of 1-indexed (row, col) tuples).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from functools import cache, lru_cache
from types import MappingProxyType
from typing import Any

from gift.errors import ConfigError, check_choice, check_range
from gift.games.base import RULE_PROFILES, Outcome, SeatView, TextGame
from gift.games.protocol import excerpt
from gift.opponents import DEFAULT_TRIES, Opponent, OpponentRequest, resolve_opponent

Board = tuple[str, ...]

EMPTY = "."
MARKS = ("O", "X")
"""MARKS[seat - 1] is the mark of Player `seat`."""
EMPTY_BOARD: Board = (EMPTY,) * 9
LINES: tuple[tuple[int, int, int], ...] = (
    (0, 1, 2), (3, 4, 5), (6, 7, 8),  # rows
    (0, 3, 6), (1, 4, 7), (2, 5, 8),  # columns
    (0, 4, 8), (2, 4, 6),  # diagonals
)  # fmt: skip
MOVE_PATTERN = re.compile(r"\(\s*(\d{1,4})\s*,\s*(\d{1,4})\s*\)")
"""At most 4 digits a coordinate: a longer number is no move (and never reaches int())."""
_ANSWERED_MOVE = re.compile(r"<answer>\s*(\(\s*\d{1,4}\s*,\s*\d{1,4}\s*\))\s*</answer>")
"""The reference rules read another seat's move from an answer block holding only the move, else from anywhere."""
START_MODES = ("train", "empty")
ILLEGAL_MOVE_RULES = ("penalty", "loss")
DEFAULT_OPPONENT: Mapping[str, Any] = MappingProxyType({"kind": "epsilon", "epsilon": 0.5})
"""Used when `opponent` is None: a perfect player that plays a random move half of the time."""


# --------------------------------------------------------------------------- pure board functions
def other_mark(mark: str) -> str:
    return MARKS[1] if mark == MARKS[0] else MARKS[0]


def mark_to_move(board: Board) -> str:
    """Whose turn it is in a position reached by alternating play from the empty board ('O' starts)."""
    return MARKS[0] if board.count(MARKS[0]) == board.count(MARKS[1]) else MARKS[1]


# Board functions run several times per step; positions are few (3^9 at most), so the pure ones are memoised.
_POSITION_CACHE = 32768


def winner(board: Board) -> str | None:
    """The mark holding a complete line, or None."""
    return _winner(board if type(board) is tuple else tuple(board))


@lru_cache(maxsize=_POSITION_CACHE)
def _winner(board: Board) -> str | None:
    for a, b, c in LINES:
        if board[a] != EMPTY and board[a] == board[b] == board[c]:
            return board[a]
    return None


def is_full(board: Board) -> bool:
    return EMPTY not in board


def is_terminal(board: Board) -> bool:
    return winner(board) is not None or is_full(board)


def legal_moves(board: Board) -> list[int]:
    """Empty cells (0-based) of a position that is still being played; none once someone has won."""
    return list(_legal_cells(board if type(board) is tuple else tuple(board)))


@lru_cache(maxsize=_POSITION_CACHE)
def _legal_cells(board: Board) -> tuple[int, ...]:
    if _winner(board) is not None:
        return ()
    return tuple(i for i, cell in enumerate(board) if cell == EMPTY)


def play(board: Board, cell: int, mark: str) -> Board:
    """The board after `mark` takes the empty `cell`."""
    if board[cell] != EMPTY:
        raise ValueError(f"cell {cell} is already taken")
    return board[:cell] + (mark,) + board[cell + 1 :]


def cell_to_rc(cell: int) -> tuple[int, int]:
    """0-based cell index → 1-indexed (row, col)."""
    return cell // 3 + 1, cell % 3 + 1


def rc_to_cell(row: int, col: int) -> int:
    """1-indexed (row, col) → 0-based cell index (no range check)."""
    return (row - 1) * 3 + (col - 1)


_MOVE_TEXT = tuple(f"({c // 3 + 1}, {c % 3 + 1})" for c in range(9))


def format_move(cell: int) -> str:
    if type(cell) is int and 0 <= cell < 9:
        return _MOVE_TEXT[cell]
    row, col = cell_to_rc(cell)
    return f"({row}, {col})"


def parse_move(text: str) -> tuple[int, int] | None:
    """The first "(row, col)" pair in `text`, 1-indexed and not range-checked, or None."""
    m = MOVE_PATTERN.search(text)
    return (int(m.group(1)), int(m.group(2))) if m else None


def format_board(board: Board) -> str:
    """The grid with a 1-indexed column header and 1-indexed row labels."""
    return _format_board(board if type(board) is tuple else tuple(board))


@lru_cache(maxsize=_POSITION_CACHE)
def _format_board(board: Board) -> str:
    lines = ["  1 2 3"]
    for r in range(3):
        lines.append(f"{r + 1} " + " ".join(board[3 * r : 3 * r + 3]))
    return "\n".join(lines)


def legal_rc(board: Board) -> list[tuple[int, int]]:
    return [cell_to_rc(c) for c in legal_moves(board)]


@lru_cache(maxsize=_POSITION_CACHE)
def _legal_rc_text(board: Board) -> str:
    """`str(legal_rc(board))`, as the prompts show it."""
    return str(legal_rc(board))


@cache
def solve(board: Board, mark: str) -> int:
    """Minimax value for `mark`, who is to move: > 0 win, 0 draw, < 0 loss.

    The magnitude is 1 + the number of empty cells when the game ends, so a sooner win scores higher and a
    later loss scores less badly. Memoised: the game has only a few thousand positions.
    """
    won = winner(board)
    if won is not None:
        size = 1 + board.count(EMPTY)
        return size if won == mark else -size
    if is_full(board):
        return 0
    return max(-solve(play(board, cell, mark), other_mark(mark)) for cell in legal_moves(board))


def optimal_moves(board: Board, mark: str) -> list[int]:
    """Every legal cell that keeps the best minimax value for `mark` (ties kept, in cell order)."""
    scores = {cell: -solve(play(board, cell, mark), other_mark(mark)) for cell in legal_moves(board)}
    if not scores:
        return []
    best = max(scores.values())
    return [cell for cell, score in scores.items() if score == best]


# --------------------------------------------------------------------------- scripted opponents
def _bot_position(request: OpponentRequest) -> tuple[Board, str, list[int]]:
    """Board, own mark and legal cells from a request's structured state."""
    board: Board = tuple(request.state["board"])
    mark = request.state.get("mark") or mark_to_move(board)
    legal = request.state.get("legal")
    cells = [rc_to_cell(r, c) for r, c in legal] if legal is not None else legal_moves(board)
    return board, mark, cells


class RandomPlayer(Opponent):
    """A uniformly random legal move."""

    name = "random"

    def act(self, request: OpponentRequest) -> str:
        _, _, cells = _bot_position(request)
        return format_move(request.rng.choice(cells))


class PerfectPlayer(Opponent):
    """Minimax play that never loses; prefers faster wins and slower losses, breaks ties at random."""

    name = "perfect"

    def act(self, request: OpponentRequest) -> str:
        board, mark, _ = _bot_position(request)
        return format_move(request.rng.choice(optimal_moves(board, mark)))


class EpsilonPlayer(Opponent):
    """With probability `epsilon` a random legal move, otherwise a perfect one: a single skill knob."""

    def __init__(self, epsilon: float = 0.3) -> None:
        super().__init__()
        check_range("epsilon", epsilon, 0.0, 1.0)
        self.epsilon = float(epsilon)
        self.name = f"epsilon({self.epsilon:g})"

    def act(self, request: OpponentRequest) -> str:
        board, mark, cells = _bot_position(request)
        # No draw at epsilon 0 or 1, so those settings consume the same randomness as the pure bots.
        explore = self.epsilon >= 1.0 or (self.epsilon > 0.0 and request.rng.random() < self.epsilon)
        if explore:
            return format_move(request.rng.choice(cells))
        return format_move(request.rng.choice(optimal_moves(board, mark)))


BOTS: Mapping[str, type[Opponent]] = MappingProxyType(
    {"random": RandomPlayer, "perfect": PerfectPlayer, "epsilon": EpsilonPlayer}
)


# --------------------------------------------------------------------------- prompt text
RULES = (
    "Two players take turns writing their mark into an empty square of a 3-by-3 grid. Player 1 writes 'O' and "
    "always starts; Player 2 writes 'X'. Whoever first owns three squares in one straight line (a row, a column "
    "or a diagonal) wins. If all nine squares fill up without such a line, the game is a draw.",
    "The board has three rows and three columns. On each turn you claim exactly one square that still shows "
    "'.', and you may not pass. Player 1 uses 'O' and moves first, Player 2 uses 'X'. Complete a line of three "
    "of your own marks, horizontally, vertically or diagonally, to win; a full board with no line is a draw.",
    "Goal: be the first to line up three of your marks. Squares are named (row, col), both counted from 1 "
    "starting at the top-left corner. Only empty squares ('.') can be taken. 'O' belongs to Player 1, who "
    "opens the game, and 'X' to Player 2; the players alternate. A full grid with nobody in a line means "
    "nobody wins.",
    "A short placement game on a 3x3 grid. The players alternate, one mark per move: 'O' for Player 1, who "
    "opens, and 'X' for Player 2. A move names an empty cell as (row, col), rows counted top to bottom and "
    "columns left to right, from 1. Three equal marks along any row, column or diagonal win at once; nine "
    "filled cells without a winner end in a draw.",
    "You and your opponent share a 3x3 board and alternate placing marks, Player 1 with 'O' (moving first) and "
    "Player 2 with 'X'. A mark can only go on an empty cell, written '.'. Make a straight line of three "
    "(across, down or corner to corner) before your opponent does, and block their lines when you must. When "
    "the board is full and no line exists, the result is a tie.",
)

WIN_CONDITIONS = """\
How a game is decided (examples with 'O'; the same holds for 'X'):
Row          Column       Diagonal     Other diagonal
O O O        . O .        O . .        . . O
. . .        . O .        . O .        . O .
. . .        . O .        . . O        O . .
Any one of the 3 rows, 3 columns or 2 diagonals filled with one player's mark wins for that player.
A draw: all 9 cells are taken and no line holds three equal marks, for example
O X O
O X X
X O O"""


def describe_position(board: Board, seat: int, variant: random.Random) -> str:
    """The board as Player `seat` sees it, with a rules text (and maybe the win examples) drawn by `variant`."""
    mark = MARKS[seat - 1]
    parts = [f"You are Player {seat} in a game of Tic-Tac-Toe and you play '{mark}'.", variant.choice(RULES)]
    if variant.random() < 0.5:
        parts.append(WIN_CONDITIONS)
    parts.append("## Current Game State\n" + format_board(board))
    return "\n\n".join(parts)


@lru_cache(maxsize=4096)
def _position_text(board: Board, seat: int, variant_key: str) -> str:
    """`describe_position` with the layout drawn from `random.Random(variant_key)`, memoised: seeding a
    generator from a string is a large share of a step, and a GRPO group renders the same text many times."""
    return describe_position(board, seat, random.Random(variant_key))


# --------------------------------------------------------------------------- the game
class TicTacToe(TextGame):
    """TicTacToe, both seats: win 1 (success), draw 0.5, loss 0 for the focal seat; an illegal move costs -0.1
    and a turn.

    Options: `opponent` (bot name, {"kind": ...} dict or `Opponent`; None = `DEFAULT_OPPONENT`): who plays the
    other seat in the single-agent view and, unless told otherwise, in the driver; `start` ("train": the paper's
    training start with a random seat and an optional random pre-round; "empty": an empty board with a random
    first player, used for evaluation); `seat` (None: drawn per episode; 1 or 2: the focal seat is fixed);
    `opponent_tries` (attempts the other seat gets per move before it forfeits); `illegal_move` ("penalty": an
    illegal move of the focal seat costs -0.1 and a turn and the game goes on; "loss": it loses the game at once,
    the paper's evaluation rule, the paper's evaluation protocol; None: "loss" under reference rules with `start="empty"`, else
    "penalty"); `rules` ("gift" or "reference": the reference implementation's reading of the other seat's
    reply — a bare `<answer>(r, c)</answer>`, else the first (r, c) anywhere in it, reasoning included — and an
    opponent that runs out of tries ends the game with reward 0 for the focal seat instead of an unscored
    episode; the README lists every difference).
    """

    id = "tictactoe-v0"
    seats = 2
    default_max_turns = 5
    max_actions_per_turn = 5

    def __init__(
        self,
        opponent: Opponent | str | Mapping[str, Any] | None = None,
        start: str = "train",
        opponent_tries: int = DEFAULT_TRIES,
        seat: int | None = None,
        illegal_move: str | None = None,
        rules: str = "gift",
        max_turns: int | None = None,
        parser: str = "strict",
    ) -> None:
        super().__init__(max_turns=max_turns, parser=parser)
        check_choice(f"{self.id}: rules", rules, RULE_PROFILES)
        check_choice(f"{self.id}: start", start, START_MODES)
        if illegal_move is None:
            illegal_move = "loss" if rules == "reference" and start == "empty" else "penalty"
        check_choice(f"{self.id}: illegal_move", illegal_move, ILLEGAL_MOVE_RULES)
        self.rules = rules
        self.illegal_move = illegal_move
        if opponent is None:
            opponent = dict(DEFAULT_OPPONENT)
        if isinstance(opponent_tries, bool) or not isinstance(opponent_tries, int) or opponent_tries < 1:
            raise ConfigError(f"{self.id}: opponent_tries={opponent_tries!r} must be an integer >= 1")
        if seat is not None and (isinstance(seat, bool) or seat not in (1, 2)):
            raise ConfigError(f"{self.id}: seat={seat!r} is not allowed; choose one of: None, 1, 2")
        self.opponent = resolve_opponent(opponent, BOTS, where=self.id)
        self.start_mode = start
        self.seat_option = seat
        self.opponent_tries = opponent_tries
        self.board: Board = EMPTY_BOARD
        self.seat = 1
        self.moves: list[tuple[str, int, int]] = []
        self._last_move: tuple[int, int] | None = None

    # ----------------------------------------------------------------- state helpers
    @property
    def mark(self) -> str:
        return MARKS[self.seat - 1]

    @property
    def opponent_seat(self) -> int:
        return 3 - self.seat

    @property
    def opponent_mark(self) -> str:
        return MARKS[self.opponent_seat - 1]

    def _place(self, cell: int, mark: str) -> None:
        self.board = play(self.board, cell, mark)
        self.moves.append((mark, *cell_to_rc(cell)))

    def _place_random(self, mark: str) -> None:
        self._place(self.rng.choice(legal_moves(self.board)), mark)

    def _variant_key(self, role: str) -> str:
        """Seed of the prompt layout: (seed, progress) only, so rendering never disturbs `self.rng`."""
        return f"{self.id}:{role}:{self.seed}:{self.turns_used}:{len(self.moves)}"

    def _describe(self, seat: int, role: str) -> str:
        return _position_text(self.board, seat, self._variant_key(role))

    # ----------------------------------------------------------------- hooks
    def _reset(self) -> None:
        self.board = EMPTY_BOARD
        self.moves = []
        self._last_move = None
        drawn = self.rng.choice((1, 2))
        self.seat = drawn if self.seat_option is None else self.seat_option
        self.focal_seat = self.seat
        opponent_first = self.seat == 2
        if self.start_mode == "train":
            if self.rng.random() < 0.5:
                self._place_random(MARKS[0])
                self._place_random(MARKS[1])
            if opponent_first:
                self._place_random(MARKS[0])
        elif opponent_first and self.seat_option is None:
            self._place_random(MARKS[0])

    def _to_move(self) -> int:
        return 1 if mark_to_move(self.board) == MARKS[0] else 2

    def _read_move(self, action: str) -> tuple[int, str]:
        """(cell, "") for a legal move in `action`, else (-1, why it is not one)."""
        move = parse_move(action)
        if move is None:
            return -1, f"No move of the form (row, col) was found in your answer {excerpt(action, 80)!r}."
        row, col = move
        if not (1 <= row <= 3 and 1 <= col <= 3):
            return -1, f"Your move ({row}, {col}) is off the board; rows and columns run from 1 to 3."
        cell = rc_to_cell(row, col)
        if self.board[cell] != EMPTY:
            return -1, f"Cell ({row}, {col}) is already taken by '{self.board[cell]}'."
        return cell, ""

    def _act(self, action: str) -> Outcome:
        cell, why = self._read_move(action)
        if cell < 0:
            return self._illegal(why)
        self._place(cell, self.mark)
        self._last_move = cell_to_rc(cell)
        return self._result() or Outcome()

    def _act_other(self, seat: int, action: str) -> Outcome:
        cell, why = self._read_move(action)
        if cell < 0:
            return Outcome(valid=False, message=f"Illegal move: {why} Choose an empty cell.")
        self._place(cell, MARKS[seat - 1])
        if (ended := self._result()) is not None:
            return ended
        if self._last_move is None:
            return Outcome(message=f"Your opponent opened with {format_move(cell)}.")
        row, col = self._last_move
        return Outcome(message=f"You played ({row}, {col}); your opponent answered {format_move(cell)}.")

    def _other_answer(self, reply: str) -> str | None:
        if self.rules == "gift":
            return super()._other_answer(reply)
        m = _ANSWERED_MOVE.search(reply)
        return m.group(1) if m else reply

    def forfeit(self, seat: int) -> None:
        """Under reference rules a forfeit after the focal seat has played is scored 0, as in the reference code."""
        if self.rules == "reference" and self.turns_used > 0:
            self.forfeit_as_loss(seat)
        else:
            super().forfeit(seat)

    def _illegal(self, why: str) -> Outcome:
        if self.illegal_move == "loss":
            return Outcome(
                valid=False, terminated=True, reward=0.0, end_reason="illegal_move", message=f"Illegal move: {why}"
            )
        return Outcome(valid=False, penalty=-0.1, message=f"Illegal move: {why} Choose an empty cell.")

    def _result(self) -> Outcome | None:
        """The terminal outcome for the focal seat if the last move ended the game."""
        won = winner(self.board)
        if won == self.mark:
            return Outcome(terminated=True, reward=1.0, success=True, end_reason="win", message="You won.")
        if won is not None:
            return Outcome(terminated=True, reward=0.0, end_reason="loss", message="You lost.")
        if is_full(self.board):
            return Outcome(terminated=True, reward=0.5, end_reason="draw", message="The game is a draw.")
        return None

    def observe(self, seat: int) -> SeatView:
        if seat == self.focal_seat:
            return SeatView(self.id, seat, self.render(), self.seat_state(seat), self.legal_actions())
        mark = MARKS[seat - 1]
        text = self._describe(seat, "opponent") + (
            f"\n\n## Your Turn\nYou are Player {seat} ('{mark}'). "
            f"Legal moves (row, col): {_legal_rc_text(self.board)}\n"
            "Answer with the cell you take, for example (2, 3)."
        )
        legal = [format_move(c) for c in legal_moves(self.board)]
        return SeatView(self.id, seat, text, self.seat_state(seat), legal)

    def seat_state(self, seat: int) -> dict[str, Any]:
        """The structured view scripted bots read: board, own mark, legal (row, col) moves."""
        return {
            "board": self.board,
            "mark": MARKS[seat - 1],
            "legal": [cell_to_rc(c) for c in legal_moves(self.board)],
        }

    def render(self) -> str:
        text = self._describe(self.seat, "player")
        if self.done and self.seed is not None:
            won = winner(self.board)
            if won is not None:
                result = "you won" if won == self.mark else "your opponent won"
            elif is_full(self.board):
                result = "it is a draw"
            else:
                result = "it stopped before a result"
            return f"{text}\n\nThe game is over: {result}."
        return (
            f"{text}\n\n## Your Turn\nYou are Player {self.seat} ('{self.mark}'). "
            f"The available moves (row, col) are: {_legal_rc_text(self.board)}\n"
            "Answer with the cell you take, for example (2, 3)."
        )

    @classmethod
    def oracle_answer(cls, info: dict[str, Any], legal: list[str] | None, rng: Any) -> str | None:
        """A minimax move on the board rebuilt from `info["moves"]` (ties broken at random)."""
        board = list(EMPTY_BOARD)
        for mark, row, col in info["moves"]:
            board[rc_to_cell(row, col)] = mark
        return format_move(rng.choice(optimal_moves(tuple(board), info["mark"])))

    def brief(self) -> str:
        return (
            f"{format_board(self.board)}\nYou are Player {self.seat} ('{self.mark}'). "
            f"Moves (row, col): {_legal_rc_text(self.board)}"
        )

    def legal_actions(self) -> list[str]:
        if self.done:
            return []
        return [format_move(c) for c in legal_moves(self.board)]

    def game_info(self) -> dict[str, Any]:
        return {
            "board": format_board(self.board),
            "mark": self.mark,
            "seat": self.seat,
            "opponent": getattr(self.opponent, "name", None),
            "moves": list(self.moves),
            "winner": winner(self.board),
            "rules": self.rules,
        }
