"""Plots: points, a smoothed line and a 95% band per game, baselines dashed, integer steps, refreshed in a run."""

from __future__ import annotations

import json
import math

import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from gift import plots  # noqa: E402
from gift.evaluation.stats import binomial_ci  # noqa: E402

BASELINES = {
    "matrix-v0": [
        {"policy": "random", "value": 0.394, "answer": None},
        {"policy": "constant", "value": 0.528, "answer": "2"},
    ]
}


def rows(steps: int = 12) -> list[dict]:
    return [
        {
            "step": s,
            "sub/matrix-v0/success": 0.5 + 0.02 * s,
            "sub/math-v0/success": 0.1,
            "game/matrix-v0/episodes": 16.0,
            "game/math-v0/episodes": 16.0,
            "sub/matrix-v0/reward": 0.5,
            "game/matrix-v0/top_answer_share": 1.0,
            "train/entropy": 0.3 + 0.01 * s,
            "train/grad_norm": 2.0,
        }
        for s in range(1, steps + 1)
    ]


def test_smoothed_rate_is_the_pooled_window_with_a_wilson_band():
    band = plots.smooth_rate([0.5, 1.0, 0.0], [10, 10, 20], window=2)
    assert band[0] == pytest.approx(tuple(getattr(binomial_ci(5, 10), a) for a in ("value", "low", "high")))
    pooled = binomial_ci(10, 30)  # steps 2-3: 10 wins of 30 episodes
    assert band[2] == pytest.approx((pooled.value, pooled.low, pooled.high))


def test_smoothed_mean_band_is_two_standard_errors_and_absent_for_one_point():
    band = plots.smooth_mean([1.0, 3.0], window=5)
    assert band[0] == (1.0, 1.0, 1.0)
    mean, low, high = band[1]
    assert mean == 2.0 and high - mean == pytest.approx(1.959964 * math.sqrt(2.0 / 2), rel=1e-5)


def test_game_keys_prefer_the_game_prefix_over_older_names():
    found = plots.game_keys([{"sub/a/success": 1, "game/a/success": 1, "task/b/success": 0}], "success")
    assert found == {"a": "game/a/success", "b": "task/b/success"}


def test_success_figure_has_a_line_per_game_points_bands_and_dashed_baselines():
    fig = plots.success_figure(plt, rows(), BASELINES)
    (ax,) = fig.axes
    assert "Wilson" in ax.get_title()
    solid = [line for line in ax.get_lines() if line.get_linestyle() == "-"]
    dashed = [line for line in ax.get_lines() if line.get_linestyle() in ("--", ":")]
    assert sorted(line.get_label() for line in solid) == ["math-v0", "matrix-v0"]
    assert {line.get_ydata()[0] for line in dashed} == {0.394, 0.528}
    assert len(ax.collections) == 4  # per game: the points and the band
    matrix = next(line for line in solid if line.get_label() == "matrix-v0")
    assert dashed[0].get_color() == matrix.get_color()  # a game's baselines wear its colour
    assert all(float(t).is_integer() for t in ax.xaxis.get_major_locator().tick_values(1, 12))
    plt.close(fig)


def test_write_plots_writes_every_figure(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows()))
    written = plots.write_plots(tmp_path, baselines=BASELINES)
    names = {p.name for p in written}
    assert names == {"success.png", "reward.png", "answers.png", "entropy.png", "grad_norm.png"}
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written)


def test_refresh_plots_runs_every_n_steps_and_never_raises(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(plots, "write_plots", lambda run_dir: calls.append(run_dir))
    for step in range(1, 11):
        plots.refresh_plots(tmp_path, step, every=5)
    plots.refresh_plots(tmp_path, 5, every=5, enabled=False)
    assert calls == [tmp_path, tmp_path]

    def broken(run_dir):
        raise ValueError("no data")

    monkeypatch.setattr(plots, "write_plots", broken)
    plots.refresh_plots(tmp_path, 5, every=5)
    assert "plots not refreshed at step 5: no data" in capsys.readouterr().out
