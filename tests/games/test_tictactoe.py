"""TicTacToe: board rules, the scripted opponents (perfect play checked exhaustively) and the game loop."""

from __future__ import annotations

import random
from functools import cache
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gift.errors import ConfigError
from gift.games.registry import make
from gift.games.tictactoe import (
    EMPTY,
    EMPTY_BOARD,
    MARKS,
    Board,
    EpsilonPlayer,
    PerfectPlayer,
    RandomPlayer,
    TicTacToe,
    cell_to_rc,
    format_board,
    format_move,
    is_full,
    legal_moves,
    mark_to_move,
    optimal_moves,
    other_mark,
    parse_move,
    play,
    rc_to_cell,
    solve,
    winner,
)
from gift.opponents import Opponent, OpponentRequest
from gift.prompts import OPPONENT_INSTRUCTION


def answer(text: str) -> str:
    return f"<think>my move</think><answer>{text}</answer>"


def request_for(board: Board, rng: random.Random, mark: str | None = None) -> OpponentRequest:
    mark = mark or mark_to_move(board)
    legal = [cell_to_rc(c) for c in legal_moves(board)]
    state = {"board": board, "mark": mark, "legal": legal}
    return OpponentRequest(game="tictactoe-v0", seat=MARKS.index(mark) + 1, prompt="", state=state, rng=rng)


def reply_cell(reply: str) -> int:
    move = parse_move(reply)
    assert move is not None, reply
    return rc_to_cell(*move)


class FirstFreeOpponent(Opponent):
    """Takes the lowest free cell: deterministic and weak."""

    name = "first-free"

    def act(self, request: OpponentRequest) -> str:
        row, col = request.state["legal"][0]
        return f"<answer>({row}, {col})</answer>"


class GarbageOpponent(Opponent):
    """Never names a move; records what it was asked."""

    name = "garbage"

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[OpponentRequest] = []

    def act(self, request: OpponentRequest) -> str:
        self.requests.append(request)
        return "<answer>I would rather not play.</answer>"


class OccupiedThenLegalOpponent(Opponent):
    """First names an occupied cell, then the first legal one (tests the retry path)."""

    name = "retrying"

    def act(self, request: OpponentRequest) -> str:
        if request.attempt == 0:
            taken = next(i for i, c in enumerate(request.state["board"]) if c != EMPTY)
            return format_move(taken)
        row, col = request.state["legal"][0]
        return f"I choose ({row}, {col}) now"


def every_position() -> set[Board]:
    """All positions reachable by alternating play from the empty board."""
    seen: set[Board] = set()
    stack = [EMPTY_BOARD]
    while stack:
        board = stack.pop()
        if board in seen:
            continue
        seen.add(board)
        for cell in legal_moves(board):
            stack.append(play(board, cell, mark_to_move(board)))
    return seen


def brute_winner(board: Board) -> str | None:
    """Three equal marks on collinear cells, found by geometry rather than a list of lines."""
    for a, b, c in combinations(range(9), 3):
        if board[a] == EMPTY or not board[a] == board[b] == board[c]:
            continue
        (r1, c1), (r2, c2), (r3, c3) = (divmod(i, 3) for i in (a, b, c))
        if (r2 - r1) * (c3 - c1) == (r3 - r1) * (c2 - c1):
            return board[a]
    return None


@cache
def plain_value(board: Board, mark: str) -> int:
    """Independent negamax without depth weighting: +1 win, 0 draw, -1 loss for `mark` to move."""
    won = brute_winner(board)
    if won is not None:
        return 1 if won == mark else -1
    if EMPTY not in board:
        return 0
    return max(-plain_value(play(board, c, mark), other_mark(mark)) for c in range(9) if board[c] == EMPTY)


@cache
def worst_for_perfect(board: Board, perfect: str) -> int:
    """Worst result (+1/0/-1) for `perfect` over every adversary move and every tie the perfect player may pick."""
    won = winner(board)
    if won is not None:
        return 1 if won == perfect else -1
    if is_full(board):
        return 0
    to_move = mark_to_move(board)
    cells = optimal_moves(board, perfect) if to_move == perfect else legal_moves(board)
    return min(worst_for_perfect(play(board, c, to_move), perfect) for c in cells)


