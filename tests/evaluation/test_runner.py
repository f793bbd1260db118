"""The runner's parts: checking a plan before any model loads, the resumable store, and loading checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gift.errors import ConfigError
from gift.evaluation.loading import load_model, resolve_source
from gift.evaluation.plan import EXPLOIT_SUITE, EvalConfig, default_source, expand_suites, prepare
from gift.evaluation.store import ITEMS_FILE, ResultStore
from tests.evaluation.scripted import single_thread_torch  # noqa: F401

DATA = Path(__file__).parent / "data"


# ---- plan ----------------------------------------------------------------------------------------------------------
def test_suites_expand_and_unknown_ones_are_rejected() -> None:
    assert expand_suites(["games", "math", "spy"]) == [
        "matrix-v0", "matrix-balanced-v0", "tictactoe-v0", "spy-v0", "math"
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="unknown suite 'chess'; allowed: games"):
        expand_suites(["chess"])


def test_default_data_files_are_found_under_the_data_dir(tmp_path) -> None:
    (tmp_path / "mmlu_pro.jsonl").write_text((DATA / "mmlu_pro.jsonl").read_text())
    (tmp_path / "mmlu").mkdir()
    assert default_source("mmlu-pro", str(tmp_path)) == str(tmp_path / "mmlu_pro.jsonl")
    assert default_source("mmlu", str(tmp_path)) == str(tmp_path / "mmlu")
    assert default_source("socialiqa", str(tmp_path)) is None


def test_prepare_reads_data_builds_jobs_and_falls_back_to_generated_math(tiny_model_dir, tmp_path) -> None:
    cfg = EvalConfig(
        models=[tiny_model_dir],
        suites=["games", "math", "mmlu"],
        data={"mmlu": str(DATA / "mmlu.jsonl")},
        data_dir=str(tmp_path / "none"),
        episodes={"matrix-v0": 4},
        default_episodes=2,
        opponents={"tictactoe-v0": "perfect"},
        limit=3,
        out=str(tmp_path / "out"),
        exploitability=True,
    )
    plan = prepare(cfg)
    jobs = {j.suite: j for j in plan.games}
    assert list(jobs) == [
        "math-v0",
        "matrix-v0",
        "matrix-balanced-v0",
        "tictactoe-v0",
        "spy-v0",
    ]  # no extra games: the opponent is perfect
    assert jobs["matrix-v0"].episodes == 4 and jobs["spy-v0"].episodes == 2 and jobs["math-v0"].episodes == 3
    assert jobs["tictactoe-v0"].options == {"opponent": "perfect", "opponent_tries": 1, "start": "empty"}
    assert [it.gold for it in plan.benchmarks["mmlu"]] == ["B", "A", "C"]
    assert any("built-in generator" in note for note in plan.notes)
    assert plan.judge is None and "commongen" not in plan.benchmarks

    cfg.opponents = {}
    cfg.out = str(tmp_path / "out2")
    extra = {j.suite: j for j in prepare(cfg).games}[EXPLOIT_SUITE]
    assert extra.game_id == "tictactoe-v0" and extra.options["opponent"] == "perfect"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"opponents": {"tictactoe-v0": "grandmaster"}}, "unknown opponent 'grandmaster'"),
        ({"data": {"mmlu": "/nowhere/mmlu.jsonl"}, "suites": ["mmlu"]}, "does not exist"),
        ({"suites": ["socialiqa"]}, "socialiqa: no data; put the items at"),
        ({"judge": {"base_url": "not a url", "model": "j"}, "suites": ["commongen"],
          "data": {"commongen": str(DATA / "commongen.jsonl")}}, "base_url"),
        ({"models": []}, "--model is required"),
        ({"temperature": -1.0}, "--temperature"),
        ({"episodes": {"matrix-v0": 0}, "suites": ["matrix"]}, "--episodes matrix-v0=0"),
        ({"harness": "lm-eval", "tasks": ["mmlu"]}, r"install lm-eval \(pip install lm-eval\)"),
        ({"resume": True, "out": None}, "--resume needs --out"),
        ({"opponents": {"tictactoe-v0": {"kind": "model", "path": "/no/such/ckpt"}}}, "no such folder"),
    ],
)  # fmt: skip
def test_prepare_rejects_bad_values_with_one_line(changes, message, tiny_model_dir, tmp_path) -> None:
    cfg = EvalConfig(
        models=[tiny_model_dir], suites=["tictactoe"], data_dir=str(tmp_path), out=str(tmp_path / "o")
    )
    for key, value in changes.items():
        setattr(cfg, key, value)
    with pytest.raises(ConfigError, match=message) as err:
        prepare(cfg)
    assert "\n" not in str(err.value)


# ---- store ---------------------------------------------------------------------------------------------------------
def rec(item: str, seed: int = 1, correct: bool = True) -> dict:
    return {"model": "m", "suite": "mmlu", "item": item, "seed": seed, "correct": correct}


def test_store_appends_skips_and_selects(tmp_path) -> None:
    store = ResultStore(tmp_path, resume=False, settings={"temperature": 0.5})
    store.add([rec("a"), rec("b", correct=False)])
    store.add([rec("a", seed=2)])
    assert (
        store.has("m", "mmlu", "a", 1)
        and store.has("m", "mmlu", "a", 2)
        and not store.has("m", "mmlu", "c", 1)
    )
    assert [r["item"] for r in store.select("m", "mmlu", ["b", "a", "c"], [1])] == ["b", "a"]
    with pytest.raises(ConfigError, match="pass --resume"):
        ResultStore(tmp_path, resume=False, settings={})
    again = ResultStore(tmp_path, resume=True, settings={"temperature": 0.5})
    assert len(again.records) == 3


def test_store_drops_a_line_cut_by_a_crash(tmp_path) -> None:
    store = ResultStore(tmp_path, resume=False, settings={})
    store.add([rec("a")])
    with (tmp_path / ITEMS_FILE).open("a") as fh:
        fh.write('{"model": "m", "suite": "mm')  # the process died mid-line
    resumed = ResultStore(tmp_path, resume=True, settings={})
    assert list(resumed.records) == [("m", "mmlu", "a", 1)]
    resumed.add([rec("b")])
    lines = (tmp_path / ITEMS_FILE).read_text().splitlines()
    assert [json.loads(line)["item"] for line in lines] == ["a", "b"]


def test_resume_refuses_other_settings_but_accepts_new_games(tmp_path) -> None:
    first = ResultStore(tmp_path, resume=False, settings={"temperature": 0.5, "opponents": {"spy-v0": "bot"}})
    first.write_settings({"temperature": 0.5, "opponents": {"spy-v0": "bot"}})
    first.add([rec("a")])
    with pytest.raises(ConfigError, match="temperature=0.5, now 0.0"):
        ResultStore(tmp_path, resume=True, settings={"temperature": 0.0})
    with pytest.raises(ConfigError, match=r"opponents\[spy-v0\]"):
        ResultStore(tmp_path, resume=True, settings={"opponents": {"spy-v0": "openai"}})
    ok = ResultStore(tmp_path, resume=True, settings={"temperature": 0.5, "opponents": {"matrix-v0": "None"}})
    ok.write_settings({"temperature": 0.5, "opponents": {"matrix-v0": "None"}})
    saved = json.loads((tmp_path / "settings.json").read_text())
    assert saved["opponents"] == {"spy-v0": "bot", "matrix-v0": "None"}


# ---- loading -------------------------------------------------------------------------------------------------------
def _lora_run(tiny_model_dir: str, root: Path) -> Path:
    """A run folder whose latest checkpoint holds only a LoRA adapter with non-zero weights (and the tokenizer)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(base, lora)
    ckpt = root / "checkpoints" / "step-000003"
    model.save_pretrained(ckpt)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(ckpt)
    (root / "checkpoints" / "latest").write_text("step-000003")
    return ckpt


