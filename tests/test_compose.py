"""Nested trajectories, reward combinators, per-sub-game metrics and the task sampler, on scripted toy games."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gift.compose import (
    COMBINATORS,
    PAPER_GROUPS,
    PRESETS,
    NestedGame,
    Task,
    TaskSampler,
    combine,
    flatten_subgames,
    preset_tasks,
    subgame_records,
    summarize_subgames,
)
from gift.errors import ConfigError
from gift.games import GameSpec, Outcome, TextGame, make, register, registry
from gift.games.checker import check_env
from gift.games.protocol import FORMAT_PENALTY


class Scripted(TextGame):
    """The answer decides the outcome: win 1, draw 0.5, lose 0, wait (continue), forfeit (opponent fails)."""

    id = "compose-a-v0"
    default_max_turns = 3
    max_actions_per_turn = 3

    def __init__(self, max_turns: int | None = None, parser: str = "strict", tag: str = "a") -> None:
        super().__init__(max_turns=max_turns, parser=parser)
        self.tag = tag
        self.moves: list[str] = []

    def _reset(self) -> None:
        self.secret = self.rng.randrange(10_000)
        self.moves = []

    def _act(self, action: str) -> Outcome:
        self.moves.append(action)
        if action == "win":
            return Outcome(terminated=True, reward=1.0, success=True, end_reason="win")
        if action == "draw":
            return Outcome(terminated=True, reward=0.5, end_reason="draw")
        if action == "lose":
            return Outcome(terminated=True, reward=0.0, end_reason="loss")
        if action == "forfeit":
            return Outcome(terminated=True, reward=0.0, end_reason="opponent_failed", opponent_failed=True)
        if action == "wait":
            return Outcome()
        return Outcome(valid=False, penalty=-0.1, message=f"{action!r} is not a move")

    def render(self) -> str:
        return f"[{self.tag}] secret {self.secret}; moves: {' '.join(self.moves) or '-'}"

    def legal_actions(self) -> list[str]:
        return ["win", "draw", "lose", "wait"]


class OneShot(Scripted):
    id = "compose-b-v0"
    default_max_turns = 1
    max_actions_per_turn = 1

    def __init__(self, max_turns: int | None = None, parser: str = "strict", tag: str = "b") -> None:
        super().__init__(max_turns=max_turns, parser=parser, tag=tag)


class Third(OneShot):
    id = "compose-c-v0"

    def __init__(self, max_turns: int | None = None, parser: str = "strict", tag: str = "c") -> None:
        super().__init__(max_turns=max_turns, parser=parser, tag=tag)


TOY_SPECS = [
    GameSpec(cls.id, f"{__name__}:{cls.__name__}", "toy game for the compose tests")
    for cls in (Scripted, OneShot, Third)
]


@pytest.fixture(autouse=True, scope="module")
def toy_games():
    """Register this module's toy games for its tests only, leaving the shared registry as it was."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry.REGISTRY, "_specs", dict(registry.REGISTRY._specs))
        for game_spec in TOY_SPECS:
            register(game_spec)
        yield


A, B, C = "compose-a-v0", "compose-b-v0", "compose-c-v0"


def r(answer: str) -> str:
    return f"<think>scripted</think><answer>{answer}</answer>"


def play(game: NestedGame, answers: list[str], seed: int = 3) -> list[tuple]:
    game.reset(seed=seed)
    return [game.step(r(a) if a != "NOTAGS" else "no tags at all") for a in answers]


# ----------------------------------------------------------------------------------------------- construction


def test_budget_defaults_to_sum_of_subgame_budgets():
    assert NestedGame([A, B]).max_turns == 3 + 1
    assert NestedGame([A, {"id": B, "max_turns": 5}]).max_turns == 3 + 5
    assert NestedGame([A, B], max_turns=9).max_turns == 9


