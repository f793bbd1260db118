"""matrix-v0: payoffs, both label rules, rewards, invalid answers, randomisation, layouts and options."""

from __future__ import annotations

import random
import re
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gift.errors import ConfigError
from gift.evaluation.stats import binomial_ci
from gift.games import make
from gift.games.matrix import (
    GAMES,
    NEGATABLE,
    MatrixGame,
    best_constant_answer,
    constant_answer_success,
    label_actions,
    payoff_matrices,
    permute_actions,
    permute_labels,
    pure_nash_equilibria,
    random_answer_success,
    reference_equilibrium,
)
from gift.games.matrix_prompts import LAYOUTS, render_prompt

# (game, sign) -> (P1 answer, P2 answer), the reference labels of the paper's Matrix Games environment.
PAPER_LABELS = {
    (0, 1): (2, 2), (0, -1): (1, 1),
    (1, 1): (1, 2), (1, -1): (1, 2),
    (2, 1): (2, 2), (2, -1): (2, 2),
    (3, 1): (2, 2), (3, -1): (2, 2),
    (4, 1): (1, 1), (4, -1): (2, 2),
    (5, 1): (2, 2), (5, -1): (2, 3),
    (6, 1): (3, 3), (6, -1): (1, 1),
    (7, 1): (2, 1),
    (8, 1): (3, 1),
}  # fmt: skip

# (game, sign) -> pure Nash equilibria (row, column), 1-indexed, derived by hand from best replies.
PURE_NE = {
    (0, 1): [(2, 2)],  # defect/defect
    (0, -1): [(1, 1)],
    (1, 1): [(1, 1), (2, 2)],  # the two coordinated outcomes
    (1, -1): [(1, 2), (2, 1)],
    (2, 1): [(1, 2), (2, 1)],  # chicken: one swerves, the other does not
    (2, -1): [(1, 1), (2, 2)],
    (3, 1): [(1, 1), (2, 2)],  # stag/stag and hare/hare
    (3, -1): [(1, 2), (2, 1)],
    (4, 1): [(1, 2), (2, 1)],
    (4, -1): [(2, 2), (3, 3)],
    (5, 1): [(2, 2)],
    (5, -1): [],  # no pure equilibrium: the "pure" rule falls back to the reference label
    (6, 1): [(3, 3)],
    (6, -1): [(1, 1), (6, 6)],
    (7, 1): [(2, 1)],
    (8, 1): [(3, 1)],
}

CASES = sorted(PAPER_LABELS)
INT = re.compile(r"-?\d+")


def reply(answer: str) -> str:
    return f"<think>reasoning</think><answer>{answer}</answer>"


def fixed_game(game: int, sign: int = 1, role: int = 1, **kw) -> MatrixGame:
    """A game pinned to one matrix, sign and role (offset 0 unless given)."""
    env = MatrixGame(games=[game], negate=sign == -1, role=role, offsets=kw.pop("offsets", (0,)), **kw)
    for seed in range(100):
        _, info = env.reset(seed)
        if info["sign"] == sign:
            return env
    raise AssertionError("sign never drawn")


# ---------------------------------------------------------------------------------------------- payoffs, labels
def test_payoff_table_shapes_and_transforms():
    shapes = [(2, 2)] * 4 + [(3, 3), (3, 3), (6, 6), (3, 4), (3, 2)]
    assert [np.array(g.A).shape for g in GAMES] == shapes
    assert [np.array(g.B).shape for g in GAMES] == shapes
    a, b = payoff_matrices(0, -1, 100)
    assert a.tolist() == [[97, 100], [95, 99]]
    assert b.tolist() == [[97, 95], [100, 99]]
    assert NEGATABLE == frozenset(range(7))


@pytest.mark.parametrize("case", CASES)
def test_paper_rule_reproduces_reference_table(case):
    game, sign = case
    a, b = payoff_matrices(game, sign)
    for role in (1, 2):
        assert label_actions(a, b, role, "paper") == {PAPER_LABELS[case][role - 1]}