# --------------------------------------------------------------------------- board functions
@settings(max_examples=150, deadline=None)
@given(st.permutations(range(9)))
def test_winner_matches_brute_force_along_any_move_sequence(order: list[int]) -> None:
    board = EMPTY_BOARD
    for i, cell in enumerate(order):
        board = play(board, cell, MARKS[i % 2])
        assert winner(board) == brute_winner(board)
        if winner(board) is not None:
            assert winner(board) == MARKS[i % 2]
            assert legal_moves(board) == []
            break
        assert legal_moves(board) == [c for c in range(9) if board[c] == EMPTY]


def test_coordinates_board_text_and_parsing() -> None:
    assert [cell_to_rc(c) for c in (0, 4, 8, 5)] == [(1, 1), (2, 2), (3, 3), (2, 3)]
    assert all(rc_to_cell(*cell_to_rc(c)) == c for c in range(9))
    board = play(play(EMPTY_BOARD, 0, "O"), 5, "X")
    assert format_board(board) == "  1 2 3\n1 O . .\n2 . . X\n3 . . ."
    assert parse_move("I take ( 2 ,3 ) then (1, 1)") == (2, 3)
    assert parse_move("row 2 col 3") is None
    with pytest.raises(ValueError):
        play(board, 0, "X")


def test_minimax_values_agree_with_an_independent_search() -> None:
    positions = every_position()
    assert len(positions) == 5478
    for board in positions:
        mark = mark_to_move(board)
        value = solve(board, mark)
        assert (value > 0) - (value < 0) == plain_value(board, mark)
    assert solve(EMPTY_BOARD, "O") == 0


# --------------------------------------------------------------------------- scripted opponents
@pytest.mark.parametrize("perfect_mark", MARKS)
def test_perfect_player_never_loses_to_any_sequence_of_adversary_moves(perfect_mark: str) -> None:
    bot = PerfectPlayer()
    results = {"win": 0, "draw": 0}
    stack = [EMPTY_BOARD]
    while stack:
        board = stack.pop()
        won = winner(board)
        assert won != other_mark(perfect_mark), format_board(board)
        if won is not None or is_full(board):
            results["win" if won else "draw"] += 1
            continue
        to_move = mark_to_move(board)
        if to_move == perfect_mark:
            rng = random.Random(hash(board))
            stack.append(play(board, reply_cell(bot.act(request_for(board, rng))), to_move))
        else:
            stack.extend(play(board, c, to_move) for c in legal_moves(board))
    assert results["win"] > 0 and results["draw"] > 0


def test_perfect_player_keeps_the_value_of_every_reachable_position_whatever_ties_it_picks() -> None:
    for board in every_position():
        if winner(board) is None and not is_full(board):
            mark = mark_to_move(board)
            assert worst_for_perfect(board, mark) == plain_value(board, mark), format_board(board)


def test_perfect_against_perfect_is_always_a_draw() -> None:
    outcomes: set[str | None] = set()
    stack = [EMPTY_BOARD]
    while stack:
        board = stack.pop()
        if winner(board) is not None or is_full(board):
            outcomes.add(winner(board))
            continue
        mark = mark_to_move(board)
        stack.extend(play(board, c, mark) for c in optimal_moves(board, mark))
    assert outcomes == {None}


def test_perfect_player_takes_a_win_and_blocks_a_loss() -> None:
    # O to move: O can win at (1, 3); X threatens (3, 1) but winning comes first.
    board = ("O", "O", ".", ".", "X", ".", ".", "X", "X")
    assert optimal_moves(board, "O") == [2]
    # X to move must block O's row at (1, 3).
    board = ("O", "O", ".", ".", "X", ".", ".", ".", ".")
    assert optimal_moves(board, "X") == [2]
    rng = random.Random(0)
    assert all(reply_cell(PerfectPlayer().act(request_for(board, rng))) == 2 for _ in range(5))


