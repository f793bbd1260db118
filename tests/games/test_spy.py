"""Who's the Spy: word rule, votes, turn flow, rewards, history bound, bots, word lists, determinism."""

from __future__ import annotations

import json
import random
import re
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gift.errors import ConfigError
from gift.games import make
from gift.games.spy import (
    INVALID_PENALTY,
    WhosTheSpy,
    bound_history,
    check_description,
    check_vote,
    load_word_pairs,
    shipped_word_list,
    tally_votes,
)
from gift.games.spy_bots import (
    GENERIC_DESCRIPTIONS,
    SpyBot,
    contains_word,
    content_words,
    valid_generic_descriptions,
)
from gift.opponents import Opponent, OpponentRequest


def wrap(answer: str) -> str:
    return f"<think>thinking</think><answer>{answer}</answer>"


def bot_reply(game: WhosTheSpy, bot: SpyBot, rng: random.Random) -> str:
    """The trained seat played by a scripted bot, through the same state the opponents get."""
    state = game.seat_state(game.trained_seat)
    return wrap(bot.act(OpponentRequest("spy-v0", game.trained_seat, "", state, rng)))


def play_with_bot(game: WhosTheSpy, seed: int, bot: SpyBot) -> list[tuple]:
    game.reset(seed=seed)
    rng = random.Random(seed)
    steps = []
    while not game.done:
        steps.append(game.step(bot_reply(game, bot, rng)))
    return steps


def seed_where(predicate, game: WhosTheSpy) -> int:
    for seed in range(500):
        game.reset(seed=seed)
        if predicate(game):
            return seed
    raise AssertionError("no seed found")


class FixedVoter(Opponent):
    """Describes with a neutral sentence and votes for `target` (or the lowest other seat when it is itself)."""

    def __init__(self, target: int = 1) -> None:
        super().__init__()
        self.target = target

    def act(self, request: OpponentRequest) -> str:
        state = request.state
        if state["phase"] == "describe":
            return valid_generic_descriptions(state["secret_word"])[len(state["used_descriptions"])]
        target = self.target if self.target != state["seat"] else min(state["eligible"])
        return f"I vote for Player {target}"


class ShortTalker(Opponent):
    """Two-word descriptions that name the seat and the round, so the history can be inspected."""

    def act(self, request: OpponentRequest) -> str:
        state = request.state
        if state["phase"] == "vote":
            return f"I vote for Player {state['eligible'][0]}"
        return f"seat{state['seat']} round{state['round']}"


class Garbage(Opponent):
    """Never gives a usable answer: an empty description is invalid, and so is a vote without a player."""

    def act(self, request: OpponentRequest) -> str:
        return "   "


# ---------------------------------------------------------------------------------------------- word rule
@pytest.mark.parametrize(
    ("text", "word", "expected"),
    [
        ("The cat sat on the mat", "cat", True),
        ("CATS everywhere", "cat", True),
        ("the cat's toy", "cat", True),
        ("a category of its own", "cat", False),
        ("they scatter", "cat", False),
        ("two buses went by", "bus", True),
        ("a business trip", "bus", False),
        ("an ice cream cone", "ice cream", True),
        ("ICE   Cream for all", "ice cream", True),
        ("ice creams melt", "ice cream", True),
        ("ice is cold and cream is rich", "ice cream", False),
    ],
)
def test_contains_word_is_whole_word_case_insensitive_with_plurals(text, word, expected):
    assert contains_word(text, word) is expected


def test_description_rule():
    assert check_description("", "cat") is not None
    assert check_description("   \n", "cat") is not None
    assert check_description("A Cat that purrs", "cat") is not None
    assert check_description("several cats", "cat") is not None
    assert check_description("a category of pets", "cat") is None
    assert check_description("it purrs on your lap", "cat") is None


def test_vote_rule():
    alive = [1, 2, 3, 4]
    assert check_vote("I vote for Player 3", 2, alive) == (3, None)
    assert check_vote("i VOTE for player 4.", 2, alive) == (4, None)
    assert check_vote("Player 1 sounded honest, so I vote for Player 3", 2, alive)[0] == 3
    for bad in ("I vote for Player 2", "I vote for 3", "nobody", "I vote for Player 7", "Player 0"):
        target, why = check_vote(bad, 2, alive)
        assert target is None and why
    assert check_vote("I vote for Player 4", 2, [1, 2, 3])[0] is None  # Player 4 is out