@pytest.mark.parametrize("case", CASES)
def test_pure_rule_matches_hand_derived_equilibria(case):
    game, sign = case
    a, b = payoff_matrices(game, sign)
    assert pure_nash_equilibria(a, b) == PURE_NE[case]
    for role in (1, 2):
        expected = {pair[role - 1] for pair in PURE_NE[case]} or {PAPER_LABELS[case][role - 1]}
        assert label_actions(a, b, role, "pure") == expected


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("offset", [100, -100])
def test_offsets_never_change_labels(case, offset):
    game, sign = case
    base = payoff_matrices(game, sign)
    shifted = payoff_matrices(game, sign, offset)
    for rule in ("paper", "pure"):
        for role in (1, 2):
            assert label_actions(*shifted, role, rule) == label_actions(*base, role, rule)


@settings(max_examples=30, deadline=None)
@given(
    game=st.sampled_from(
        [g for g in range(len(GAMES)) if g != 6]
    ),  # 6x6 support enumeration is slow uncached
    negate=st.booleans(),
    offset=st.integers(-5000, 5000),
    role=st.sampled_from([1, 2]),
    rule=st.sampled_from(["paper", "pure"]),
)
def test_any_offset_keeps_labels(game, negate, offset, role, rule):
    sign = -1 if negate and game in NEGATABLE else 1
    assert label_actions(*payoff_matrices(game, sign, offset), role, rule) == label_actions(
        *payoff_matrices(game, sign), role, rule
    )


def test_reference_equilibrium_is_the_mixed_one_in_multi_equilibrium_games():
    p, q = reference_equilibrium(*payoff_matrices(1, 1))  # battle of the sexes
    assert np.allclose(p, [2 / 3, 1 / 3]) and np.allclose(q, [1 / 3, 2 / 3])
    p, q = reference_equilibrium(*payoff_matrices(6, -1, -100))  # a 0.5/0.5 tie resolves to the first index
    assert np.allclose(p, [0.5, 0, 0, 0, 0, 0.5])
    assert label_actions(*payoff_matrices(6, -1, -100), 1) == {1}


def test_pure_functions_reject_bad_arguments():
    for call in (
        lambda: payoff_matrices(9),
        lambda: payoff_matrices(-1),
        lambda: payoff_matrices(0, 2),
        lambda: label_actions(*payoff_matrices(0), 3),
        lambda: label_actions(*payoff_matrices(0), 1, "best"),
    ):
        with pytest.raises(ConfigError):
            call()


# ---------------------------------------------------------------------------------------------- stepping
@pytest.mark.parametrize("rule", ["paper", "pure"])
@pytest.mark.parametrize("case", CASES)
def test_reward_is_one_exactly_on_labelled_actions(case, rule):
    game, sign = case
    for role in (1, 2):
        env = fixed_game(game, sign, role, label_rule=rule)
        seed = env.seed
        labels = set(env.last_info["labels"])
        n = len(env.legal_actions())
        assert labels and labels <= set(range(1, n + 1))
        for k in range(1, n + 1):
            env.reset(seed)
            _, reward, terminated, truncated, info = env.step(reply(str(k)))
            assert (reward, terminated, truncated) == (
                (1.0, True, False) if k in labels else (0.0, True, False)
            )
            assert info["success"] is (k in labels)
            assert info["end_reason"] == ("correct" if k in labels else "wrong")
            assert info["chosen_action"] == k and info["invalid_actions"] == 0


def test_pure_rule_accepts_both_coordination_actions_where_paper_accepts_one():
    for rule, expected in (("paper", [1.0, 0.0]), ("pure", [1.0, 1.0])):
        env = fixed_game(1, 1, 1, label_rule=rule)  # battle of the sexes as P1
        rewards = []
        for k in ("1", "2"):
            env.reset(env.seed)
            rewards.append(env.step(reply(k))[1])
        assert rewards == expected


@pytest.mark.parametrize("answer", ["Action 2", "0", "3", "", "2.0", "1 2", "02", "+1", "two"])
def test_invalid_answers_score_zero_and_end_the_episode(answer):
    env = fixed_game(0, 1, 1)  # prisoner's dilemma, N = 2, label {2}
    obs, reward, terminated, truncated, info = env.step(reply(answer))
    assert (reward, terminated, truncated) == (0.0, True, False)
    assert info["end_reason"] == "invalid_action" and info["success"] is False
    assert info["invalid_actions"] == 1 and info["penalty"] == 0.0
    assert info["chosen_action"] is None and info["answer"] == answer.strip()
    with pytest.raises(RuntimeError):
        env.step(reply("2"))


def test_whitespace_around_the_number_is_accepted():
    env = fixed_game(0, 1, 1)
    assert env.step(reply("  2 \n"))[1] == 1.0