def test_epsilon_zero_is_perfect_and_epsilon_one_spreads_over_legal_moves() -> None:
    sample = sorted(b for b in every_position() if legal_moves(b))
    boards = random.Random(7).sample(sample, 60)
    for i, board in enumerate(boards):
        perfect = PerfectPlayer().act(request_for(board, random.Random(i)))
        assert EpsilonPlayer(0.0).act(request_for(board, random.Random(i))) == perfect
        randomly = RandomPlayer().act(request_for(board, random.Random(i)))
        assert EpsilonPlayer(1.0).act(request_for(board, random.Random(i))) == randomly
    # A position with one optimal move: epsilon 1 still spreads over every legal cell.
    board = ("O", "O", ".", ".", "X", ".", ".", ".", ".")
    rng = random.Random(1)
    picks = {reply_cell(EpsilonPlayer(1.0).act(request_for(board, rng))) for _ in range(200)}
    assert picks == set(legal_moves(board))
    mixed = [reply_cell(EpsilonPlayer(0.5).act(request_for(board, rng))) for _ in range(200)]
    assert 60 < mixed.count(2) < 200


def test_bot_options_are_checked() -> None:
    with pytest.raises(ConfigError):
        EpsilonPlayer(1.5)
    with pytest.raises(ConfigError, match="epsilon"):
        TicTacToe(opponent={"kind": "epsilon", "epsilon": -0.1})
    with pytest.raises(ConfigError, match="unknown opponent"):
        TicTacToe(opponent="grandmaster")
    assert isinstance(TicTacToe(opponent="perfect").opponent, PerfectPlayer)
    assert TicTacToe(opponent={"kind": "epsilon", "epsilon": 0.2}).opponent.epsilon == 0.2
    assert TicTacToe().opponent.epsilon == 0.5


# --------------------------------------------------------------------------- the game
@pytest.mark.parametrize(
    "options",
    [
        {"start": "middle"},
        {"opponent_tries": 0},
        {"opponent_tries": True},
        {"max_turns": 0},
        {"parser": "loose"},
    ],
)
def test_bad_options_raise_config_error(options: dict) -> None:
    with pytest.raises(ConfigError):
        TicTacToe(**options)


def test_registry_builds_the_game_with_its_options() -> None:
    game = make("tictactoe-v0", opponent="random", start="empty")
    assert isinstance(game, TicTacToe) and game.start_mode == "empty" and game.max_turns == 5
    with pytest.raises(ConfigError):
        make("tictactoe-v0", board_size=4)


def test_train_start_states_cover_both_seats_and_the_pre_round() -> None:
    game = TicTacToe(opponent="random")
    seen = set()
    for seed in range(120):
        game.reset(seed=seed)
        board = game.board
        stones = 9 - board.count(EMPTY)
        assert mark_to_move(board) == game.mark
        assert winner(board) is None and not is_full(board)
        assert len(game.moves) == stones
        assert stones in ((0, 2) if game.seat == 1 else (1, 3))
        assert game.opponent.stats.calls == 0
        seen.add((game.seat, stones))
    assert seen == {(1, 0), (1, 2), (2, 1), (2, 3)}


def test_empty_start_states() -> None:
    game = TicTacToe(opponent="random", start="empty")
    first_moves = set()
    seats = set()
    for seed in range(80):
        game.reset(seed=seed)
        seats.add(game.seat)
        if game.seat == 1:
            assert game.board == EMPTY_BOARD
        else:
            assert game.board.count("O") == 1 and game.board.count("X") == 0
            first_moves.add(game.board.index("O"))
        assert mark_to_move(game.board) == game.mark
    assert seats == {1, 2}
    assert len(first_moves) >= 5


def test_same_seed_same_episode_and_render_is_pure() -> None:
    def episode(seed: int) -> list:
        game = TicTacToe(opponent={"kind": "epsilon", "epsilon": 0.5})
        obs, info = game.reset(seed=seed)
        assert game.render() == game.render() == obs
        trace = [obs, info]
        while not game.done:
            move = game.legal_actions()[-1]
            step = game.step(answer(move))
            assert game.render() == game.render()
            trace.append(step)
        return trace

    assert episode(11) == episode(11)
    starts = {episode(s)[0] for s in range(12)}
    assert len(starts) > 3


