"""End-of-run warnings: a collapsed policy and a success rate that a constant answer matches are both flagged."""

from __future__ import annotations

import json

import yaml

from gift.config import config_to_dict, default_config_path, load_config
from gift.evaluation.baselines import simulable
from gift.run_checks import (
    game_options,
    run_baselines,
    run_games,
    run_warnings,
    window_success,
)
from gift.run_metrics import finish_run

MATRIX_BASELINES = {
    "matrix-v0": [
        {"policy": "random", "value": 0.394, "low": 0.394, "high": 0.394, "method": "exact", "answer": None},
        {"policy": "constant", "value": 0.528, "low": 0.528, "high": 0.528, "method": "exact", "answer": "2"},
    ]
}


def steps(
    success: float, share: float, count: int = 10, episodes: int = 16, prefix: str = "sub"
) -> list[dict]:
    return [
        {
            "step": s + 1,
            f"{prefix}/matrix-v0/success": success,
            "game/matrix-v0/top_answer_share": share,
            "game/matrix-v0/top_answer": "2",
            "game/matrix-v0/episodes": float(episodes),
        }
        for s in range(count)
    ]


def test_a_policy_answering_two_to_everything_gets_both_warnings():
    warnings = run_warnings(steps(0.53, 1.0), MATRIX_BASELINES, ["matrix-v0"])
    assert len(warnings) == 2
    assert "collapsed to one answer" in warnings[0] and "'2'" in warnings[0]
    assert "not above the best constant answer '2'" in warnings[1]


def test_a_policy_well_above_the_constant_with_varied_answers_gets_none():
    assert run_warnings(steps(0.9, 0.5, prefix="game"), MATRIX_BASELINES, ["matrix-v0"]) == []


def test_only_the_last_steps_count():
    rows = steps(0.5, 1.0, count=8) + steps(0.95, 0.5, count=2)
    assert run_warnings(rows, MATRIX_BASELINES, ["matrix-v0"], fraction=0.2) == []


def test_window_success_pools_episodes_with_a_wilson_interval():
    rows = steps(0.5, 0.5, count=4, episodes=25)
    est = window_success(rows, "sub/matrix-v0/success", "matrix-v0")
    assert est.n == 100 and est.value == 0.5 and est.low < 0.5 < est.high


def test_single_game_runs_use_train_success():
    rows = [{"step": 1, "train/success": 0.5, "game/matrix-v0/episodes": 64.0}]
    warnings = run_warnings(rows, MATRIX_BASELINES, ["matrix-v0"])
    assert len(warnings) == 1 and "not above" in warnings[0]
    assert run_games(rows, MATRIX_BASELINES) == ["matrix-v0"]


def test_game_options_cover_nested_sub_games_and_self_play_is_not_simulated():
    cfg = config_to_dict(load_config(default_config_path()))  # the default run: nested math -> matrix
    options = game_options(cfg)
    assert set(options) == {"math-v0", "matrix-v0"}
    assert options["math-v0"]["level"] == 1
    assert simulable(options["matrix-v0"])
    assert not simulable({"opponent": "self"})
    assert not simulable({"opponent": {"kind": "openai", "base_url": "x"}})
    assert simulable({"opponent": {"kind": "epsilon", "epsilon": 0.5}})


def test_finish_run_writes_warnings_and_cached_baselines(tmp_path):
    cfg = load_config(None, ["task.mode=single", "task.preset=null", "task.games=[matrix-v0]"])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg)))
    rows = [{"train/success": 0.52, "train/reward": 0.52, **r} for r in steps(0.52, 1.0)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    finish_run(tmp_path, plots=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert {r["metric"] for r in summary["metrics"]} >= {"train/success"}
    assert any("collapsed" in w for w in summary["warnings"])
    constant = next(b for b in summary["baselines"]["matrix-v0"] if b["policy"] == "constant")
    assert constant["answer"] == "2" and constant["method"] == "exact"
    assert json.loads((tmp_path / "baselines.json").read_text()) == summary["baselines"]
    assert run_baselines(tmp_path) == summary["baselines"]  # read back, not recomputed