# ---------------------------------------------------------------------------------------------- votes
def test_tally_plurality_without_drawing_randomness():
    rng = random.Random(1)
    before = rng.getstate()
    assert tally_votes({1: 3, 2: 3, 3: 1, 4: 3}, rng) == 3
    assert tally_votes({1: 2, 2: 1, 3: 2, 4: 1}, rng) in (1, 2)
    assert tally_votes({1: 4, 2: 4, 3: 4, 4: 3}, random.Random(0)) == 4
    assert rng.getstate() != before  # only the tie above drew
    quiet = random.Random(5)
    state = quiet.getstate()
    tally_votes({1: 2, 2: 3, 3: 2, 4: 2}, quiet)
    assert quiet.getstate() == state


def test_tally_breaks_ties_uniformly():
    rng = random.Random(7)
    four_way = Counter(tally_votes({1: 2, 2: 3, 3: 4, 4: 1}, rng) for _ in range(2000))
    assert set(four_way) == {1, 2, 3, 4}
    assert all(350 < n < 650 for n in four_way.values()), four_way
    two_way = Counter(tally_votes({1: 2, 2: 1, 3: 2, 4: 1}, rng) for _ in range(1000))
    assert set(two_way) == {1, 2} and all(n > 400 for n in two_way.values())
    with pytest.raises(ValueError):
        tally_votes({}, rng)


# ---------------------------------------------------------------------------------------------- turn flow
def test_invalid_description_costs_penalty_and_is_retried():
    game = WhosTheSpy(max_turns=4)
    obs, info = game.reset(seed=11)
    word = info["secret_word"]
    obs, reward, terminated, truncated, info = game.step(wrap(f"Not quite a {word.upper()}"))
    assert reward == pytest.approx(INVALID_PENALTY) and not terminated and not truncated
    assert info["invalid_actions"] == 1 and info["descriptions"][game.trained_seat] == []
    assert "contains your secret word" in obs
    obs, reward, *_, info = game.step(wrap(""))
    assert reward == pytest.approx(INVALID_PENALTY) and "empty" in obs
    obs, reward, *_, info = game.step(wrap("something you will surely recognise"))
    assert reward == 0.0 and info["descriptions"][game.trained_seat] == [
        "something you will surely recognise"
    ]
    assert info["round"] == 2 and info["actions_left"] == 1


def test_running_out_of_turns_truncates():
    game = WhosTheSpy()
    _, info = game.reset(seed=2)
    total = 0.0
    for _ in range(3):
        _, reward, terminated, truncated, info = game.step(wrap(info["secret_word"]))
        total += reward
        assert not terminated
    assert truncated and info["end_reason"] == "out_of_turns" and not info["success"]
    assert total == pytest.approx(3 * INVALID_PENALTY)
    with pytest.raises(RuntimeError):
        game.step(wrap("anything"))


def test_invalid_votes_in_game_and_exactly_three_turns():
    game = WhosTheSpy(max_turns=6)
    game.reset(seed=4)
    me = game.trained_seat
    for text in ("it is round and useful", "people keep one at home"):
        assert game.step(wrap(text))[1] == 0.0
    assert game.last_info["phase"] == "vote"
    assert game.legal_actions() == [f"I vote for Player {s}" for s in range(1, 5) if s != me]
    assert "I vote for Player N" in game.render()
    for bad in (f"I vote for Player {me}", "I vote for Player 9", "I pick the second one"):
        _, reward, terminated, _, info = game.step(wrap(bad))
        assert reward == pytest.approx(INVALID_PENALTY) and not terminated and info["votes"].get(me) is None
    other = 1 if me != 1 else 2
    _, reward, terminated, truncated, info = game.step(wrap(f"I vote for Player {other}"))
    assert terminated and not truncated and info["votes"][me] == other
    assert info["end_reason"] in ("win", "loss") and info["winner"] in ("civilians", "spy")
    assert sorted(info["votes"]) == [1, 2, 3, 4] and all(len(d) == 2 for d in info["descriptions"].values())


