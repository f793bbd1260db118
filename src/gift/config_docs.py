"""The configuration reference, generated from the schema so that it cannot drift from the code.

    python -m gift.config_docs            # rewrite docs/configuration.md
    python -m gift.config_docs --check    # exit 1 when the file is out of date

Every key of `gift.config.Config` is listed with its type, its default (the defaults of `Config()`, so a section
default such as `task.preset: F+I1` shows as it applies) and where that default comes from, read from the
field's docstring: the first parenthesised remark naming a source (paper, code, verl, DAPO, …).
"""

from __future__ import annotations

import argparse
import re
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

DEFAULT_PATH = Path("docs") / "configuration.md"
_SOURCE_WORDS = ("paper", "code", "verl", "DAPO", "RAGEN", "ours", "Liu", "Ye et al", "a common choice")
_SOURCE = re.compile(r"\(([^()]*(?:" + "|".join(re.escape(w) for w in _SOURCE_WORDS) + r")[^()]*)\)")
_CONSTRAINTS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))
HEADER = """# Configuration reference

Generated from the schema in `src/gift/config.py` by `python -m gift.config_docs`; do not edit by hand (a test
fails when this file is out of date). A run reads one YAML file and `key=value` overrides, e.g.
`gift train configs/nested-fi1-qwen1.5b.yaml algo.lr=2e-6 train.steps=50`. "paper" refers to GIFT (Lyu et al.,
arXiv 2601.05633); "code" to the authors' released configs.
"""


def _section_type(annotation: Any) -> type[BaseModel] | None:
    """The settings class of a section field (also `X | None`), else None."""
    candidates = [annotation, *typing.get_args(annotation)]
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def type_text(field: FieldInfo) -> str:
    """A short type: `int ≥ 1`, `single | nested | mixed`, `str or null`."""
    annotation = field.annotation
    if _section_type(annotation) is not None:
        return "section or null" if type(None) in typing.get_args(annotation) else "section"
    if typing.get_origin(annotation) is typing.Literal:
        text = " | ".join(str(a) for a in typing.get_args(annotation))
    else:
        args = typing.get_args(annotation)
        literal = [a for a in args if typing.get_origin(a) is typing.Literal]
        if literal:
            text = " | ".join(str(a) for a in typing.get_args(literal[0]))
            text += " or null" if type(None) in args else ""
        else:
            text = re.sub(r"\btyping\.|\bNoneType\b", lambda m: "null" if m.group(0) == "NoneType" else "",
                          getattr(annotation, "__name__", None) if not args else str(annotation))  # fmt: skip
            text = text.replace(" | None", " or null").replace(" | null", " or null")
    for meta in field.metadata:
        for name, sign in _CONSTRAINTS:
            if getattr(meta, name, None) is not None:
                text += f" {sign} {getattr(meta, name)}"
    return text


def default_text(value: Any) -> str:
    """A default as it is written in YAML."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000).strip()
    return text.removesuffix("\n...").strip()


def source_text(doc: str) -> str:
    """Where a default comes from, as its docstring says: the first parenthesised source after "Default" (or
    anywhere when the docstring has no "Default"); `gift-rl` when it names none (the project's own choice)."""
    at = doc.rfind("Default")
    match = _SOURCE.search(doc[at:] if at >= 0 else doc)
    return " ".join(match.group(1).split()) if match else "gift-rl"


def _walk(cls: type[BaseModel], defaults: Any, prefix: str) -> Iterator[tuple[str, FieldInfo, Any, bool]]:
    """(dotted key, field, default, is_section) for every field, sections before their keys."""
    for name, field in cls.model_fields.items():
        key = f"{prefix}{name}"
        value = defaults.get(name) if isinstance(defaults, dict) else None
        section = _section_type(field.annotation)
        yield key, field, value, section is not None
        if section is not None:
            inner = value if isinstance(value, dict) else section.model_construct().model_dump(mode="json")
            yield from _walk(section, inner, key + ".")


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render(config_cls: type[BaseModel] | None = None) -> str:
    """The whole reference as Markdown: one table per top-level section."""
    if config_cls is None:
        from gift.config import Config as config_cls
    defaults = config_cls().model_dump(mode="json")
    lines = [HEADER]
    for key, field, value, is_section in _walk(config_cls, defaults, ""):
        doc = field.description or ""
        if "." not in key:
            lines += (
                ["", f"## `{key}`", "", _cell(doc) if doc else "", ""] if doc else ["", f"## `{key}`", ""]
            )
            lines += ["| Key | Type | Default | Source | Description |", "|---|---|---|---|---|"]
            continue
        default = "(section)" if is_section and isinstance(value, dict) else f"`{_cell(default_text(value))}`"
        lines.append(
            f"| `{key}` | {_cell(type_text(field))} | {default} | {_cell(source_text(doc))} | {_cell(doc)} |"
        )
    return "\n".join(line for line in lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gift.config_docs", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DEFAULT_PATH), help=f"file to write (default {DEFAULT_PATH})")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs from the schema")
    args = parser.parse_args(argv)
    text, path = render(), Path(args.out)
    if args.check:
        current = path.read_text() if path.is_file() else ""
        if current != text:
            print(f"{path} is out of date; run python -m gift.config_docs", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