def test_entries_accept_ids_dicts_and_pairs_with_options():
    game = NestedGame([(A, {"tag": "first"}), {"id": B, "tag": "second"}])
    obs, _ = game.reset(seed=1)
    assert obs.startswith("[first]")
    game.step(r("win"))
    assert game.render().startswith("[second]")


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"games": [A], "combinator": "max"}, "'mean', 'all', 'product', 'min'"),
        ({"games": [A], "order": "random"}, "'fixed', 'shuffled'"),
        ({"games": []}, "non-empty"),
        ({"games": None}, "non-empty"),
        ({"games": "F+I9"}, "F+I1"),
        ({"games": [42]}, "games[0]"),
        ({"games": [{"tag": "x"}]}, "needs an 'id'"),
        ({"games": ["no-such-game-v0"]}, "unknown game 'no-such-game-v0'"),
        ({"games": [{"id": A, "colour": "red"}]}, "unknown option 'colour'"),
    ],
)
def test_bad_configuration_is_a_one_line_config_error(kwargs, needle):
    with pytest.raises(ConfigError) as err:
        NestedGame(**kwargs)
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_registered_as_nested_v0_and_preset_names_resolve():
    game = make("nested-v0", games=[A, B], combinator="min")
    assert isinstance(game, NestedGame) and game.combinator == "min"
    with pytest.raises(ConfigError, match="allowed options"):
        make("nested-v0", games=[A], weights=[1])


# ----------------------------------------------------------------------------------------------------- reset


def test_reset_seeds_every_subgame_and_shows_the_first():
    game = NestedGame([A, B])
    obs, info = game.reset(seed=11)
    assert all(sub.seed == 11 for sub in game.games)
    assert obs == game.games[0].render() == game.render()
    assert info["game"] == "nested-v0" and info["seed"] == 11
    assert info["turns_used"] == 0 and info["actions_left"] == 4
    assert info["subgame_index"] == 0 and info["subgame"] == A and info["combinator"] == "mean"
    assert [s["game"] for s in info["subgames"]] == [A, B]
    assert all(s["reward"] is None and s["turns"] == 0 for s in info["subgames"])
    assert game.legal_actions() == game.games[0].legal_actions()


def test_same_seed_same_episode_and_reset_after_the_end():
    game = NestedGame([A, B])
    first = play(game, ["wait", "win", "draw"], seed=4)
    second = play(game, ["wait", "win", "draw"], seed=4)
    assert [(o, rw, t, tr) for o, rw, t, tr, _ in first] == [(o, rw, t, tr) for o, rw, t, tr, _ in second]
    assert first[-1][4] == second[-1][4]


# ------------------------------------------------------------------------------------------------- rewards


def test_boundary_hides_the_outcome_and_the_last_step_pays_the_mean():
    game = NestedGame([A, B])
    game.reset(seed=2)
    obs, reward, terminated, truncated, info = game.step(r("win"))
    assert reward == 0.0 and not terminated and not truncated
    assert obs == game.games[1].render() and obs.startswith("[b]")
    assert "win" not in obs
    assert info["subgame_index"] == 1 and info["success"] is False and info["end_reason"] is None
    assert info["subgames"][0] == {
        "game": A,
        "reward": 1.0,
        "success": True,
        "turns": 1,
        "penalty": 0.0,
        "end_reason": "win",
    }
    obs, reward, terminated, truncated, info = game.step(r("lose"))
    assert reward == pytest.approx(0.5) and terminated and not truncated
    assert info["terminal_reward"] == pytest.approx(0.5)
    assert info["success"] is False  # strict AND of the sub-games
    assert info["end_reason"] == "completed" and info["nested_truncated"] is False
    assert [s["success"] for s in info["subgames"]] == [True, False]


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        (("win", "win"), {"mean": 1.0, "all": 1.0, "product": 1.0, "min": 1.0}),
        (("win", "draw"), {"mean": 0.75, "all": 0.0, "product": 0.5, "min": 0.5}),
        (("draw", "draw"), {"mean": 0.5, "all": 0.0, "product": 0.25, "min": 0.5}),
        (("lose", "win"), {"mean": 0.5, "all": 0.0, "product": 0.0, "min": 0.0}),
    ],
)
@pytest.mark.parametrize("combinator", list(COMBINATORS))
def test_every_combinator(combinator, answers, expected):
    game = NestedGame([A, B], combinator=combinator)
    steps = play(game, list(answers))
    assert steps[0][1] == 0.0
    _, reward, terminated, _, info = steps[-1]
    assert terminated and reward == pytest.approx(expected[combinator])
    assert info["combinator"] == combinator
    assert info["success"] is (answers == ("win", "win"))