def test_format_error_costs_penalty_and_exhausts_the_single_turn():
    env = fixed_game(0, 1, 1)
    _, reward, terminated, truncated, info = env.step("2")
    assert reward == pytest.approx(-0.1)
    assert (terminated, truncated) == (False, True)
    assert info["format_error"] is True and info["end_reason"] == "out_of_turns"
    assert info["chosen_action"] is None


def test_format_error_with_a_larger_budget_allows_a_retry():
    env = fixed_game(0, 1, 1, max_turns=2)
    _, reward, _, truncated, _ = env.step("<answer>2")
    assert reward == pytest.approx(-0.1) and not truncated
    assert env.step(reply("2"))[1] == 1.0


def test_lenient_parser_reads_an_answer_without_think():
    env = fixed_game(0, 1, 1, parser="lenient")
    assert env.step("I defect. <answer>2</answer> done")[1] == 1.0


# ---------------------------------------------------------------------------------------------- randomisation
def test_same_seed_gives_identical_episode():
    a, b = make("matrix-v0"), make("matrix-v0")
    for seed in (0, 7, 123456):
        assert a.reset(seed) == b.reset(seed)
        assert a.reset(seed) == a.reset(seed)


def test_different_seeds_give_different_episodes():
    env = make("matrix-v0")
    episodes = [env.reset(seed) for seed in range(60)]
    assert len({obs for obs, _ in episodes}) >= 55
    infos = [(i["matrix_game_index"], i["sign"], i["offset"], i["role"], i["layout"]) for _, i in episodes]
    assert len(set(infos)) >= 50


def test_episode_draws_cover_every_option():
    env = MatrixGame()
    infos = [env.reset(seed)[1] for seed in range(600)]
    assert {i["matrix_game_index"] for i in infos} == set(range(9))
    assert {i["offset"] for i in infos} == {0, 100, -100}
    assert {i["role"] for i in infos} == {1, 2}
    assert {i["layout"] for i in infos} == set(range(len(LAYOUTS)))
    assert len(LAYOUTS) >= 12
    flips = [i["sign"] == -1 for i in infos if i["matrix_game_index"] in NEGATABLE]
    assert 0.4 < sum(flips) / len(flips) < 0.6
    assert all(i["sign"] == 1 for i in infos if i["matrix_game_index"] not in NEGATABLE)


def test_options_restrict_the_draws():
    env = make("matrix-v0", games=[7, "weakly dominated"], role=2, offsets=[5], negate=True)
    infos = [env.reset(seed)[1] for seed in range(40)]
    assert {i["matrix_game_index"] for i in infos} == {7, 8}
    assert {(i["sign"], i["offset"], i["role"]) for i in infos} == {(1, 5, 2)}
    env = MatrixGame(negate=False)
    assert all(env.reset(seed)[1]["sign"] == 1 for seed in range(40))


def test_info_reports_the_episode():
    env = fixed_game(2, -1, 2, offsets=(-100,))
    info = env.last_info
    assert info["matrix_game"] == "Game of Chicken" and info["matrix_game_index"] == 2
    assert (info["sign"], info["offset"], info["role"], info["num_actions"]) == (-1, -100, 2, 2)
    assert info["labels"] == [2] and info["label_rule"] == "paper"
    assert 0 <= info["layout"] < len(LAYOUTS) and info["layout_name"] == LAYOUTS[info["layout"]][0]
    assert info["chosen_action"] is None
    assert env.legal_actions() == ["1", "2"]
    assert env.step(reply("1"))[4]["chosen_action"] == 1


# ---------------------------------------------------------------------------------------------- prompts
def _check_prompt(prompt: str, a: np.ndarray, b: np.ndarray, role: int) -> None:
    numbers = {int(x) for x in INT.findall(prompt)}
    assert {int(x) for x in np.concatenate([a.ravel(), b.ravel()])} <= numbers
    assert f"Player {role}" in prompt
    n = a.shape[0] if role == 1 else a.shape[1]
    ask = prompt.strip().split("\n")[-1]
    ask_numbers = {int(x) for x in INT.findall(ask)}
    assert 1 in ask_numbers and n in ask_numbers and not ask_numbers - set(range(1, n + 1))


