"""Per-step metrics from trajectory records: overall, per game (one key scheme in every mode), per task, windows."""

from __future__ import annotations

import math

import pytest

from gift.run_metrics import outcome_metrics, step_metrics, summary_rows


def record(
    task: str = "matrix-v0",
    reward: float = 0.0,
    success: bool = False,
    turns: int = 1,
    format_errors: int = 0,
    invalid: int = 0,
    opponent_failed: bool = False,
    truncated: bool = False,
    replies: tuple[int, ...] = (5,),
    final_info: dict | None = None,
    terminal: float | None = None,
) -> dict:
    if final_info is None:
        final_info = {"game": task, "success": success, "terminal_reward": terminal, "turns_used": turns}
    return {
        "task": task,
        "total_reward": reward,
        "success": success,
        "num_turns": turns,
        "format_errors": format_errors,
        "invalid_actions": invalid,
        "opponent_failed": opponent_failed,
        "context_truncated": truncated,
        "reply_lengths": list(replies),
        "final_info": final_info,
    }


def nested(subgames: list[tuple[str, float | None, bool]], **kw) -> dict:
    info = {
        "game": "nested-v0",
        "subgames": [
            {"game": g, "reward": r, "success": s, "turns": 1, "penalty": 0.0, "end_reason": None}
            for g, r, s in subgames
        ],
    }
    return record(task="nested", final_info=info, **kw)


def test_overall_metrics_exclude_opponent_failures_but_count_them():
    records = [
        record(reward=1.0, success=True, turns=2, replies=(4, 6)),
        record(reward=0.0, turns=2, format_errors=1, invalid=1, replies=(2, 8)),
        record(reward=-5.0, success=True, turns=4, opponent_failed=True, replies=(10,), truncated=True),
    ]
    m = outcome_metrics(records, "train")
    assert m["train/reward"] == pytest.approx(0.5)
    assert m["train/success"] == pytest.approx(0.5)
    assert m["train/format_error_rate"] == pytest.approx(1 / 4)  # 1 error over the 4 valid turns
    assert m["train/invalid_rate"] == pytest.approx(1 / 4)
    assert m["train/opponent_failures"] == 1.0
    assert m["train/turns"] == pytest.approx(2.0)
    # Lengths and truncation describe every generated reply, failed episodes included.
    assert m["train/reply_len"] == pytest.approx((4 + 6 + 2 + 8 + 10) / 5)
    assert m["train/context_truncated"] == pytest.approx(1 / 3)


def test_all_failed_gives_nan_not_zero():
    m = outcome_metrics([record(opponent_failed=True, reward=1.0)], "train")
    assert math.isnan(m["train/reward"]) and math.isnan(m["train/success"])
    assert math.isnan(m["train/format_error_rate"])
    assert m["train/opponent_failures"] == 1.0


def test_single_task_step_reports_its_game_but_no_task_keys():
    records = [record(reward=0.9, success=True, terminal=1.0), record(reward=-0.1, terminal=None, turns=2)]
    m = step_metrics(records, [{"groups_total": 1.0}], {})
    assert not any(k.startswith(("task/", "sub/")) for k in m)
    assert m["train/trajectories"] == 2.0
    assert m["train/groups_total"] == 1.0
    assert m["game/matrix-v0/success"] == pytest.approx(0.5)
    assert m["game/matrix-v0/reward"] == pytest.approx(0.5)  # terminal reward; unfinished counts 0
    assert m["game/matrix-v0/finished"] == pytest.approx(0.5)
    assert m["game/matrix-v0/turns"] == pytest.approx(1.5)
    assert {k for k in m if k.startswith("game/")} == {
        f"game/matrix-v0/{x}" for x in ("reward", "success", "finished", "turns", "episodes")
    }  # `episodes` comes from the answer-diversity metrics (the plots weight their bands by it)
    assert m["game/matrix-v0/episodes"] == 2.0


def test_per_task_keys_can_be_asked_for_with_one_task_in_the_step():
    m = step_metrics(
        [record(task="matrix-v0", reward=1.0, success=True, terminal=1.0)], [{}], {}, per_task=True
    )
    assert m["task/matrix-v0/success"] == 1.0 and m["game/matrix-v0/success"] == 1.0
    m = step_metrics([record(), record(task="math-v0")], [{}], {}, per_task=False)
    assert not any(k.startswith("task/") for k in m)


def test_a_game_has_the_same_keys_in_every_mode():
    """Single, mixed, CST (one task per step) and nested steps give one game the same `game/…` keys."""
    single = step_metrics([record(success=True, terminal=1.0)], [{}], {})
    mixed = step_metrics([record(success=True, terminal=1.0), record(task="math-v0", terminal=0.0)], [{}], {})
    cst = step_metrics([record(success=True, terminal=1.0)], [{}], {}, per_task=True)
    nested_ = step_metrics([nested([("math-v0", 0.0, False), ("matrix-v0", 1.0, True)])], [{}], {})
    keys = [
        {k: v for k, v in m.items() if k.startswith("game/matrix-v0/")} for m in (single, mixed, cst, nested_)
    ]
    assert keys[0] == keys[1] == keys[2] == keys[3]
    assert keys[0]["game/matrix-v0/success"] == 1.0
    assert "game/math-v0/success" in mixed and "game/math-v0/success" in nested_