def test_combine_function():
    assert combine("mean", [1.0, 0.0, 0.5], [True, False, False]) == pytest.approx(0.5)
    assert combine("all", [1.0, 1.0], [True, True]) == 1.0
    assert combine("all", [1.0, 1.0], [True, False]) == 0.0
    assert combine("product", [0.5, 0.5], [False, False]) == pytest.approx(0.25)
    assert combine("min", [0.5, 1.0], [False, True]) == 0.5
    with pytest.raises(ConfigError, match="'mean'"):
        combine("sum", [1.0], [True])
    with pytest.raises(ValueError):
        combine("mean", [], [])


def test_penalties_pass_through_unchanged():
    game = NestedGame([A, B])
    steps = play(game, ["junk", "NOTAGS", "win", "win"])
    rewards = [s[1] for s in steps]
    assert rewards[:3] == pytest.approx([-0.1, FORMAT_PENALTY, 0.0])
    assert rewards[3] == pytest.approx(1.0)
    info = steps[-1][4]
    assert sum(rewards) == pytest.approx(1.0 - 0.1 + FORMAT_PENALTY)
    assert info["subgames"][0]["penalty"] == pytest.approx(-0.1 + FORMAT_PENALTY)
    assert info["subgames"][0]["turns"] == 3 and info["turns_used"] == 4
    assert steps[1][4]["format_error"] is True and steps[0][4]["invalid_actions"] == 1


def test_penalty_in_the_step_that_crosses_a_boundary():
    game = NestedGame([A, B])
    game.reset(seed=0)
    _, reward, terminated, _, info = game.step(r("junk || win"))
    assert reward == pytest.approx(-0.1) and not terminated
    assert info["penalty"] == pytest.approx(-0.1) and info["turns_used"] == 2
    assert info["subgame_index"] == 1


def test_chained_actions_stop_at_the_composite_budget():
    game = NestedGame([A], max_turns=2)
    game.reset(seed=0)
    _, reward, terminated, truncated, info = game.step(r("wait || wait || wait"))
    assert game.games[0].moves == ["wait", "wait"]
    assert truncated and not terminated and info["turns_used"] == 2 and info["actions_left"] == 0


# ---------------------------------------------------------------------------------------------- truncation


def test_truncated_trajectory_scores_zero_plus_penalties_and_is_flagged():
    game = NestedGame([A, B])  # budget 3 + 1; A alone would truncate after 3 turns
    steps = play(game, ["wait", "junk", "wait", "wait"])
    assert [s[2] or s[3] for s in steps] == [False, False, False, True]
    _, reward, terminated, truncated, info = steps[-1]
    assert truncated and not terminated and reward == 0.0
    assert sum(s[1] for s in steps) == pytest.approx(-0.1)
    assert info["success"] is False and info["end_reason"] == "out_of_turns"
    assert info["nested_truncated"] is True and info["terminal_reward"] == 0.0
    assert info["subgames"][0]["end_reason"] == "out_of_turns"
    assert [s["reward"] for s in info["subgames"]] == [None, None]
    assert info["actions_left"] == 0
    with pytest.raises(RuntimeError):
        game.step(r("win"))


def test_budget_running_out_at_a_boundary_withholds_the_reward():
    game = NestedGame([A, B], max_turns=1)
    _, reward, terminated, truncated, info = play(game, ["win"])[0]
    assert truncated and not terminated and reward == 0.0
    assert info["subgames"][0]["reward"] == 1.0 and info["subgames"][1]["reward"] is None
    assert info["success"] is False and info["nested_truncated"] is True


def test_actions_left_counts_down_over_the_whole_composite():
    game = NestedGame([A, B, C])
    steps = play(game, ["wait", "win", "win", "win"])
    assert [s[4]["actions_left"] for s in steps] == [4, 3, 2, 1]
    assert steps[-1][2] and steps[-1][1] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------ opponent failure


