"""metrics.jsonl and TensorBoard after a resume: every step once, rewrites atomic."""

from __future__ import annotations

import pytest

from gift.metrics import MetricsLogger, read_metrics, truncate_after


def test_tensorboard_shows_each_step_once_after_a_resume(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = MetricsLogger(tmp_path, tensorboard=True)
    for step in (1, 2, 3):  # step 3 was logged, then the run was killed before its checkpoint
        first.log(step, {"train/reward": float(step)})
    first.close()
    truncate_after(tmp_path / "metrics.jsonl", 2)
    resumed = MetricsLogger(tmp_path, tensorboard=True, resume_step=2)
    for step in (3, 4):
        resumed.log(step, {"train/reward": 10.0 * step})
    resumed.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    scalars = [(e.step, e.value) for e in events.Scalars("train/reward")]
    assert scalars == [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0)]
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4]


def test_truncating_metrics_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"st')
    truncate_after(path, 1)
    assert path.read_text() == '{"step": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.jsonl"]