@pytest.mark.parametrize("layout", range(len(LAYOUTS)))
def test_every_layout_shows_all_payoffs_role_and_range(layout):
    for game in range(len(GAMES)):
        a, b = payoff_matrices(game, -1, 100)
        rows = tuple(tuple(int(x) for x in r) for r in a), tuple(tuple(int(x) for x in r) for r in b)
        for role in (1, 2):
            _check_prompt(render_prompt(layout, *rows, role, random.Random(layout)), a, b, role)


def test_layouts_are_distinct_renderings():
    a, b = (tuple(tuple(r) for r in m) for m in (GAMES[7].A, GAMES[7].B))
    prompts = {render_prompt(k, a, b, 1, random.Random(0)) for k in range(len(LAYOUTS))}
    assert len(prompts) == len(LAYOUTS) >= 12
    assert len({name for name, _, _ in LAYOUTS}) == len(LAYOUTS)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rule=st.sampled_from(["paper", "pure"]))
def test_any_episode_is_well_formed_and_graded_by_its_labels(seed, rule):
    env = MatrixGame(label_rule=rule)
    obs, info = env.reset(seed)
    a, b = payoff_matrices(info["matrix_game_index"], info["sign"], info["offset"])
    _check_prompt(obs, a, b, info["role"])
    n = info["num_actions"]
    assert env.legal_actions() == [str(k) for k in range(1, n + 1)]
    labels = set(info["labels"])
    assert labels and labels <= set(range(1, n + 1))
    assert labels == label_actions(a, b, info["role"], rule)
    k = random.Random(seed).randint(1, n)
    assert env.step(reply(str(k)))[1] == (1.0 if k in labels else 0.0)


# ---------------------------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"label_rule": "foo"}, "'paper', 'pure'"),
        ({"games": [9]}, "0..8"),
        ({"games": [-1]}, "0..8"),
        ({"games": []}, "0..8"),
        ({"games": ["chess"]}, "'chess'"),
        ({"games": [True]}, "True"),
        ({"role": 3}, "'random', 1, 2"),
        ({"role": True}, "'random', 1, 2"),
        ({"role": "p1"}, "'random', 1, 2"),
        ({"negate": "yes"}, "True, False"),
        ({"permute_actions": 1}, "permute_actions"),
        ({"offsets": []}, "integers"),
        ({"offsets": [0, "a"]}, "'a'"),
        ({"offsets": [0.5]}, "0.5"),
        ({"max_turns": 0}, "max_turns"),
        ({"parser": "loose"}, "'strict'"),
    ],
)
def test_bad_options_raise_one_line_config_error(options, needle):
    with pytest.raises(ConfigError) as err:
        make("matrix-v0", **options)
    message = str(err.value)
    assert "\n" not in message and needle in message


def test_registry_builds_the_game_with_options():
    env = make("matrix-v0", label_rule="pure", games=3)
    assert isinstance(env, MatrixGame) and env.games == (3,) and env.label_rule == "pure"


# ---------------------------------------------------------------------------------------------- balanced variant
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), rule=st.sampled_from(["paper", "pure"]))
def test_permuted_labels_are_the_permuted_original_labels(seed, rule):
    env = MatrixGame(label_rule=rule, permute_actions=True)
    obs, info = env.reset(seed)
    a, b = payoff_matrices(info["matrix_game_index"], info["sign"], info["offset"])
    rows, cols = [k - 1 for k in info["row_order"]], [k - 1 for k in info["col_order"]]
    assert sorted(rows) == list(range(a.shape[0])) and sorted(cols) == list(range(a.shape[1]))
    shown_a, shown_b = permute_actions(a, b, rows, cols)
    assert np.array_equal(env.A, shown_a) and np.array_equal(env.B, shown_b)
    for i, r in enumerate(rows):  # payoffs move with their actions
        for j, c in enumerate(cols):
            assert (env.A[i, j], env.B[i, j]) == (a[r, c], b[r, c])
    own = rows if info["role"] == 1 else cols
    original = label_actions(a, b, info["role"], rule)
    assert set(info["labels"]) == {own.index(x - 1) + 1 for x in original}
    if rule == "pure":  # pure equilibria do not depend on the order: recomputing on the shown game agrees
        assert set(info["labels"]) == label_actions(shown_a, shown_b, info["role"], "pure")
    _check_prompt(obs, shown_a, shown_b, info["role"])
    label = min(info["labels"])
    assert env.step(reply(str(label)))[1] == 1.0