@pytest.mark.parametrize(("answer", "reward"), [("forfeit", 0.0), ("junk || forfeit", -0.1)])
def test_opponent_failure_ends_the_composite(answer, reward):
    game = NestedGame([A, B])
    _, got, terminated, truncated, info = play(game, [answer])[0]
    assert terminated and not truncated and got == pytest.approx(reward)
    assert info["opponent_failed"] is True and info["end_reason"] == "opponent_failed"
    assert info["success"] is False and info["subgames"][0]["end_reason"] == "opponent_failed"
    assert game.done


# ------------------------------------------------------------------------------------------------- ordering


def test_fixed_order_is_kept():
    game = NestedGame([C, A, B])
    for seed in range(5):
        _, info = game.reset(seed=seed)
        assert [s["game"] for s in info["subgames"]] == [C, A, B]


def test_shuffled_order_is_reproducible_and_varies():
    game = NestedGame([A, B, C], order="shuffled")
    orders = {}
    for seed in range(20):
        _, info = game.reset(seed=seed)
        orders[seed] = tuple(s["game"] for s in info["subgames"])
        assert sorted(orders[seed]) == [A, B, C]
    again = NestedGame([A, B, C], order="shuffled")
    for seed in range(20):
        _, info = again.reset(seed=seed)
        assert tuple(s["game"] for s in info["subgames"]) == orders[seed]
    assert len(set(orders.values())) >= 3
    _, info = game.reset(seed=0)
    assert game.render() == game.current.render() and game.current.id == info["subgames"][0]["game"]


# ---------------------------------------------------------------------------------------------------- nesting


def test_a_nested_game_inside_a_nested_game():
    game = NestedGame([{"id": "nested-v0", "games": [B, C]}, A])
    assert game.max_turns == 2 + 3
    steps = play(game, ["win", "draw", "win"])
    assert [s[1] for s in steps[:2]] == [0.0, 0.0]
    _, reward, terminated, _, info = steps[-1]
    assert terminated and reward == pytest.approx((0.75 + 1.0) / 2)
    assert info["subgames"][0]["reward"] == pytest.approx(0.75) and info["subgames"][0]["success"] is False


def test_check_env_passes_on_a_nested_toy():
    report = check_env(NestedGame([A, B, C], order="shuffled", combinator="all"), episodes=8)
    assert "determinism" in report.checks and report.distinct_starts >= 2


# ----------------------------------------------------------------------------------------- per-game metrics


def test_flatten_and_summarize_subgames():
    game = NestedGame([A, B, B])
    finals = [play(game, answers)[-1][4] for answers in (["win", "win", "lose"], ["draw", "win", "win"])]
    flat = flatten_subgames(finals[0])
    assert flat[f"{A}/reward"] == 1.0 and flat[f"{A}/success"] == 1.0
    assert flat[f"{B}/success"] == 1.0 and flat[f"{B}#2/success"] == 0.0 and flat[f"{B}#2/finished"] == 1.0
    summary = summarize_subgames(finals)
    assert summary[f"{A}/reward"] == pytest.approx(0.75) and summary[f"{A}/success"] == pytest.approx(0.5)
    assert summary[f"{B}#2/reward"] == pytest.approx(0.5)


def test_subgame_records_of_a_single_game_and_of_a_truncated_composite():
    single = make(B)
    single.reset(seed=0)
    info = single.step(r("draw"))[4]
    assert subgame_records(info) == [
        {"game": B, "reward": 0.5, "success": False, "turns": 1, "penalty": None, "end_reason": "draw"}
    ]
    truncated = play(NestedGame([A, B]), ["wait"] * 4)[-1][4]
    flat = flatten_subgames(truncated)
    assert flat[f"{A}/finished"] == 0.0 and flat[f"{A}/reward"] == 0.0 and flat[f"{A}/turns"] == 4.0


# ---------------------------------------------------------------------------------------------------- sampler


