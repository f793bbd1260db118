"""A run's checkpoint is evaluated and watched the way it was trained: its system prompt, instruction, parser,
reply prefix and reply cap, unless told otherwise."""

from __future__ import annotations

import json
from io import StringIO

from gift.config import load_config
from gift.evaluation.cli import cli_main
from gift.play import run_play
from gift.trainer import train
from tests.evaluation.scripted import scripted_loader

INSTRUCTION = "Reply with the number only."


def _raw_run(tiny_model_dir: str, tmp_path) -> str:
    cfg = load_config(None, [
        f"model.name={tiny_model_dir}", "task.preset=null", "task.mode=single", "task.games=[matrix-v0]",
        "task.game_options={matrix-v0: {parser: raw}}", "task.groups=1", "task.group_size=2",
        f"rollout.instruction={INSTRUCTION}", "rollout.system_prompt=Answer briefly.", "rollout.max_new_tokens=2",
        "rollout.max_context=1024", "algo.mini_batch_size=2", "algo.micro_batch_size=2", "algo.keep_ratio=1.0",
        f"train.run_dir={tmp_path}", "train.run_name=raw", "train.progress=false", "train.plots=false",
        "train.tensorboard=false", "train.threads=1", "train.steps=1",
    ])  # fmt: skip
    return str(train(cfg))


def test_eval_of_a_run_uses_its_prompt_settings_and_says_so(tiny_model_dir, tmp_path, capsys):
    run_dir = _raw_run(tiny_model_dir, tmp_path)
    loader = scripted_loader(lambda prompt: "2")
    out = tmp_path / "eval"
    args = ["--model", run_dir, "--suite", "matrix", "--episodes", "3", "--no-baselines", "--out", str(out)]
    assert cli_main(args, model_loader=loader) == 0
    assert "the run's prompt settings" in capsys.readouterr().err
    prompts = loader.backends[run_dir].prompts
    assert prompts and all(INSTRUCTION in p and "Answer briefly." in p and "<answer>" not in p for p in prompts)
    items = [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]
    # Parsed raw, as in training: a bare "2" is an answer (under the tag protocol it would be a format error).
    assert items and all(r["format_errors"] == 0 for r in items)

    default = tmp_path / "eval-default"
    loader = scripted_loader(lambda prompt: "2")
    assert cli_main([*args[:-1], str(default), "--no-run-prompt"], model_loader=loader) == 0
    assert all("<answer>" in p for p in loader.backends[run_dir].prompts)


def test_watching_a_run_plays_with_its_prompt_settings(tiny_model_dir, tmp_path):
    run_dir = _raw_run(tiny_model_dir, tmp_path)
    screen = StringIO()
    assert run_play("matrix-v0", seat="watch", model=run_dir, seed=3, out=screen) == 0
    text = screen.getvalue()
    assert "plays with the run's prompt settings" in text and "=== Game over:" in text
    assert "end reason: invalid_action" in text or "end reason: correct" in text or "end reason: wrong" in text