def test_mixed_step_reports_each_task():
    records = [
        record(task="matrix-v0", reward=1.0, success=True),
        record(task="matrix-v0", reward=0.0),
        record(task="tictactoe-v0", reward=0.5),
        record(task="tictactoe-v0", reward=1.0, success=True, opponent_failed=True),
    ]
    m = step_metrics(records, [{}], {})
    assert m["game/matrix-v0/success"] == pytest.approx(0.5)
    assert m["game/tictactoe-v0/success"] == 0.0  # the opponent failure is left out
    assert m["task/matrix-v0/reward"] == pytest.approx(0.5)
    assert m["task/matrix-v0/success"] == pytest.approx(0.5)
    assert m["task/tictactoe-v0/reward"] == pytest.approx(0.5)
    assert m["task/tictactoe-v0/success"] == 0.0
    assert m["task/tictactoe-v0/opponent_failures"] == 1.0
    assert m["train/reward"] == pytest.approx(0.5)


def test_nested_step_reports_each_subgame_from_final_info():
    records = [
        nested([("matrix-v0", 1.0, True), ("tictactoe-v0", 0.5, False)], reward=0.75),
        nested([("matrix-v0", 0.0, False), ("tictactoe-v0", None, False)], reward=0.0),
        # An opponent failure is dropped from the per-sub-game view too.
        nested([("matrix-v0", 1.0, True), ("tictactoe-v0", None, False)], opponent_failed=True),
    ]
    m = step_metrics(records, [{}], {})
    assert m["game/matrix-v0/reward"] == pytest.approx(0.5)
    assert m["game/matrix-v0/success"] == pytest.approx(0.5)
    assert m["game/tictactoe-v0/reward"] == pytest.approx(0.25)  # an unfinished sub-game counts 0
    assert m["game/tictactoe-v0/finished"] == pytest.approx(0.5)
    assert not any(k.startswith(("sub/", "task/")) for k in m)
    assert m["train/reward"] == pytest.approx(0.375)
    assert m["train/opponent_failures"] == 1.0


def test_plan_stats_are_summed_over_processes_and_update_keys_renamed():
    stats = [
        {"groups_total": 2.0, "groups_kept": 1.0, "groups_zero_std": 1.0, "dropped_opponent_failed": 3.0},
        {"groups_total": 1.0, "groups_kept": 1.0, "groups_zero_std": 0.0, "dropped_opponent_failed": 0.0},
    ]
    update = {"entropy_mean": 2.5, "kl_mean": 0.1, "grad_norm": 0.3, "optimizer_steps": 2.0, "other": 9.0}
    m = step_metrics([record()], stats, update)
    assert m["train/groups_total"] == 3.0 and m["train/groups_kept"] == 2.0
    assert m["train/groups_zero_std"] == 1.0 and m["train/dropped_opponent_failed"] == 3.0
    assert m["train/entropy"] == 2.5 and m["train/kl"] == 0.1
    assert m["train/grad_norm"] == 0.3 and m["train/optimizer_steps"] == 2.0
    assert "other" not in m and "train/other" not in m


def test_summary_rows_compare_first_and_last_windows():
    rows = [
        {"step": s, "train/reward": float(s), "train/success": 0.0, "train/entropy": 1.0}
        for s in range(1, 11)
    ]
    rows[4]["train/success"] = math.nan  # a NaN step is skipped, not averaged in
    out = {r["metric"]: r for r in summary_rows(rows, fraction=0.2)}
    assert set(out) == {"train/reward", "train/success"}  # only reward/success/format metrics
    reward = out["train/reward"]
    assert reward["window"] == 2 and reward["steps"] == 10
    assert reward["first"] == pytest.approx(1.5) and reward["last"] == pytest.approx(9.5)
    assert out["train/success"]["steps"] == 9


def test_summary_rows_short_runs_use_a_window_of_one():
    rows = [{"step": 1, "game/matrix-v0/reward": 0.2}, {"step": 2, "game/matrix-v0/reward": 0.6}]
    (row,) = summary_rows(rows)
    assert (row["first"], row["last"], row["window"]) == (0.2, 0.6, 1)
    assert summary_rows([]) == []


def test_step_metrics_carry_answer_diversity_per_game():
    infos = [{"game": "matrix-v0", "answer": a} for a in ("2", "2", "2", "1")]
    m = step_metrics([record(final_info=i) for i in infos], [{}], {})
    assert m["game/matrix-v0/top_answer_share"] == pytest.approx(0.75)
    assert m["game/matrix-v0/answer_count"] == 4.0
    assert m["game/matrix-v0/top_answer"] == "2"