def test_sampler_groups_and_seeds_follow_the_paper():
    sampler = TaskSampler({A: 2, B: 1}, group_size=4)
    first, second = sampler.next_batch(), sampler.next_batch()
    assert [g.task.name for g in first] == [A, A, B]
    assert [g.seed for g in first] == [10000, 10001, 10002]
    assert [g.seed for g in second] == [10003, 10004, 10005]
    assert all(g.size == 4 for g in first) and [g.index for g in first] == [0, 1, 2]
    seeds = [g.seed for step in range(50) for g in sampler.batch_at(step)]
    assert len(seeds) == len(set(seeds))
    game = first[0].task.make()
    assert isinstance(game, Scripted) and game.reset(seed=first[0].seed)[1]["seed"] == 10000


def test_sampler_state_round_trip_resumes_exactly():
    tasks = [(A, 3), ({"id": "nested-v0", "name": "ab", "games": [A, B]}, 2)]
    run = TaskSampler(tasks, group_size=2, base_seed=7)
    for _ in range(3):
        run.next_batch()
    state = run.state_dict()
    resumed = TaskSampler(tasks, group_size=2, base_seed=7)
    resumed.load_state_dict(state)
    for _ in range(4):
        assert resumed.next_batch() == run.next_batch()
    assert resumed.state_dict() == run.state_dict() == {"step": 7, "base_seed": 7, "num_groups": 5}
    with pytest.raises(ConfigError, match="base_seed"):
        TaskSampler(tasks, base_seed=8).load_state_dict(state)
    with pytest.raises(ConfigError, match="num_groups"):
        TaskSampler([(A, 1)], base_seed=7).load_state_dict(state)


def test_sampler_task_forms():
    sampler = TaskSampler([("F+I2", 4), (Task("mine", B, {"tag": "z"}), 1)])
    nested, mine = sampler.tasks
    assert nested[0].name == "F+I2" and nested[0].game == "nested-v0" and nested[1] == 4
    assert [e["id"] for e in nested[0].options["games"]] == list(PRESETS["F+I2"])
    assert mine[0].name == "mine" and mine[0].make().tag == "z"


@pytest.mark.parametrize(
    ("tasks", "kwargs", "needle"),
    [
        ({}, {}, "empty"),
        ({A: 0}, {}, "groups=0"),
        ({A: True}, {}, "groups=True"),
        ({A: 1}, {"group_size": 0}, "group_size=0"),
        ([(3.5, 1)], {}, "task 3.5"),
    ],
)
def test_sampler_rejects_bad_configuration(tasks, kwargs, needle):
    with pytest.raises(ConfigError) as err:
        TaskSampler(tasks, **kwargs)
    assert needle in str(err.value)


def test_preset_tasks_mixed_and_nested():
    for name, games in PRESETS.items():
        mixed = preset_tasks(name, "mixed")
        assert [t.game for t, _ in mixed] == list(games)
        assert all(n == PAPER_GROUPS[(name, "mixed")] for _, n in mixed)
        ((nested, groups),) = preset_tasks(name, "nested", combinator="all", order="shuffled")
        assert nested.game == "nested-v0" and groups == PAPER_GROUPS[(name, "nested")]
        assert nested.options["combinator"] == "all" and nested.options["order"] == "shuffled"
    opts = {"tictactoe-v0": {"opponent": "random"}}
    mixed = dict((t.name, t) for t, _ in preset_tasks("I2", "mixed", game_options=opts, groups=2))
    assert mixed["tictactoe-v0"].options == {"opponent": "random"} and mixed["matrix-v0"].options == {}
    ((nested, groups),) = preset_tasks("I2", "nested", game_options=opts, groups=3)
    assert nested.options["games"][1] == {"id": "tictactoe-v0", "opponent": "random"} and groups == 3
    with pytest.raises(ConfigError, match="F\\+I1"):
        preset_tasks("F+I4", "nested")
    with pytest.raises(ConfigError, match="'nested', 'mixed'"):
        preset_tasks("I2", "or")


def test_game_layer_imports_without_torch():
    code = "import sys, gift.compose, gift.games.checker; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(("preset", "budget"), [("F+I1", 2), ("F+I2", 7), ("F+I3", 10), ("I2", 6)])
def test_paper_presets_have_the_paper_turn_budgets(preset, budget):
    game = NestedGame(games=preset)
    assert game.max_turns == budget
    assert [sub.id for sub in game.games] == list(PRESETS[preset])