def test_opponents_seated_before_speak_first():
    game = WhosTheSpy(opponent=ShortTalker())
    seed = seed_where(lambda g: g.trained_seat == 3, game)
    obs, info = game.reset(seed=seed)
    assert info["descriptions"] == {1: ["seat1 round1"], 2: ["seat2 round1"], 3: [], 4: []}
    _, _, _, _, info = game.step(wrap("my first clue"))
    assert info["descriptions"][1] == ["seat1 round1", "seat1 round2"]
    assert info["descriptions"][4] == ["seat4 round1"]  # seat 4 speaks after Player 3 in round 2
    _, _, _, _, info = game.step(wrap("my second clue"))
    assert sorted(info["votes"]) == [1, 2]  # seats 1 and 2 vote before Player 3


# ---------------------------------------------------------------------------------------------- rewards
@pytest.mark.parametrize(
    ("trained_is_spy", "vote_out", "reward", "winner"),
    [
        (False, "spy", 1.0, "civilians"),
        (False, "civilian", 0.0, "spy"),
        (True, "civilian", 1.0, "spy"),
        (True, "spy", 0.0, "civilians"),
    ],
)
def test_win_conditions_from_the_trained_players_side(trained_is_spy, vote_out, reward, winner):
    voter = FixedVoter()
    game = WhosTheSpy(opponent=voter)
    seed = seed_where(lambda g: (g.trained_seat == g.spy_seat) is trained_is_spy, game)
    game.reset(seed=seed)
    me, spy = game.trained_seat, game.spy_seat
    civilians = [s for s in range(1, 5) if s != spy]
    voter.target = spy if vote_out == "spy" else next(s for s in civilians if s != me)
    game.step(wrap("a thing most people know"))
    game.step(wrap("you can find it nearby"))
    my_vote = voter.target if voter.target != me else min(s for s in range(1, 5) if s != me)
    _, r, terminated, _, info = game.step(wrap(f"I vote for Player {my_vote}"))
    assert terminated and r == reward and info["success"] is (reward == 1.0)
    assert info["eliminated"] == voter.target and info["winner"] == winner
    assert info["end_reason"] == ("win" if reward else "loss")
    assert info["trained_role"] == ("spy" if trained_is_spy else "civilian")


# ---------------------------------------------------------------------------------------------- prompt
def test_history_bound_keeps_each_players_latest():
    history = {
        1: ["one two three", "four five"],
        2: ["six seven eight nine"],
        3: [],
        4: ["ten", "eleven twelve"],
    }
    same, trimmed = bound_history(history, 100)
    assert same == history and not trimmed
    bounded, trimmed = bound_history(history, 8)
    assert trimmed and bounded == {1: ["four five"], 2: ["six seven eight nine"], 3: [], 4: ["eleven twelve"]}
    cut, trimmed = bound_history({1: ["a " * 50], 2: ["b " * 50]}, 10)
    assert trimmed and all(len(v[0].split()) <= 6 for v in cut.values())


def test_prompt_history_is_bounded_in_game():
    game = WhosTheSpy(opponent=ShortTalker(), history_limit=10)
    game.reset(seed=0)
    game.step(wrap("mine first"))
    game.step(wrap("mine second"))
    obs = game.render()
    assert "left out" in obs and "mine second" in obs and "mine first" not in obs
    for seat in range(1, 5):
        if seat != game.trained_seat:
            assert f"seat{seat} round2" in obs and f"seat{seat} round1" not in obs
    assert len(game.last_info["descriptions"][game.trained_seat]) == 2  # info keeps everything


def test_vote_prompt_does_not_reveal_the_role():
    def vote_instructions(trained_is_spy: bool) -> str:
        game = WhosTheSpy(opponent=FixedVoter())
        game.reset(seed=seed_where(lambda g: (g.trained_seat == g.spy_seat) is trained_is_spy, game))
        game.step(wrap("a thing most people know"))
        game.step(wrap("you can find it nearby"))
        text = game.render()
        part = text[text.index("## Your turn") : text.index("## Descriptions so far")]
        part = part.replace(game.words[game.trained_seat], "WORD")
        for s in range(1, 5):
            part = part.replace(f"Player {s}", "Player X")
        return part

    assert vote_instructions(True) == vote_instructions(False)


