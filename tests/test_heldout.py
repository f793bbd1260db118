"""The held-out evaluation that ends `gift train`: unseen seeds, the run's own prompts, CIs and baselines."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import gift.rollout as rollout
from gift.config import load_config
from gift.errors import ConfigError
from gift.heldout import HELDOUT_BASE_SEED, START_FILE, heldout_section, heldout_seeds, summarize, table_rows
from gift.metrics import read_metrics
from tests.test_trainer import DIGIT_GAME, digit_game, one_thread, run  # noqa: F401  (fixtures)


@given(
    base=st.integers(0, 2**31 - 10**6),
    steps=st.integers(1, 500),
    groups=st.integers(1, 64),
    count=st.integers(1, 200),
)
def test_heldout_seeds_never_meet_the_training_seeds(base, steps, groups, count):
    seeds = heldout_seeds(base, steps, groups, count)
    assert len(seeds) == len(set(seeds)) == count
    assert all(not (base <= s < base + steps * groups) for s in seeds)


def test_summary_counts_successes_with_wilson_intervals_and_leaves_out_forfeits():
    def rec(task, ok, failed=False, game=None):
        return {"task": task, "success": ok, "total_reward": float(ok), "opponent_failed": failed,
                "subgames": {f"{game or task}/success": float(ok), f"{game or task}/reward": float(ok)}}  # fmt: skip

    records = [rec("a", True)] * 3 + [rec("a", False)] + [rec("a", False, failed=True)] + [rec("b", False)] * 2
    out = summarize(records)
    a = out["tasks"]["a"]
    assert (a["n"], a["excluded"], a["value"], a["reward"]) == (4, 1, 0.75, 0.75)
    assert a["low"] == pytest.approx(0.3006, abs=1e-3) and a["high"] == pytest.approx(0.9544, abs=1e-3)
    b = out["tasks"]["b"]
    assert b["value"] == 0.0 and b["low"] == 0.0 and b["high"] > 0.5
    assert out["games"]["a"]["n"] == 4 and out["games"]["b"]["n"] == 2
    only_failed = summarize([rec("c", False, failed=True)])
    assert only_failed["tasks"]["c"]["value"] is None and only_failed["tasks"]["c"]["n"] == 0
    json.dumps(only_failed, allow_nan=False)  # strict JSON


def test_section_and_table_put_each_game_next_to_its_baselines():
    start = summarize([{"task": "t", "success": False, "total_reward": 0.0, "opponent_failed": False,
                        "subgames": {"matrix-v0/success": 0.0}}])  # fmt: skip
    trained = summarize([{"task": "t", "success": True, "total_reward": 1.0, "opponent_failed": False,
                          "subgames": {"matrix-v0/success": 1.0}}])  # fmt: skip
    baselines = {"matrix-v0": [{"policy": "random", "method": "exact", "value": 0.39, "low": 0.39, "high": 0.39,
                                "n": 0}, {"policy": "constant", "method": "simulated", "value": 0.5, "low": 0.4,
                                "high": 0.6, "n": 300}]}  # fmt: skip
    section = heldout_section([5, 6, 7], start, trained, baselines)
    assert section["episodes_per_task"] == 3 and section["seeds"] == [5, 7]
    assert section["games"]["matrix-v0"]["start"]["value"] == 0.0
    assert section["games"]["matrix-v0"]["trained"]["value"] == 1.0
    rows = {r[0]: r for r in table_rows(section)}
    assert rows["matrix-v0"][3] == "39.0 (exact)" and rows["matrix-v0"][4].startswith("50.0 [40.0, 60.0] n=300")
    assert rows["task t"][2].startswith("100.0 [")


def test_heldout_episodes_must_not_be_negative():
    with pytest.raises(ConfigError, match="heldout_episodes"):
        load_config(None, ["train.heldout_episodes=-1"])


def test_a_two_step_run_ends_with_the_heldout_table(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """The run's prompts reach the evaluation: with reply prefix "7" every reply of the digit game succeeds."""
    seen = []
    real = rollout.run_rollouts

    def spy(games, seeds, group_ids, backend, tokenizer, cfg=None, **kw):
        seen.append((list(seeds), cfg, [g.parser for g in games]))
        return real(games, seeds, group_ids, backend, tokenizer, cfg, **kw)

    monkeypatch.setattr(rollout, "run_rollouts", spy)
    out = run(
        tiny_model_dir, tmp_path, "held", "train.steps=2", "train.heldout_episodes=6",
        "rollout.reply_prefix='7'", "rollout.system_prompt='Answer briefly.'",
    )  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    held = summary["heldout"]
    task = held["tasks"][DIGIT_GAME]
    for model in ("start", "trained"):
        assert task[model]["n"] == 6 and task[model]["value"] == 1.0 and task[model]["low"] < 1.0
    assert held["games"][DIGIT_GAME]["trained"]["n"] == 6
    assert (out / START_FILE).is_file()
    calls = [c for c in seen if c[0][0] >= HELDOUT_BASE_SEED]
    assert len(calls) == 2  # the starting and the trained model (training steps call the rollout elsewhere)
    for seeds, cfg, parsers in calls:
        assert cfg.reply_prefix == "7" and cfg.system_prompt == "Answer briefly." and set(parsers) == {"raw"}
        assert seeds == list(range(held["seeds"][0], held["seeds"][1] + 1))
    trained = {s for line in (out / "work" / "rank-0.jsonl").read_text().splitlines()
               for s in json.loads(line).get("seeds", [])}  # fmt: skip
    assert trained and not trained & set(calls[0][0])
    assert "held-out success" in capsys.readouterr().out
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]


def test_heldout_off_leaves_no_trace(tiny_model_dir, tmp_path):
    out = run(tiny_model_dir, tmp_path, "off", "train.steps=1", "train.heldout_episodes=0")
    assert "heldout" not in json.loads((out / "summary.json").read_text())
    assert not (out / START_FILE).exists()


def test_matrix_games_get_their_baselines_in_the_heldout_section(tiny_model_dir, tmp_path):
    out = run(
        tiny_model_dir, tmp_path, "matrix", "train.steps=2", "train.heldout_episodes=8", "task.games=[matrix-v0]",
        "task.game_options={matrix-v0: {parser: raw}}", "rollout.max_new_tokens=2",
    )  # fmt: skip
    game = json.loads((out / "summary.json").read_text())["heldout"]["games"]["matrix-v0"]
    assert {b["policy"] for b in game["baselines"]} >= {"random", "constant"}
    assert game["start"]["n"] + game["start"]["excluded"] == 8 and 0.0 <= game["trained"]["value"] <= 1.0