@pytest.mark.usefixtures("single_thread_torch")
def test_a_lora_checkpoint_loads_as_base_plus_merged_adapter(tiny_model_dir, tmp_path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ckpt = _lora_run(tiny_model_dir, tmp_path / "run")
    source = resolve_source(str(tmp_path / "run"))  # a run folder: its latest checkpoint
    assert source.adapter == str(ckpt) and source.weights == tiny_model_dir and source.tokenizer == str(ckpt)
    assert resolve_source(str(ckpt)).adapter == str(ckpt)

    loaded = load_model(source, max_batch=2)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    reference = PeftModel.from_pretrained(base, str(ckpt)).eval()
    with torch.no_grad():
        merged_logits = loaded.model(ids).logits
        adapter_logits = reference(ids).logits
        base_logits = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)(ids).logits
    assert torch.allclose(merged_logits, adapter_logits, atol=1e-5)
    assert not torch.allclose(merged_logits, base_logits, atol=1e-3)  # the adapter really changed the model
    assert not hasattr(loaded.model, "peft_config")  # merged into a plain model
    sample = loaded.backend.generate([loaded.codec.prompt_ids([{"role": "user", "content": "hi"}])], 4, 0.0)
    assert len(sample) == 1 and 1 <= len(sample[0].token_ids) <= 4


def test_model_values_that_name_nothing_fail_clearly(tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no config.json, no adapter_config.json and no checkpoints/latest"):
        resolve_source(str(tmp_path / "empty"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "adapter_config.json").write_text("{}")
    with pytest.raises(ConfigError, match="names no base_model_name_or_path"):
        resolve_source(str(tmp_path / "bad"))
    assert resolve_source("Qwen/Qwen2.5-1.5B-Instruct").weights == "Qwen/Qwen2.5-1.5B-Instruct"
