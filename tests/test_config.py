"""Config loading: YAML + overrides, typed values, and one-line errors for every kind of bad input."""

from __future__ import annotations

import pytest

from gift.config import Config, correction_mode, load_config
from gift.errors import ConfigError


def test_defaults_follow_the_paper():
    cfg = load_config()
    assert cfg.algo.clip_low == 0.2 and cfg.algo.clip_high == 0.28
    assert cfg.algo.dual_clip == 3.0 and cfg.algo.entropy_coef == 0.001
    assert cfg.algo.kl_coef == 0.0 and cfg.algo.keep_ratio == 0.25 and cfg.algo.lr == 1e-6
    assert cfg.task.group_size == 16 and cfg.task.base_seed == 10000
    assert cfg.rollout.temperature == 1.0


def test_every_field_documents_its_default():
    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no docstring"
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, Config.__base__) and ann is not Config:
                walk(ann)

    for section in ("model", "task", "rollout", "algo", "train"):
        walk(type(getattr(Config(), section)))


def test_yaml_and_overrides(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("task:\n  preset: F+I3\n  groups: 4\nalgo:\n  lr: 2.0e-6\n")
    cfg = load_config(path, ["algo.lr=1e-5", "task.groups=2", "model.lora.r=8", "task.games=[matrix-v0]"])
    assert cfg.algo.lr == 1e-5 and cfg.task.groups == 2 and cfg.task.preset == "F+I3"
    assert cfg.model.lora is not None and cfg.model.lora.r == 8 and cfg.model.lora.alpha == 32
    assert cfg.task.games == ["matrix-v0"]


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["algo.foo=1"], "unknown config key 'algo.foo'; allowed under algo: estimator"),
        (["nope=1"], "unknown config key 'nope'"),
        (["algo.clip_low=-1"], "algo.clip_low=-1"),
        (["algo.estimator=ppo"], "'grpo', 'drgrpo' or 'rloo'"),
        (["task.mode=bad"], "task.mode='bad' is not allowed"),
        (["train.steps=abc"], "train.steps='abc'"),
        (["task.preset=null"], "set task.preset"),
        (["algo"], "must look like section.key=value"),
        (["algo.is_correction=tis"], "algo.is_correction='tis' is not allowed"),
        (["algo.is_cap=0.5"], "algo.is_cap=0.5"),
        (["algo.is_band=[1.01,0.99]"], "algo.is_band=[1.01, 0.99]: must be [low, high] with 0 < low < 1 < high"),
        (["train.max_staleness=2"], "train.max_staleness=2"),
        (
            ["algo.is_correction=token_truncate", "rollout.temperature=0.7"],
            "compares log-probs at temperature 1, but rollout.temperature=0.7",
        ),
    ],
)
def test_bad_values_are_one_clear_line(overrides, fragment):
    with pytest.raises(ConfigError) as err:
        load_config(None, overrides)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)


@pytest.mark.parametrize(
    ("overrides", "mode"),
    [
        ([], "off"),
        (["rollout.backend=vllm"], "sequence_mask"),
        (["train.max_staleness=1"], "sequence_mask"),
        (["rollout.backend=vllm", "rollout.temperature=0.7"], "off"),
        (["algo.is_correction=token_truncate"], "token_truncate"),
    ],
)
def test_auto_importance_correction_is_trls_default_off_policy_and_off_for_hf(overrides, mode):
    assert correction_mode(load_config(None, overrides)) == mode
