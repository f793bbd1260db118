"""docs/configuration.md is generated from the schema and must match it: every key, its default and source."""

from __future__ import annotations

from pathlib import Path

from gift.config import Config
from gift.config_docs import DEFAULT_PATH, main, render, source_text

ROOT = Path(__file__).resolve().parents[1]


def _keys(cls, prefix=""):
    from gift.config_docs import _section_type

    for name, field in cls.model_fields.items():
        yield f"{prefix}{name}"
        section = _section_type(field.annotation)
        if section is not None:
            yield from _keys(section, f"{prefix}{name}.")


def test_the_committed_reference_is_up_to_date():
    committed = (ROOT / DEFAULT_PATH).read_text()
    assert committed == render(), "docs/configuration.md is out of date: run python -m gift.config_docs"


def test_every_key_appears_with_its_default():
    text = render()
    for key in _keys(Config):
        if "." in key:
            assert f"| `{key}` |" in text, key
    assert (
        "| `task.preset` | F+I1 \\| F+I2 \\| F+I3 \\| I2 or null | `F+I1` |" in text
    )  # the section's default
    assert "| `algo.lr` | float > 0.0 | `1.0e-06` | verl default used by the code; not in the paper |" in text
    assert "| `model.lora.r` | int ≥ 1 | `16` |" in text  # keys of an optional section


def test_source_is_read_from_the_docstring():
    assert source_text("Clip. Default 0.2 (code; DAPO).") == "code; DAPO"
    assert source_text("Mode (the paper's name). Default nested.") == "gift-rl"
    assert source_text("None trains all weights (paper: full fine-tuning).") == "paper: full fine-tuning"


def test_check_mode_fails_on_a_stale_file(tmp_path, capsys):
    stale = tmp_path / "configuration.md"
    stale.write_text("old\n")
    assert main(["--out", str(stale), "--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    assert main(["--out", str(stale)]) == 0
    assert main(["--out", str(stale), "--check"]) == 0