def test_permutation_is_fixed_by_the_seed_and_off_by_default():
    on, off = MatrixGame(permute_actions=True), MatrixGame()
    assert on.reset(11) == on.reset(11)
    infos = [on.reset(seed)[1] for seed in range(200)]
    orders = {tuple(i["row_order"]) for i in infos if i["num_actions"] == 3 and i["role"] == 1}
    assert len(orders) == 6  # every order of three actions occurs
    for seed in range(50):
        _, info = off.reset(seed)
        assert info["row_order"] == list(range(1, off.A.shape[0] + 1)) and info["permute_actions"] is False
    # Without the option the episodes are exactly those of the paper's game (nothing extra is drawn).
    assert [MatrixGame(permute_actions=False).reset(s) for s in range(20)] == [
        make("matrix-v0").reset(s) for s in range(20)
    ]


def test_permute_labels_and_actions_reject_non_permutations():
    assert permute_labels({1}, (2, 0, 1)) == {2}
    with pytest.raises(ConfigError, match="row_order"):
        permute_actions(np.zeros((2, 2)), np.zeros((2, 2)), (0, 0), (0, 1))


def _simulated_constant_success(options, n):
    env = MatrixGame(**options)
    hits = Counter()
    for seed in range(n):
        _, info = env.reset(seed)
        hits.update(str(k) for k in info["labels"])
    return hits


def test_paper_game_rewards_a_constant_two_but_the_balanced_game_does_not():
    n = 3000
    exact = constant_answer_success({})
    assert exact["2"] == Fraction(19, 36) and exact["1"] == Fraction(1, 3)  # ≈ 0.53 and 0.33
    hits = _simulated_constant_success({}, n)
    two = binomial_ci(hits["2"], n)
    assert two.low <= exact["2"] <= two.high
    chance = random_answer_success({})
    assert two.low > chance  # the label prior alone beats chance by far

    balanced = {"permute_actions": True}
    assert random_answer_success(balanced) == chance  # the shuffle keeps the game, only positions move
    hits = _simulated_constant_success(balanced, n)
    best = max(hits, key=hits.get)
    ci = binomial_ci(hits[best], n)
    assert ci.low <= chance <= ci.high, (best, hits[best] / n, float(chance))
    assert best_constant_answer(balanced) == ("1", chance)
    for k, rate in constant_answer_success(balanced).items():
        est = binomial_ci(hits[k], n, level=0.99)
        assert est.low <= rate <= est.high, k


@settings(max_examples=25, deadline=None)
@given(
    games=st.lists(st.integers(0, 8), min_size=1, max_size=4, unique=True),
    rule=st.sampled_from(["paper", "pure"]),
    role=st.sampled_from(["random", 1, 2]),
    negate=st.booleans(),
)
def test_balanced_best_constant_equals_a_random_legal_answer(games, rule, role, negate):
    options = {"games": games, "label_rule": rule, "role": role, "negate": negate}
    chance = random_answer_success(options)
    plain = constant_answer_success(options)
    assert sum(plain.values()) >= 1  # every episode has a label, so some constant finds it
    balanced = constant_answer_success({**options, "permute_actions": True})
    assert max(balanced.values()) == balanced["1"] == chance
    assert all(0 <= rate <= 1 for rate in (*plain.values(), *balanced.values()))


def test_constant_answer_success_matches_the_known_priors():
    assert best_constant_answer({}) == ("2", Fraction(19, 36))
    assert best_constant_answer({"label_rule": "pure"}) == ("2", Fraction(23, 36))  # ≈ 0.64
    # One game, one role: exact 0/1 rates for the fixed label (Prisoner's Dilemma, not negated: 2).
    assert constant_answer_success({"games": [0], "negate": False, "role": 1}) == {"1": 0, "2": 1}
    with pytest.raises(ConfigError, match="permute_actions"):
        constant_answer_success({"permute_actions": "yes"})


def test_labels_do_not_depend_on_the_payoff_offset_that_the_cache_ignores():
    from gift.games.matrix import _key, _label_actions

    for game in range(6):  # the small games: their support enumeration is quick
        for sign in (1, -1):
            for offset in (100, -100, 7):
                A, B = payoff_matrices(game, sign, offset)
                for role in (1, 2):
                    for rule in ("paper", "pure"):
                        own = _label_actions(_key(A), _key(B), role, rule)
                        assert label_actions(A, B, role, rule) == own, (game, sign, offset, role, rule)