def test_rendering_shows_board_moves_and_a_variable_rules_text() -> None:
    game = TicTacToe(opponent="random")
    with_examples = 0
    rules = set()
    for seed in range(40):
        obs, _ = game.reset(seed=seed)
        assert format_board(game.board) in obs
        assert f"Player {game.seat}" in obs
        assert str([cell_to_rc(c) for c in legal_moves(game.board)]) in obs
        with_examples += "Other diagonal" in obs
        rules.add(obs.split("\n\n")[1])
        # Calling render often must not change the opponent's random choices.
        for _ in range(3):
            game.render()
    assert 5 < with_examples < 35
    assert len(rules) >= 4


@pytest.mark.parametrize("move", ["(0, 2)", "(4, 1)", "(2, 10)", "the centre please", "occupied"])
def test_illegal_moves_cost_a_turn_and_a_penalty_but_do_not_end_the_game(move: str) -> None:
    game = TicTacToe(opponent="perfect", start="train")
    seed = next(s for s in range(50) if game.reset(seed=s) and game.board != EMPTY_BOARD)
    game.reset(seed=seed)
    before = game.board
    if move == "occupied":
        move = format_move(next(i for i, c in enumerate(before) if c != EMPTY))
    obs, reward, terminated, truncated, info = game.step(answer(move))
    assert reward == pytest.approx(-0.1)
    assert not terminated and not truncated
    assert info["invalid_actions"] == 1 and info["turns_used"] == 1 and info["actions_left"] == 4
    assert info["penalty"] == pytest.approx(-0.1) and not info["format_error"]
    assert game.board == before and game.opponent.stats.calls == 0
    assert obs.startswith("Illegal move")


def test_running_out_of_turns_truncates_without_success() -> None:
    game = TicTacToe(opponent="perfect")
    game.reset(seed=0)
    for i in range(5):
        obs, reward, terminated, truncated, info = game.step(answer("(9, 9)"))
        assert reward == pytest.approx(-0.1) and not terminated
        assert truncated == (i == 4)
    assert info["end_reason"] == "out_of_turns" and info["success"] is False
    assert game.legal_actions() == []
    with pytest.raises(RuntimeError):
        game.step(answer("(1, 1)"))


def test_format_error_charges_the_penalty_without_a_move() -> None:
    game = TicTacToe(opponent="perfect")
    game.reset(seed=2)
    before = game.board
    _, reward, terminated, _, info = game.step("(1, 1) without tags")
    assert reward == pytest.approx(-0.1) and info["format_error"] and not terminated
    assert game.board == before and info["turns_used"] == 1


def _reset(opponent: Opponent | str, seed: int) -> TicTacToe:
    game = TicTacToe(opponent=opponent, start="empty")
    game.reset(seed=seed)
    return game


def play_out(game: TicTacToe, choose) -> tuple[float, dict]:
    total, info = 0.0, {}
    while not game.done:
        _, reward, _, _, info = game.step(answer(format_move(choose(game))))
        total += reward
    return total, info


def test_win_draw_and_loss_rewards_through_real_play() -> None:
    def perfect(game: TicTacToe) -> int:
        return optimal_moves(game.board, game.mark)[0]

    def first_free(game: TicTacToe) -> int:
        return legal_moves(game.board)[0]

    wins = 0
    for seed in range(8):
        total, info = play_out(_reset(FirstFreeOpponent(), seed), perfect)
        if info["end_reason"] == "win":
            wins += 1
            assert (total, info["success"], info["terminal_reward"]) == (1.0, True, 1.0)
            assert info["winner"] == info["mark"]
        else:  # perfect play never loses, even when this weak bot happens to hold the draw
            assert (total, info["end_reason"], info["success"]) == (0.5, "draw", False)

        total, info = play_out(_reset("perfect", seed), perfect)
        assert (total, info["end_reason"], info["success"], info["terminal_reward"]) == (
            0.5,
            "draw",
            False,
            0.5,
        )
        assert info["winner"] is None and "." not in info["board"].split("\n", 1)[1]

        total, info = play_out(_reset("perfect", seed), first_free)
        assert (total, info["end_reason"], info["success"], info["terminal_reward"]) == (
            0.0,
            "loss",
            False,
            0.0,
        )
        assert info["winner"] == other_mark(info["mark"]) and not info["opponent_failed"]
    assert wins >= 4


