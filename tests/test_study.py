"""`gift study`: the study file's one-line errors, the grid, the statistics, and a tiny study run end to end
(2 modes × 2 seeds × 2 steps on the tiny model, 2 cores) — outputs, numbers, skip on rerun, resume, submitit."""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import gift
from gift.cli import main as gift_main
from gift.errors import ConfigError
from gift.metrics import read_metrics
from gift.study import Study, cell_state, game_metric, load_study, plan_cells
from gift.study.schema import config_modes
from gift.study.stats import bootstrap_ci, mean_ci, t_critical

REPO = Path(__file__).resolve().parents[1]
TINY_OVERRIDES = [
    "task.groups=1",
    "task.group_size=2",
    "rollout.max_new_tokens=3",
    "rollout.max_context=2048",
    "algo.mini_batch_size=4",
    "algo.micro_batch_size=2",
    "train.steps=2",
    "train.plots=false",
    "train.tensorboard=false",
]
I2_RAW = "task.game_options={matrix-v0: {parser: raw}, tictactoe-v0: {parser: raw, opponent: random}}"


def write_study(path: Path, **fields) -> Path:
    path.write_text(yaml.safe_dump({"name": "t", "out": str(path.parent / "study"), **fields}))
    return path


def child_pythonpath() -> str:
    """PYTHONPATH for the runs' subprocesses: this gift first, so they run the code under test."""
    parts = [str(Path(gift.__file__).parents[1]), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    return os.pathsep.join(p for p in parts if p)


def user_error(capsys, *argv: str) -> str:
    """Run `gift ...`, expect exit 2 and exactly one stderr line; return it."""
    assert gift_main(list(argv)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# -------------------------------------------------------------------------------------- study file errors
@pytest.mark.parametrize(
    ("fields", "needles"),
    [
        ({"modes": ["nested", "blended"]}, ["modes", "'blended'", "allowed: ", "nested"]),
        ({"seeds": [0, 0]}, ["seeds", "0", "twice"]),
        ({"colour": "red"}, ["unknown study key 'colour'"]),
        ({"settings": {"a b": []}}, ["setting name 'a b'"]),
        ({"overrides": ["train.run_dir=x"]}, ["train.run_dir", "set by the study"]),
        ({"overrides": ["task.mode=nested"]}, ["task.mode", "set by the study"]),
        ({"overrides": ["lr"]}, ["'lr'", "section.key=value"]),
        ({"executor": "pbs"}, ["executor", "'pbs'", "local", "slurm"]),
        ({"cores": 2, "threads_per_run": 4}, ["threads_per_run=4 exceeds cores=2"]),
        (
            {"overrides_per_cell": [{"modes": ["single"], "overrides": ["algo.lr=1e-5"]}]},
            ["overrides_per_cell[0].modes", "'single'"],
        ),  # fmt: skip
        ({"eval": {"episodes": -1}}, ["eval.episodes=-1"]),
        ({"slurm": {"gpus": 2}}, ["unknown study key 'slurm.gpus'"]),
    ],
)
def test_a_bad_study_value_is_one_line_before_anything_runs(tmp_path, capsys, fields, needles):
    line = user_error(capsys, "study", str(write_study(tmp_path / "s.yaml", **fields)))
    for needle in needles:
        assert needle in line, line
    assert not (tmp_path / "study").exists()


def test_a_bad_run_config_names_the_run(tmp_path, capsys):
    path = write_study(tmp_path / "s.yaml", settings={"x": ["algo.lr=-1"]}, modes=["mixed"], seeds=[3])
    line = user_error(capsys, "study", str(path))
    assert line.startswith("error: run x-mixed-s3: algo.lr=-1"), line
    assert not (tmp_path / "study").exists()


def test_missing_study_file_and_bad_yaml(tmp_path, capsys):
    assert "not found" in user_error(capsys, "study", str(tmp_path / "none.yaml"))
    (tmp_path / "bad.yaml").write_text("name: [")
    assert "not valid YAML" in user_error(capsys, "study", str(tmp_path / "bad.yaml"))


def test_modes_follow_the_training_config_schema():
    from gift.config import load_config

    assert {"single", "nested", "mixed"} <= set(config_modes())
    for mode in config_modes():
        assert Study(name="x", modes=[mode]).modes == [mode]
    with pytest.raises(ConfigError, match="task.mode"):
        load_config(None, ["task.mode=blended"])


def test_the_shipped_cpu_study_is_valid(monkeypatch):
    monkeypatch.chdir(REPO)
    path = REPO / "studies" / "nested-vs-mixed-cpu.yaml"
    raw = yaml.safe_load(path.read_text())
    assert {"nested", "mixed", "cst"} <= set(raw["modes"]) and len(raw["seeds"]) >= 3
    if (
        "cst" not in config_modes()
    ):  # until the config schema has task.mode=cst, the study says so in one line
        with pytest.raises(ConfigError, match=r"mode 'cst' is not a task.mode"):
            load_study(path)
        return
    cells = plan_cells(load_study(path))
    assert len(cells) == len(raw["modes"]) * len(raw["seeds"]) * len(raw["settings"])
    assert all("model.name=embedded" in c.overrides or c.config_path for c in cells)


def test_the_readme_study_example_is_valid():
    text = (REPO / "README.md").read_text().split("A study file names a grid", 1)[1]
    data = yaml.safe_load(text.split("```yaml", 1)[1].split("```", 1)[0])
    data["modes"] = [m for m in data["modes"] if m in config_modes()]
    study = Study.model_validate(data)
    assert study.slurm.gpus_per_node == 1 and study.eval.episodes == 100 and study.cores == 2


# ------------------------------------------------------------------------------------------------- the grid
def test_cells_carry_setting_mode_cell_and_seed_overrides_in_order(tmp_path):
    study = Study(
        name="g",
        out=str(tmp_path / "g"),
        settings={"a": ["task.preset=I2"], "b": ["task.preset=F+I1"]},
        modes=["nested", "mixed"],
        seeds=[4, 5],
        seed_overrides=["train.seed={seed}", "task.base_seed={seed}000"],
        overrides=["algo.lr=1e-5"],
        overrides_per_cell=[{"modes": ["mixed"], "seeds": [5], "overrides": ["task.groups=3"]}],
        threads_per_run=2,
        eval={"episodes": 7, "max_new_tokens": 9},
    )
    cells = {c.name: c for c in plan_cells(study)}
    assert sorted(cells) == sorted(f"{s}-{m}-s{k}" for s in "ab" for m in ("nested", "mixed") for k in (4, 5))
    cell = cells["b-mixed-s5"]
    o = list(cell.overrides)
    assert o.index("algo.lr=1e-5") < o.index("task.preset=F+I1") < o.index("task.mode=mixed")
    assert o.index("task.mode=mixed") < o.index("task.groups=3") < o.index("train.seed=5")
    assert "task.base_seed=5000" in o and "train.threads=2" in o and "train.run_name=b-mixed-s5" in o
    assert not any(
        "task.groups=3" in x for x in cells["b-mixed-s4"].overrides + cells["b-nested-s5"].overrides
    )
    assert cell.games == ("math-v0", "matrix-v0") and cells["a-nested-s4"].games == (
        "matrix-v0",
        "tictactoe-v0",
    )
    assert cell.eval["suites"] == ["math", "matrix"] and cell.eval["episodes"] == 7
    assert cell.eval["max_new_tokens"] == 9
    assert cell_state(cell) == "fresh"


def test_game_metric_reads_the_new_and_the_old_key_schemes():
    assert (
        game_metric({"game/matrix-v0/success": 0.5, "sub/matrix-v0/success": 0.1}, "matrix-v0", "success")
        == 0.5
    )
    assert game_metric({"sub/matrix-v0/success": 0.25}, "matrix-v0", "success") == 0.25
    assert game_metric({"task/matrix-v0/reward": -1}, "matrix-v0", "reward") == -1.0
    assert game_metric({"train/success": 0.75}, "matrix-v0", "success") is None
    assert game_metric({"train/success": 0.75}, "matrix-v0", "success", sole_game=True) == 0.75
    assert game_metric({"sub/matrix-v0/success": math.nan}, "matrix-v0", "success") is None


# ----------------------------------------------------------------------------------------------- statistics
def test_t_interval_and_bootstrap():
    ci = mean_ci([1.0, 2.0, 3.0])
    assert ci.mean == 2.0 and ci.n == 3
    assert ci.high - ci.mean == pytest.approx(4.303 / math.sqrt(3), rel=1e-4)
    assert math.isnan(mean_ci([1.0]).low) and mean_ci([]).n == 0
    assert abs(t_critical(31) - 2.0395) < 1e-3 and t_critical(30) > t_critical(31) > 1.96
    assert bootstrap_ci([0.2, 0.2, 0.2]).low == pytest.approx(0.2)
    x = np.random.default_rng(1).normal(1.0, 2.0, size=400)
    boot, normal = bootstrap_ci(list(x), 4000), mean_ci(list(x))
    assert boot.low == pytest.approx(normal.low, abs=0.05) and boot.high == pytest.approx(
        normal.high, abs=0.05
    )


# ------------------------------------------------------------------------------------------- end to end
def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def tiny_study(tiny_model_dir, tmp_path_factory):
    """A tiny study run once: one run is first trained to step 1 of 2 (an interrupted run), then the study runs."""
    from gift.config import load_config
    from gift.trainer import train

    root = tmp_path_factory.mktemp("study")
    path = write_study(
        root / "tiny.yaml",
        settings={"I2": ["task.preset=I2", I2_RAW]},
        modes=["nested", "mixed"],
        seeds=[0, 1],
        overrides=[f"model.name={tiny_model_dir}", *TINY_OVERRIDES],
        cores=2,
        eval={"episodes": 1},
        final_steps=1,
    )
    cells = {c.name: c for c in plan_cells(load_study(path))}
    interrupted = cells["I2-mixed-s1"]
    train(load_config(None, [*interrupted.overrides, "train.steps=1"]))
    first_row = read_metrics(Path(interrupted.run_dir) / "metrics.jsonl")[0]
    assert cell_state(interrupted) == "resume"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTHONPATH", child_pythonpath())
        assert gift_main(["study", str(path)]) == 0
    return {"path": path, "folder": root / "study", "cells": cells, "interrupted": interrupted,
            "first_row": first_row}  # fmt: skip


def test_tiny_study_writes_markdown_csv_and_png(tiny_study):
    folder = tiny_study["folder"]
    assert all(cell_state(c) == "done" for c in tiny_study["cells"].values())
    report = (folder / "report.md").read_text()
    assert "Runs finished: 4 of 4" in report and "## I2" in report and "![I2](curves-I2.png)" in report
    assert "### Held-out evaluation" in report and "nested − mixed" in report
    png = (folder / "curves-I2.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    for name in ("curves", "runs", "final", "paired"):
        assert read_csv(folder / f"{name}.csv"), name


def test_tiny_study_numbers_are_the_runs_numbers(tiny_study):
    folder, cells = tiny_study["folder"], tiny_study["cells"]
    metrics = {name: read_metrics(Path(c.run_dir) / "metrics.jsonl") for name, c in cells.items()}
    runs = read_csv(folder / "runs.csv")
    for name, cell in cells.items():
        last = metrics[name][-1]
        mine = {r["metric"]: float(r["value"]) for r in runs
                if r["mode"] == cell.mode and r["seed"] == str(cell.seed) and r["source"] == "train"}  # fmt: skip
        assert mine["train/reward"] == pytest.approx(last["train/reward"])
        assert mine["train/entropy"] == pytest.approx(last["train/entropy"])
        assert mine["game/tictactoe-v0/reward"] == pytest.approx(last["game/tictactoe-v0/reward"])
        results = json.loads((Path(cell.run_dir) / "eval" / "results.json").read_text())
        matrix = results["rows"][0]["cells"]["Matrix"]
        (held_out,) = [r for r in runs if r["mode"] == cell.mode and r["seed"] == str(cell.seed)
                       and r["metric"] == "game/matrix-v0/success" and r["source"] == "eval"]  # fmt: skip
        assert float(held_out["value"]) == pytest.approx(matrix["value"] / 100) and matrix["n"] == 1

    def reward(mode: str, seed: int, step: int) -> float:
        return next(r for r in metrics[f"I2-{mode}-s{seed}"] if r["step"] == step)["train/reward"]

    curves = read_csv(folder / "curves.csv")
    (point,) = [
        r for r in curves if r["mode"] == "mixed" and r["metric"] == "train/reward" and r["step"] == "2"
    ]
    values = [reward("mixed", s, 2) for s in (0, 1)]
    assert float(point["mean"]) == pytest.approx(np.mean(values)) and point["n"] == "2"
    half = t_critical(1) * np.std(values, ddof=1) / math.sqrt(2)
    assert float(point["high"]) - float(point["mean"]) == pytest.approx(half, abs=1e-9)
    final = read_csv(folder / "final.csv")
    (row,) = [
        r for r in final if r["mode"] == "nested" and r["metric"] == "train/reward" and r["source"] == "train"
    ]
    assert float(row["mean"]) == pytest.approx(np.mean([reward("nested", s, 2) for s in (0, 1)]))
    (pair,) = [
        r for r in read_csv(folder / "paired.csv") if r["metric"] == "train/reward" and r["source"] == "train"
    ]
    assert (pair["mode_a"], pair["mode_b"], pair["seeds"]) == ("nested", "mixed", "0 1")
    diffs = [reward("nested", s, 2) - reward("mixed", s, 2) for s in (0, 1)]
    assert float(pair["mean"]) == pytest.approx(np.mean(diffs))
    assert min(diffs) - 1e-9 <= float(pair["low"]) <= float(pair["high"]) <= max(diffs) + 1e-9


def test_an_interrupted_run_resumes_from_its_checkpoint(tiny_study):
    cell = tiny_study["interrupted"]
    rows = read_metrics(Path(cell.run_dir) / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0] == tiny_study["first_row"], "step 1 was trained again instead of resumed"
    assert f"--resume {cell.run_dir}" in Path(cell.log).read_text()
    fresh = tiny_study["cells"]["I2-mixed-s0"]
    assert "--resume" not in Path(fresh.log).read_text()


def test_a_rerun_skips_finished_runs(tiny_study, capsys):
    logs = {n: Path(c.log).read_text() for n, c in tiny_study["cells"].items()}
    stamps = {
        n: (Path(c.run_dir) / "metrics.jsonl").stat().st_mtime_ns for n, c in tiny_study["cells"].items()
    }
    start = time.monotonic()
    assert gift_main(["study", str(tiny_study["path"])]) == 0
    assert time.monotonic() - start < 15
    assert "4 run(s), 4 already done" in capsys.readouterr().err
    for name, cell in tiny_study["cells"].items():
        assert Path(cell.log).read_text() == logs[name]
        assert (Path(cell.run_dir) / "metrics.jsonl").stat().st_mtime_ns == stamps[name]
    assert "Runs finished: 4 of 4" in (tiny_study["folder"] / "report.md").read_text()


def test_dry_run_lists_each_run_and_runs_nothing(tiny_study, capsys):
    assert gift_main(["study", str(tiny_study["path"]), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert all(f"{name}: done" in err for name in tiny_study["cells"])
    cell = tiny_study["cells"]["I2-nested-s1"]
    results = Path(cell.eval_dir) / "results.json"
    results.rename(results.with_suffix(".bak"))
    try:  # trained but not evaluated: only the evaluation is left to do
        assert cell_state(cell) == "evaluate"
        assert gift_main(["study", str(tiny_study["path"]), "--dry-run"]) == 0
        assert "I2-nested-s1: evaluate" in capsys.readouterr().err
    finally:
        results.with_suffix(".bak").rename(results)


def test_an_interrupted_evaluation_is_continued(tmp_path):
    from gift.study.evaluate import eval_argv

    argv = eval_argv("runs/x", str(tmp_path), ["matrix"], 5, 8, 0.5, ["--seeds", "2"])
    assert argv[:6] == ["--model", "runs/x", "--suite", "matrix", "--episodes", "5"]
    assert "--resume" not in argv and argv[-2:] == ["--seeds", "2"]
    (tmp_path / "items.jsonl").write_text("")
    assert "--resume" in eval_argv("runs/x", str(tmp_path), ["matrix"], 5, 8, 0.5)


def _job_processes(folder: Path) -> list[int]:
    """Pids of the submitit task processes running jobs of `folder` (the processes that handle the signal)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if "submitit.core._submit" in command and str(folder) in command:
            pids.append(int(proc.name))
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the job process through /proc")
def test_submitit_job_is_requeued_on_preemption_and_resumes(tiny_model_dir, tmp_path, monkeypatch):
    """Through `gift study` with submitit's local executor: the job gets the preemption signal after its first
    checkpoint, requeues itself, and the requeued job resumes the run to the end."""
    import signal
    import threading

    pytest.importorskip("submitit")
    monkeypatch.setenv("PYTHONPATH", child_pythonpath())
    game = ["task.preset=null", "task.games=[matrix-v0]", "task.game_options={matrix-v0: {parser: raw}}"]
    path = write_study(
        tmp_path / "slurm.yaml",
        settings={"one": game},
        modes=["single"],
        seeds=[0],
        overrides=[f"model.name={tiny_model_dir}", *TINY_OVERRIDES, "train.steps=3", "train.save_every=1"],
        executor="slurm",
        slurm={"cluster": "local", "gpus_per_node": 0, "time": 10},
        eval={"episodes": 0},
    )
    (cell,) = plan_cells(load_study(path))
    status: list[int] = []
    study = threading.Thread(target=lambda: status.append(gift_main(["study", str(path)])))
    study.start()
    deadline = time.monotonic() + 120
    from gift.study.cells import trained_steps

    while trained_steps(cell.run_dir) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert trained_steps(cell.run_dir) >= 1, Path(cell.log).read_text()[-2000:]
    (pid,) = _job_processes(tmp_path / "study" / "slurm")
    os.kill(pid, signal.SIGUSR2)
    study.join(timeout=180)
    assert status == [0]
    assert cell_state(cell) == "done" and trained_steps(cell.run_dir) == 3
    log = Path(cell.log).read_text()
    assert log.count("$ gift train") == 2 and f"$ gift train --resume {cell.run_dir}" in log
    rows = read_metrics(Path(cell.run_dir) / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    jobs = json.loads((tmp_path / "study" / "jobs.json").read_text())
    assert list(jobs) == [cell.name]
    (success,) = [
        r for r in read_csv(tmp_path / "study" / "runs.csv") if r["metric"] == "game/matrix-v0/success"
    ]
    window = [r["train/success"] for r in rows]  # final_steps: 5 (all 3); one game: train/ is the game
    assert float(success["value"]) == pytest.approx(sum(window) / len(window))


def test_held_out_scores_and_reference_rows_are_read_from_results_json(tmp_path):
    from gift.study.evaluate import read_scores

    cell = {"suite": "matrix-v0", "value": 25.0, "low": 10.0, "high": 40.0, "n": 20}
    rows = [
        {"model": "runs/x", "cells": {"Matrix": cell, "MATH": None}},
        {"model": "best constant", "cells": {"Matrix": {**cell, "value": 52.0, "n": 4000}}},
    ]
    (tmp_path / "results.json").write_text(json.dumps({"rows": rows}))
    scores, references = read_scores(tmp_path)
    assert list(scores) == ["matrix-v0"] and scores["matrix-v0"].value == 0.25 and scores["matrix-v0"].n == 20
    assert references["best constant"]["matrix-v0"].value == pytest.approx(0.52)
    assert read_scores(tmp_path / "absent") == ({}, {})


def test_a_failed_run_is_named_and_the_study_exits_1(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", child_pythonpath())
    path = write_study(
        tmp_path / "f.yaml",
        settings={"one": ["task.preset=I2"]},
        modes=["nested"],
        seeds=[0],
        overrides=[f"model.name={tmp_path / 'no-such-model'}", *TINY_OVERRIDES],
        cores=1,
    )
    assert gift_main(["study", str(path)]) == 1
    err = capsys.readouterr().err
    assert "one-nested-s0: fresh FAILED (exit 2)" in err and "1 run(s) failed: one-nested-s0" in err
    assert "Runs finished: 0 of 1" in (tmp_path / "study" / "report.md").read_text()
