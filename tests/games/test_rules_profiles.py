"""`rules: gift | reference` on spy-v0 and tictactoe-v0: each rule where the profiles differ, under both."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gift.errors import ConfigError
from gift.games import make
from gift.games.spy import WhosTheSpy, check_vote
from gift.games.spy_reference import (
    DIGEST_WORDS,
    compact_history,
    history_words,
    read_answer_block,
    reference_vote,
    vote_instruction,
)
from gift.games.tictactoe import TicTacToe, play
from gift.opponents import Opponent, OpponentRequest


def wrap(answer: str) -> str:
    return f"<think>ok</think><answer>{answer}</answer>"


class Talker(Opponent):
    """Long answered descriptions; votes for the first eligible player."""

    def __init__(self, words: int = 60) -> None:
        super().__init__()
        self.words = words

    def act(self, request: OpponentRequest) -> str:
        state = request.state
        if state["phase"] == "vote":
            return f"<answer>I vote for Player {state['eligible'][0]}</answer>"
        return (
            "<answer>"
            + " ".join(f"w{state['seat']}r{state['round']}" for _ in range(self.words))
            + "</answer>"
        )


class Silent(Opponent):
    """Describes once, then never answers usably again."""

    def act(self, request: OpponentRequest) -> str:
        return "<answer>a thing</answer>" if request.state["round"] == 1 else "no tags"


def spy(rules: str, **options) -> WhosTheSpy:
    return make("spy-v0", rules=rules, **options)


def spy_at_focal_turn(rules: str, seed: int = 0, **options) -> WhosTheSpy:
    game = spy(rules, **options)
    game.reset(seed=seed)
    return game


# ---------------------------------------------------------------------------------------------- options
@pytest.mark.parametrize("game_id", ["spy-v0", "tictactoe-v0"])
def test_rules_defaults_to_gift_and_rejects_unknown_profiles(game_id):
    assert make(game_id).rules == "gift"
    with pytest.raises(ConfigError, match=r"rules.*reference"):
        make(game_id, rules="paper")


# ---------------------------------------------------------------------------------------------- descriptions
@pytest.mark.parametrize(("rules", "accepted"), [("gift", False), ("reference", True)])
def test_a_description_that_says_the_word(rules, accepted):
    game = spy_at_focal_turn(rules)
    word = game.words[game.trained_seat]
    _, reward, _, _, info = game.step(wrap(f"my word is {word}"))
    assert (info["invalid_actions"] == 0) is accepted
    assert (f"my word is {word}" in game.history[game.trained_seat]) is accepted
    assert reward == pytest.approx(0.0 if accepted else -0.1)


def test_an_empty_description_is_invalid_under_both():
    for rules in ("gift", "reference"):
        game = spy_at_focal_turn(rules)
        _, reward, _, _, info = game.step(wrap(""))
        assert info["invalid_actions"] == 1 and reward == pytest.approx(-0.1)


# ---------------------------------------------------------------------------------------------- votes
def test_the_reference_reads_the_first_player_mentioned():
    alive = [1, 2, 3, 4]
    text = "As Player 2, I vote for Player 3"
    assert check_vote(text, 2, alive) == (3, None)
    assert reference_vote(text, 2, alive)[0] is None
    assert reference_vote("Player3 is odd", 2, alive)[0] is None  # one space, as the reference's pattern
    assert check_vote("Player3 is odd", 2, alive)[0] == 3
    assert reference_vote("PLAYER 4 it is", 2, alive) == (4, None)
    assert reference_vote("Player 9", 2, alive)[0] is None


@settings(max_examples=60, deadline=None)
@given(
    prefix=st.text(alphabet="abc ,.", max_size=20),
    target=st.integers(0, 6),
    voter=st.integers(1, 4),
)
def test_reference_vote_is_the_first_mention(prefix, target, voter):
    alive = [1, 2, 3, 4]
    got, why = reference_vote(f"{prefix} player {target} then Player {voter % 4 + 1}", voter, alive)
    legal = target in alive and target != voter
    assert (got == target) is legal and (why is None) is legal


@pytest.mark.parametrize("rules", ["gift", "reference"])
def test_vote_prompt_reveals_the_role_only_under_reference(rules):
    texts = {}
    for is_spy in (True, False):
        game = WhosTheSpy(rules=rules)
        for seed in range(200):
            game.reset(seed=seed)
            if (game.trained_seat == game.spy_seat) is is_spy:
                break
        while game.phase != "vote":
            game.step(wrap("something round and useful"))
        texts[is_spy] = game.render()
    for is_spy, text in texts.items():
        assert (vote_instruction(is_spy) in text) is (rules == "reference")
        assert vote_instruction(not is_spy) not in text


# ---------------------------------------------------------------------------------------------- `||` actions
@pytest.mark.parametrize(("rules", "descriptions"), [("gift", 1), ("reference", 2)])
def test_several_actions_in_one_reply(rules, descriptions):
    game = spy_at_focal_turn(rules)
    seat = game.trained_seat
    game.step(wrap("it is sweet || it grows on trees"))
    assert len(game.history[seat]) == descriptions
    assert game.turns_used == descriptions
    if rules == "reference":
        assert game.history[seat] == ["it is sweet", "it grows on trees"] and game.round == 3


# ---------------------------------------------------------------------------------------------- other seats
def test_other_seats_must_answer_in_an_answer_block_under_reference():
    for seed in range(50):
        ref, own = spy("reference"), spy("gift")
        ref.begin(seed=seed)
        own.begin(seed=seed)
        if ref.to_move() != ref.focal_seat:
            break
    seat = ref.to_move()
    assert seat != ref.focal_seat and own.to_move() == seat
    assert not ref.play_other(seat, "it is round").valid
    assert own.play_other(seat, "it is round").valid
    assert ref.play_other(seat, "<answer></answer>").valid  # the reference accepts an answered empty text
    assert ref.history[seat] == [""]
    assert read_answer_block("x <answer> a </answer> b </answer>") == "a </answer> b"
    assert read_answer_block("<answer>unclosed") is None


@pytest.mark.parametrize("rules", ["gift", "reference"])
def test_scripted_bots_play_whole_games_under_both(rules):
    game = spy(rules)
    for seed in range(20):
        game.reset(seed=seed)
        while not game.done:
            *_, info = game.step(
                wrap("something you hold" if game.phase == "describe" else "I vote for Player 1")
            )
        assert not info["opponent_failed"] and info["end_reason"] in {"win", "loss", "out_of_turns"}


@pytest.mark.parametrize(("rules", "dropped"), [("gift", True), ("reference", False)])
def test_an_opponent_forfeit_after_the_first_turn(rules, dropped):
    game = spy(rules, opponent=Silent(), opponent_tries=1)
    game.reset(seed=3)
    while not game.done:
        _, reward, terminated, _, info = game.step(wrap("a useful object"))
    assert terminated and info["end_reason"] == "opponent_failed"
    assert info["opponent_failed"] is dropped and info["success"] is False and info["terminal_reward"] == 0.0


# ---------------------------------------------------------------------------------------------- long history
@settings(max_examples=80, deadline=None)
@given(
    st.dictionaries(
        st.integers(1, 4),
        st.lists(st.text(alphabet="ab ", min_size=1, max_size=300), max_size=3),
        min_size=4,
        max_size=4,
    ),
    st.integers(10, 300),
)
def test_the_digest_fits_the_reference_budget(history, limit):
    digest = compact_history(history, limit)
    if history_words(history) <= limit:
        assert digest is None
        return
    assert digest is not None and history_words(digest) <= DIGEST_WORDS
    for seat, texts in history.items():
        spoken = [t for t in texts]
        assert len(digest[seat]) == (1 if spoken else 0)
        if spoken and spoken[0].split():
            assert digest[seat][0].split()[0].startswith(spoken[0].split()[0][:1])


@pytest.mark.parametrize("rules", ["gift", "reference"])
def test_a_long_history_is_replaced_only_under_reference(rules):
    game = spy(rules, opponent=Talker(60))
    game.reset(seed=1)
    while game.phase == "describe" and not game.done:
        game.step(wrap("a small round fruit"))
    opponents = [s for s in game.history if s != game.trained_seat]
    if rules == "gift":  # gift keeps everything and bounds only what it shows
        assert {len(game.history[s]) for s in game.history} == {2}
        assert history_words(game.history) > 300
        return
    assert game.history_digested and "digest" in game.render()
    for seat in opponents:  # round 1's 60-word descriptions live on only as a digest entry
        first = game.history[seat][0]
        assert first.startswith(f"w{seat}r1") and len(first.split()) < 30
    assert history_words(game.history) < 300


# ---------------------------------------------------------------------------------------------- TicTacToe
@pytest.mark.parametrize(
    ("rules", "start", "given_rule", "expected"),
    [
        ("gift", "train", None, "penalty"),
        ("gift", "empty", None, "penalty"),
        ("reference", "train", None, "penalty"),
        ("reference", "empty", None, "loss"),
        ("reference", "empty", "penalty", "penalty"),
        ("gift", "empty", "loss", "loss"),
    ],
)
def test_illegal_move_rule_follows_the_profile(rules, start, given_rule, expected):
    game = TicTacToe(rules=rules, start=start, illegal_move=given_rule)
    assert game.illegal_move == expected
    game.reset(seed=0)
    taken = (
        next(i for i, c in enumerate(game.board) if c != ".")
        if "O" in game.board or "X" in game.board
        else None
    )
    move = "(9, 9)" if taken is None else f"({taken // 3 + 1}, {taken % 3 + 1})"
    _, reward, terminated, _, info = game.step(wrap(move))
    assert terminated is (expected == "loss")
    assert reward == pytest.approx(0.0 if expected == "loss" else -0.1)


def test_the_reference_reads_another_seats_move_anywhere_in_its_reply():
    reply = "<think>(1, 1) is taken</think><answer>I take (2, 2)</answer>"
    for rules, cell in (("gift", 4), ("reference", 0)):
        game = TicTacToe(rules=rules, seat=1, start="empty")
        game.begin(seed=0)
        game.board = play(game.board, 8, "O")
        assert game.to_move() == 2
        assert game.play_other(2, reply).valid
        assert game.board[cell] == "X"
    game = TicTacToe(rules="reference", seat=1, start="empty")
    game.begin(seed=0)
    game.board = play(game.board, 0, "O")
    assert not game.play_other(2, reply).valid  # the first (r, c) is (1, 1), taken
    assert game.play_other(2, "<think>(1, 1)</think><answer> (3, 3) </answer>").valid
    assert game.board[8] == "X"


class Broken(Opponent):
    def act(self, request: OpponentRequest) -> str:
        return "no move"


@pytest.mark.parametrize(("rules", "dropped"), [("gift", True), ("reference", False)])
def test_tictactoe_forfeit_is_scored_only_under_reference(rules, dropped):
    game = TicTacToe(rules=rules, opponent=Broken(), start="empty", seat=1)
    game.reset(seed=0)
    _, reward, terminated, _, info = game.step(wrap("(2, 2)"))
    assert terminated and info["opponent_failed"] is dropped and reward == 0.0
    assert info["end_reason"] == "opponent_failed"