@pytest.mark.parametrize("tries", [1, 3, 4])
def test_an_opponent_that_never_answers_a_move_forfeits_after_its_tries(tries: int) -> None:
    bot = GarbageOpponent()
    game = TicTacToe(opponent=bot, opponent_tries=tries)
    game.reset(seed=5)
    _, reward, terminated, truncated, info = game.step(answer(game.legal_actions()[0]))
    assert terminated and not truncated and reward == 0.0
    assert info["opponent_failed"] is True and info["end_reason"] == "opponent_failed"
    assert info["success"] is False and info["terminal_reward"] == 0.0
    assert bot.stats.calls == tries and bot.stats.invalid == tries and bot.stats.forfeits == 1
    assert [r.attempt for r in bot.requests] == list(range(tries))
    first, *later = bot.requests
    assert first.feedback == "" and all(r.feedback and r.feedback in r.prompt for r in later)
    assert first.seat == 3 - game.seat and first.state["mark"] == MARKS[first.seat - 1]
    assert "Answer with the cell you take" in first.prompt and format_board(first.state["board"]) in first.prompt
    # One owner composes the prompt: exactly one instruction, and on a retry exactly one feedback.
    for request in bot.requests:
        assert request.prompt.count(OPPONENT_INSTRUCTION) == 1 and "<think>" not in request.prompt
        assert request.prompt.count("was rejected") == (1 if request.attempt else 0)
    assert first.state["legal"] == [cell_to_rc(c) for c in legal_moves(first.state["board"])]
    assert first.rng is game.rng


def test_an_opponent_reply_is_read_leniently_and_an_illegal_one_retried() -> None:
    bot = OccupiedThenLegalOpponent()
    game = TicTacToe(opponent=bot)
    game.reset(seed=1)
    stones = 9 - game.board.count(EMPTY)
    _, reward, terminated, _, _ = game.step(answer(game.legal_actions()[-1]))
    assert reward == 0.0 and not terminated
    assert bot.stats.calls == 2 and bot.stats.invalid == 1 and bot.stats.forfeits == 0
    assert 9 - game.board.count(EMPTY) == stones + 2
    assert game.moves[-1][0] == game.opponent_mark


def test_chained_answers_play_several_moves_with_replies_in_between() -> None:
    game = TicTacToe(opponent=FirstFreeOpponent(), start="empty")
    seed = next(s for s in range(50) if game.reset(seed=s) and game.seat == 1)
    game.reset(seed=seed)
    obs, reward, terminated, _, info = game.step(answer("(3, 3) || (3, 1)"))
    # O at (3,3), X replies (1,1); O at (3,1), X replies (1,2).
    assert game.board == ("X", "X", ".", ".", ".", ".", "O", ".", "O")
    assert info["turns_used"] == 2 and reward == 0.0 and not terminated
    assert obs.count("your opponent answered") == 2
    # Winning mid-chain ends the episode; the rest of the chain is ignored.
    obs, reward, terminated, _, info = game.step(answer("(3, 2) || (2, 2) || (2, 3)"))
    assert terminated and reward == 1.0 and info["end_reason"] == "win"
    assert info["turns_used"] == 3 and game.board[4] == EMPTY


def test_game_info_and_legal_actions() -> None:
    game = TicTacToe(opponent="random", start="empty")
    _, info = game.reset(seed=4)
    assert game.legal_actions() == [format_move(c) for c in legal_moves(game.board)]
    assert info["opponent"] == "random" and info["mark"] == MARKS[info["seat"] - 1]
    assert info["board"] == format_board(game.board) and info["winner"] is None
    _, _, _, _, info = game.step(answer(game.legal_actions()[0]))
    assert [m[0] for m in info["moves"]][-2:] == [game.mark, game.opponent_mark]
    assert all(game.board[rc_to_cell(r, c)] == mark for mark, r, c in info["moves"])
