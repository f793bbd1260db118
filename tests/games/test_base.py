"""`TextGame` semantics shared by every game: parsing, penalties, the turn budget, chained actions, endings."""

from __future__ import annotations

import pytest

from gift.errors import ConfigError
from gift.games.base import FORMAT_ERROR_MESSAGE, Outcome, TextGame
from gift.games.checker import COMMON_INFO_KEYS
from gift.games.protocol import FORMAT_PENALTY


class Toy(TextGame):
    """Every action is logged; a few words end the game or cost a penalty."""

    id = "toy-v0"
    default_max_turns = 4
    max_actions_per_turn = 3

    def _reset(self) -> None:
        self.start = self.rng.randrange(1000)
        self.log: list[str] = []

    def _act(self, action: str) -> Outcome:
        self.log.append(action)
        if action == "win":
            return Outcome(terminated=True, reward=1.0, success=True, end_reason="win")
        if action == "draw":
            return Outcome(terminated=True, reward=0.5, end_reason="draw")
        if action == "bad":
            return Outcome(valid=False, penalty=-0.1, message="that move is not allowed")
        if action == "forfeit":
            return Outcome(terminated=True, end_reason="opponent_failed", opponent_failed=True)
        if action == "note":
            return Outcome(info={"noted": True})
        return Outcome()

    def render(self) -> str:
        return f"start {self.start}; log {self.log}"

    def game_info(self) -> dict:
        return {"log": list(getattr(self, "log", []))}


class OnePerTurn(Toy):
    max_actions_per_turn = 1


def r(answer: str) -> str:
    return f"<think>t</think><answer>{answer}</answer>"


@pytest.fixture()
def game() -> Toy:
    g = Toy()
    g.reset(seed=9)
    return g


def test_reset_returns_the_render_and_every_common_info_key():
    g = Toy()
    obs, info = g.reset(seed=9)
    assert obs == g.render() and obs.startswith("start ")
    assert set(COMMON_INFO_KEYS) <= set(info)
    assert info == {
        "game": "toy-v0", "seed": 9, "turns_used": 0, "actions_left": 4, "success": False, "penalty": 0.0,
        "format_error": False, "invalid_actions": 0, "end_reason": None, "opponent_failed": False,
        "terminal_reward": None, "log": [],
    }  # fmt: skip
    assert g.last_info == info


def test_seed_fixes_the_start_and_none_draws_one():
    starts = {Toy().reset(seed=s)[0] for s in range(30)}
    assert len(starts) > 10
    assert Toy().reset(seed=4)[0] == Toy().reset(seed=4)[0]
    _, info = Toy().reset()
    assert isinstance(info["seed"], int)


def test_format_error_costs_the_penalty_and_one_turn_without_stepping(game):
    obs, reward, terminated, truncated, info = game.step("I just answer 3")
    assert reward == FORMAT_PENALTY and info["penalty"] == FORMAT_PENALTY
    assert info["format_error"] is True and info["turns_used"] == 1 and info["actions_left"] == 3
    assert not terminated and not truncated and game.log == []
    assert obs.startswith(FORMAT_ERROR_MESSAGE) and obs.endswith(game.render())


def test_strict_parser_needs_the_closing_tag_at_the_end(game):
    assert game.step("<think>t</think><answer>win</answer> trailing")[4]["format_error"] is True
    assert game.step("<think>t</think><answer>win")[4]["format_error"] is True
    _, reward, terminated, _, _ = game.step(r("win") + "\n  ")
    assert terminated and reward == 1.0


def test_lenient_and_raw_parsers():
    lenient = Toy(parser="lenient")
    lenient.reset(seed=0)
    assert lenient.step("<answer>wait</answer> then <answer>win</answer> no think")[2] is True
    assert lenient.log == ["win"]
    raw = Toy(parser="raw")
    raw.reset(seed=0)
    raw.step("  wait || bad  ")
    assert raw.log == ["wait", "bad"]


def test_chained_actions_each_consume_a_turn(game):
    obs, reward, terminated, truncated, info = game.step(r("a || bad || c || d"))
    assert game.log == ["a", "bad", "c"]  # at most max_actions_per_turn
    assert info["turns_used"] == 3 and info["actions_left"] == 1
    assert reward == pytest.approx(-0.1) and info["invalid_actions"] == 1
    assert "that move is not allowed" in obs


def test_chained_actions_stop_at_the_budget_and_at_the_end(game):
    game.step(r("a || b"))
    _, _, terminated, truncated, info = game.step(r("c || d || e"))
    assert game.log == ["a", "b", "c", "d"] and truncated and not terminated
    game.reset(seed=1)
    _, reward, terminated, _, info = game.step(r("bad || win || c"))
    assert game.log == ["bad", "win"] and terminated
    assert reward == pytest.approx(1.0 - 0.1) and info["turns_used"] == 2


def test_one_action_per_turn_keeps_the_separator_in_the_action():
    g = OnePerTurn()
    g.reset(seed=0)
    _, _, _, _, info = g.step(r("a || b"))
    assert g.log == ["a || b"] and info["turns_used"] == 1


def test_empty_answer_is_an_action_not_a_format_error(game):
    _, _, _, _, info = game.step(r(""))
    assert game.log == [""] and info["format_error"] is False and info["turns_used"] == 1


def test_truncation_after_the_budget_scores_only_penalties(game):
    rewards = [game.step(reply)[1] for reply in (r("a"), "no tags", r("bad"))]
    obs, reward, terminated, truncated, info = game.step(r("b"))
    assert truncated and not terminated and reward == 0.0
    assert sum(rewards) == pytest.approx(FORMAT_PENALTY - 0.1)
    assert info["end_reason"] == "out_of_turns" and info["success"] is False
    assert info["terminal_reward"] == 0.0 and info["actions_left"] == 0
    assert FORMAT_ERROR_MESSAGE not in obs


@pytest.mark.parametrize(
    ("answer", "reward", "success", "reason"), [("win", 1.0, True, "win"), ("draw", 0.5, False, "draw")]
)
def test_termination_reports_the_outcome(game, answer, reward, success, reason):
    _, got, terminated, truncated, info = game.step(r(answer))
    assert terminated and not truncated and got == reward
    assert info["success"] is success and info["end_reason"] == reason and info["terminal_reward"] == reward


def test_opponent_failure_and_outcome_info_reach_info(game):
    assert game.step(r("note"))[4]["noted"] is True
    _, reward, terminated, _, info = game.step(r("forfeit"))
    assert terminated and reward == 0.0 and info["opponent_failed"] is True
    assert info["end_reason"] == "opponent_failed" and info["success"] is False


@pytest.mark.parametrize("ending", [r("win"), r("a || b || c || d || e")])
def test_step_after_the_end_raises_and_reset_starts_over(ending):
    g = Toy(max_turns=2)
    first, _ = g.reset(seed=5)
    g.step(ending)
    if not g.done:
        g.step(r("a"))
    assert g.done
    with pytest.raises(RuntimeError, match="reset"):
        g.step(r("a"))
    again, info = g.reset(seed=5)
    assert again == first and info["turns_used"] == 0 and g.log == []


def test_step_before_reset_raises():
    with pytest.raises(RuntimeError):
        Toy().step(r("a"))


@pytest.mark.parametrize("max_turns", [0, -1, True, "3", 2.5])
def test_bad_max_turns_is_a_config_error(max_turns):
    with pytest.raises(ConfigError, match="max_turns"):
        Toy(max_turns=max_turns)


def test_bad_parser_lists_the_choices():
    with pytest.raises(ConfigError, match="'strict', 'lenient', 'raw'"):
        Toy(parser="loose")