def test_render_is_pure_and_rules_vary_across_seeds():
    game = WhosTheSpy()
    game.reset(seed=1)
    state = game.rng.getstate()
    assert game.render() == game.render() and game.rng.getstate() == state
    openings = set()
    for seed in range(40):
        obs, _ = game.reset(seed=seed)
        openings.add(obs.split("\n", 1)[0])
    assert len(openings) >= 4


# ---------------------------------------------------------------------------------------------- bots
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), noise=st.sampled_from([0.0, 0.3, 1.0]))
def test_bots_never_make_invalid_moves(seed, noise):
    game = WhosTheSpy(opponent={"kind": "bot", "noise": noise})
    steps = play_with_bot(game, seed, SpyBot(noise))
    assert len(steps) == 3 and all(reward in (0.0, 1.0) for _, reward, *_ in steps)
    info = steps[-1][-1]
    assert info["end_reason"] in ("win", "loss") and not info["opponent_failed"]
    assert game.opponent.stats.invalid == 0 and game.opponent.stats.forfeits == 0
    for seat, texts in info["descriptions"].items():
        word = info["spy_word"] if seat == info["spy_seat"] else info["civilian_word"]
        assert len(texts) == 2 and len(set(texts)) == 2 and not any(contains_word(t, word) for t in texts)


def test_bots_handle_lists_without_hints(tmp_path):
    path = tmp_path / "bare.json"
    path.write_text(json.dumps([["nothing", "something"], ["kinds", "world"], ["common", "expect"]]))
    for seed in range(30):
        game = WhosTheSpy(word_list=path)
        steps = play_with_bot(game, seed, SpyBot())
        assert steps[-1][-1]["end_reason"] in ("win", "loss") and game.opponent.stats.invalid == 0


def test_generic_descriptions_always_leave_two_choices():
    vocabulary = {t for d in GENERIC_DESCRIPTIONS for t in re.findall(r"[\w'-]+", d.lower())}
    for word in vocabulary | {"it", "thing", "one"}:
        assert len(valid_generic_descriptions(word)) >= 2, word


def test_civilian_bots_find_a_spy_that_uses_its_own_hints():
    game = WhosTheSpy(opponent={"kind": "bot", "noise": 0.0})
    sharp = [play_with_bot(game, seed, SpyBot())[-1][-1] for seed in range(150)]
    found = sum(info["eliminated"] == info["spy_seat"] for info in sharp) / len(sharp)
    noisy_game = WhosTheSpy(opponent={"kind": "bot", "noise": 1.0})
    noisy = [play_with_bot(noisy_game, seed, SpyBot(1.0))[-1][-1] for seed in range(150)]
    found_by_chance = sum(info["eliminated"] == info["spy_seat"] for info in noisy) / len(noisy)
    assert found >= 0.75 and found > found_by_chance + 0.3, (found, found_by_chance)


def test_bot_votes_for_the_worst_fit():
    state = {
        "phase": "vote", "round": 3, "seat": 1, "num_players": 4, "secret_word": "coffee",
        "hints": ["a bitter drink brewed from roasted beans", "espresso or latte"],
        "used_descriptions": ["espresso or latte"], "alive": [1, 2, 3, 4], "eligible": [2, 3, 4],
        "history": {1: ["espresso or latte"], 2: ["brewed from roasted beans"], 3: ["leaves steeped in hot water"],
                    4: ["a bitter drink, espresso"]},
    }  # fmt: skip
    assert SpyBot().act(OpponentRequest("spy-v0", 1, "", state, random.Random(0))) == "I vote for Player 3"
    assert content_words("The Cats' toys") >= {"cat", "toy"}


# ---------------------------------------------------------------------------------------------- opponents
def test_opponent_forfeit_after_the_first_step():
    seed = seed_where(lambda g: g.trained_seat == 1, WhosTheSpy())
    garbage = Garbage()
    game = WhosTheSpy(opponent=garbage, opponent_tries=2)
    _, info = game.reset(seed=seed)
    assert not info["opponent_failed"]
    _, reward, terminated, truncated, info = game.step(wrap("a familiar thing"))
    assert terminated and not truncated and reward == 0.0
    assert info["opponent_failed"] and info["end_reason"] == "opponent_failed" and not info["success"]
    assert info["forfeited_seat"] == 2 and garbage.stats.forfeits == 1 and garbage.stats.invalid == 2


def test_opponent_forfeit_before_the_first_turn():
    game = WhosTheSpy(opponent=Garbage())
    seed = seed_where(lambda g: g.trained_seat > 1, game)
    obs, info = game.reset(seed=seed)
    assert info["opponent_failed"] and info["forfeited_seat"] == 1 and "cannot be scored" in obs
    _, reward, terminated, _, info = game.step(wrap("a familiar thing"))
    assert (
        terminated and reward == 0.0 and info["end_reason"] == "opponent_failed" and info["opponent_failed"]
    )


# ---------------------------------------------------------------------------------------------- determinism
def test_same_seed_same_episode():
    def transcript(seed: int) -> list:
        game = make("spy-v0")
        obs, info = game.reset(seed=seed)
        out = [obs, info]
        vote = f"I vote for Player {1 if game.trained_seat != 1 else 2}"
        for text in ("it is around most homes", "you can see it every day", vote):
            out.append(game.step(wrap(text)))
        return out

    assert transcript(21) == transcript(21)
    assert {transcript(s)[1]["civilian_word"] for s in range(5)} != {transcript(0)[1]["civilian_word"]}


# ---------------------------------------------------------------------------------------------- word lists
def test_shipped_word_list():
    words = shipped_word_list()
    pairs = {frozenset(w.lower() for w in pair) for pair in words.pairs}
    assert len(pairs) >= 300 and len(pairs) == len(words.pairs)
    assert all(len(pair) == 2 for pair in pairs)  # no pair uses one word twice
    for spy_word, civilian_word in words.pairs:
        for word in (spy_word, civilian_word):
            hints = words.hints_for(word)
            assert 3 <= len(hints) <= 4, word
            assert not any(contains_word(h, word) for h in hints), word


def test_external_word_list_loader(tmp_path):
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps([["tea", "coffee"], [" hot  dog ", "sausage"]]))
    loaded = load_word_pairs(bare)
    assert loaded.pairs == (("tea", "coffee"), ("hot dog", "sausage")) and loaded.hints_for("tea") == []
    full = tmp_path / "full.json"
    full.write_text(json.dumps({"pairs": [["tea", "coffee"]], "hints": {"Tea": ["leaves in hot water"]}}))
    assert load_word_pairs(full).hints_for("tea") == ["leaves in hot water"]
    game = WhosTheSpy(word_list=str(bare))
    _, info = game.reset(seed=3)
    assert (info["spy_word"], info["civilian_word"]) in loaded.pairs


@pytest.mark.parametrize(
    "content",
    ["not json", "[]", '{"words": []}', '[["tea"]]', '[["tea", ""]]', '[["Tea", "tea"]]', '[["tea", 3]]',
     '{"pairs": [["tea", "coffee"]], "hints": ["x"]}', '{"pairs": [["a", "b"]], "hints": {"a": "x"}}'],
)  # fmt: skip
def test_malformed_word_lists_name_the_path_and_shape(tmp_path, content):
    path = tmp_path / "words.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match="spy_word, civilian_word") as err:
        load_word_pairs(path)
    assert str(path) in str(err.value)


def test_missing_word_list(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        WhosTheSpy(word_list=tmp_path / "absent.json")


@pytest.mark.parametrize(
    "options",
    [{"history_limit": 0}, {"history_limit": "300"}, {"opponent_tries": 0}, {"opponent_tries": True},
     {"word_list": 5}, {"opponent": "nobody"}, {"opponent": {"kind": "bot", "noise": 2}},
     {"opponent": {"kind": "bot", "speed": 1}}, {"max_turns": 0}, {"parser": "loose"}, {"colour": "red"}],
)  # fmt: skip
def test_bad_options_raise_config_error(options):
    with pytest.raises(ConfigError):
        make("spy-v0", **options)
