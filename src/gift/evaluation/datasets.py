"""Benchmark items from local files or the Hugging Face hub, normalised to one `BenchmarkItem` shape.

A source is a local path (.jsonl, .json, .parquet, .csv, or a folder of such files, e.g. MMLU's raw CSVs) or
"hf:<name>[:<config>][:<split>]", loaded with the `datasets` package only when asked for. With a single extra
part, a common split name (train, test, validation, …) is read as the split, anything else as the config.

Rows may use the field names of the public datasets: MMLU (question / choices / answer index or letter),
MMLU-Pro (question / options / answer letter or answer_index), SocialIQA (context / question / answerA–C /
label 1–3, *one-based*), MATH500 (problem / answer) and CommonGen (concepts or concept_set / references,
human_annotations or target; rows sharing a concept set are merged into one item with every reference).
Bad data stops the run early with a one-line `ConfigError` naming the row and field.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gift.errors import ConfigError, check_choice
from gift.evaluation.scorers import LETTERS, concept_text, last_boxed

BENCHMARKS = ("math500", "mmlu", "mmlu-pro", "socialiqa", "commongen")
MULTIPLE_CHOICE = {"mmlu": 4, "mmlu-pro": 10, "socialiqa": 3}
"""Most options each multiple-choice benchmark has (some MMLU-Pro items have fewer)."""
SUGGESTED_HF_SOURCES = {
    "math500": "hf:HuggingFaceH4/MATH-500:test",
    "mmlu": "hf:cais/mmlu:all:test",
    "mmlu-pro": "hf:TIGER-Lab/MMLU-Pro:test",
    "socialiqa": "hf:allenai/social_i_qa:validation",
    "commongen": "hf:allenai/commongen_lite_eval:train",
}
"""Hub names matching the paper's evaluation sets, for help texts; their availability is the hub's business."""
DEFAULT_SPLITS = {
    "math500": "test",
    "mmlu": "test",
    "mmlu-pro": "test",
    "socialiqa": "validation",
    "commongen": "train",
}
FILE_TYPES = (".jsonl", ".json", ".parquet", ".csv")
_SPLIT_NAMES = {"train", "test", "validation", "valid", "val", "dev", "eval"}
_ID_FIELDS = ("id", "unique_id", "question_id", "concept_set_idx", "idx")
_ERROR_CHARS = 200


@dataclass(frozen=True)
class BenchmarkItem:
    """One evaluation item, whatever file or hub dataset it came from."""

    benchmark: str
    id: str
    question: str
    """Question text (SocialIQA: the context, then the question; CommonGen: empty, the prompt is built)."""
    options: tuple[str, ...] = ()
    gold: str = ""
    """The correct letter for multiple choice, the reference answer for math500, "" for CommonGen."""
    concepts: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """Extra fields worth reporting per group (subject, category, level…)."""

    @property
    def n_options(self) -> int:
        return len(self.options)

    @property
    def is_multiple_choice(self) -> bool:
        return self.benchmark in MULTIPLE_CHOICE


# ---------------------------------------------------------------------------------------------- sources
def parse_hf_source(source: str, benchmark: str) -> tuple[str, str | None, str]:
    """(name, config, split) from "hf:<name>[:<config>][:<split>]"; the split defaults per benchmark."""
    parts = re.split(r":(?![^\[]*\])", source[3:])  # a split slice such as test[:100] keeps its colon
    if not parts[0] or len(parts) > 3 or any(not p for p in parts):
        raise ConfigError(f"source={source!r} is malformed; use hf:<name>[:<config>][:<split>]")
    name, config, split = parts[0], None, DEFAULT_SPLITS[benchmark]
    if len(parts) == 3:
        config, split = parts[1], parts[2]
    elif len(parts) == 2:
        if parts[1].split("[")[0].lower() in _SPLIT_NAMES:
            split = parts[1]
        else:
            config = parts[1]
    return name, config, split


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:_ERROR_CHARS]


def _load_hf(source: str, benchmark: str) -> list[dict[str, Any]]:
    name, config, split = parse_hf_source(source, benchmark)
    try:
        import datasets
    except ImportError as err:
        raise ConfigError(f"source={source!r} needs the `datasets` package; pip install datasets") from err
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as err:
        raise ConfigError(
            f"could not load {source!r} ({type(err).__name__}: {_first_line(err)}); "
            "download the data and pass a local file instead"
        ) from err
    return [dict(row) for row in ds]


def _read_jsonl(path: Path) -> list[Any]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ConfigError(f"{path}:{lineno}: not valid JSON ({err.msg})") from err
    return rows


def _read_json(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from err
    if isinstance(data, dict):
        for key in ("data", "rows", "items", "examples"):
            if isinstance(data.get(key), list):
                return data[key]
        columns = list(data.values())
        if columns and all(isinstance(c, list) and len(c) == len(columns[0]) for c in columns):
            return [dict(zip(data, values, strict=True)) for values in zip(*columns, strict=True)]
    if isinstance(data, list):
        return data
    raise ConfigError(f"{path}: expected a list of rows, a {{'data': [...]}} object or a dict of columns")


def _read_csv(path: Path, benchmark: str) -> list[Any]:
    with path.open(encoding="utf-8", newline="") as f:
        table = list(csv.reader(f))
    if not table:
        return []
    header = [h.strip() for h in table[0]]
    known = {name for names in _QUESTION_FIELDS.values() for name in names} | {"concepts", "concept_set"}
    if known & set(header):
        return [
            dict(zip(header, row, strict=False)) for row in table[1:] if any(cell.strip() for cell in row)
        ]
    if benchmark == "mmlu" and len(header) == 6:
        # MMLU's raw CSVs have no header: question, A, B, C, D, answer letter.
        subject = path.stem.removesuffix("_test").removesuffix("_dev").removesuffix("_val")
        cols = ("question", "A", "B", "C", "D", "answer")
        return [{**dict(zip(cols, row, strict=True)), "subject": subject} for row in table if len(row) == 6]
    raise ConfigError(f"{path}: the CSV header {header[:6]} names no question field for {benchmark}")


def _read_parquet(path: Path) -> list[Any]:
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise ConfigError(f"{path}: reading .parquet needs pyarrow; pip install pyarrow") from err
    return pq.read_table(path).to_pylist()


def _read_file(path: Path, benchmark: str) -> list[Any]:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        return _read_json(path)
    if suffix == ".csv":
        return _read_csv(path, benchmark)
    if suffix == ".parquet":
        return _read_parquet(path)
    raise ConfigError(
        f"{path}: file type {suffix or '(none)'!r} is not supported; use one of {', '.join(FILE_TYPES)}"
    )


def _load_local(source: str, benchmark: str) -> list[tuple[str, int, Any]]:
    """(file label, row number, row) for every row of a file or a folder of files."""
    path = Path(source).expanduser()
    if not path.exists():
        raise ConfigError(
            f"{benchmark}: data file {str(path)!r} does not exist; put the {benchmark} items there "
            f"({'/'.join(FILE_TYPES)}) or pass an hf: source such as {SUGGESTED_HF_SOURCES[benchmark]!r} "
            "when a model hub is reachable"
        )
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in FILE_TYPES)
        if not files:
            raise ConfigError(f"{benchmark}: folder {str(path)!r} holds no {'/'.join(FILE_TYPES)} files")
    else:
        files = [path]
    return [(str(f), i, row) for f in files for i, row in enumerate(_read_file(f, benchmark))]


# ---------------------------------------------------------------------------------------------- normalising
_QUESTION_FIELDS = {
    "mmlu": ("question",),
    "mmlu-pro": ("question",),
    "socialiqa": ("question",),
    "math500": ("problem", "question"),
}
_ANSWER_FIELDS = ("answer", "gt_answer", "ground_truth", "final_answer", "gold")
_REFERENCE_FIELDS = ("references", "human_annotations", "human_references", "refs", "targets", "target")


class _Row:
    """A raw row plus where it came from, for error messages that point at the bad record."""

    def __init__(self, benchmark: str, label: str, index: int, raw: Any) -> None:
        if not isinstance(raw, Mapping):
            raise ConfigError(
                f"{benchmark} row {index} of {label}: expected an object, got {type(raw).__name__}"
            )
        self.benchmark, self.label, self.index, self.raw = benchmark, label, index, raw

    def where(self) -> str:
        return f"{self.benchmark} row {self.index} of {self.label}"

    def get(self, names: Sequence[str]) -> Any:
        for name in names:
            value = self.raw.get(name)
            if value is not None and not (isinstance(value, str) and not value.strip()):
                return value
        return None

    def need(self, names: Sequence[str], what: str | None = None) -> Any:
        value = self.get(names)
        if value is None:
            accepted = " or ".join(repr(n) for n in names)
            raise ConfigError(
                f"{self.where()}: missing field {what or names[0]!r} (accepted names: {accepted})"
            )
        return value

    def bad(self, name: str, value: Any, allowed: str) -> ConfigError:
        return ConfigError(f"{self.where()}: field {name!r}={value!r} is not allowed; {allowed}")

    def item_id(self) -> str:
        value = self.get(_ID_FIELDS)
        return str(value) if value is not None else str(self.index)


def _as_list(row: _Row, name: str, value: Any) -> list[Any]:
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise row.bad(name, value[:60], "give a list (JSON text in CSV cells)") from err
    if isinstance(value, Sequence) and not isinstance(value, str) or hasattr(value, "tolist"):
        return list(value.tolist() if hasattr(value, "tolist") else value)
    raise row.bad(name, value, "give a list")


def _options(row: _Row, limit: int) -> list[str]:
    value = row.get(("choices", "options"))
    if value is not None:
        name = "choices" if row.get(("choices",)) is not None else "options"
        options = [str(o).strip() for o in _as_list(row, name, value)]
    else:
        columns = [row.get((f"answer{letter}", letter)) for letter in LETTERS[:limit]]
        present = [c for c in columns if c is not None]
        if not present:
            raise ConfigError(
                f"{row.where()}: missing field 'choices' (accepted: 'choices', 'options', or columns "
                f"{LETTERS[0]}..{LETTERS[limit - 1]} / answer{LETTERS[0]}..answer{LETTERS[limit - 1]})"
            )
        if any(c is None for c in columns[: len(present)]):
            raise ConfigError(f"{row.where()}: option columns are not consecutive from {LETTERS[0]}")
        options = [str(c).strip() for c in present]
    if not 2 <= len(options) <= limit:
        raise row.bad("choices", options, f"give 2 to {limit} options")
    if any(not o for o in options):
        raise row.bad("choices", options, "options must not be empty")
    return options


def _letter(row: _Row, name: str, value: Any, n: int, one_based: bool = False) -> str:
    """Gold letter from an index (zero-based unless `one_based`) or a letter."""
    index: int | None = None
    if isinstance(value, bool):
        index = None
    elif isinstance(value, int) or (hasattr(value, "item") and isinstance(value.item(), int)):
        index = int(value)
    elif isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            index = int(text)
        elif len(text) == 1 and text.upper() in LETTERS[:n]:
            return text.upper()
    if index is not None:
        index -= 1 if one_based else 0
        if 0 <= index < n:
            return LETTERS[index]
    base = "1.." + str(n) if one_based else "0.." + str(n - 1)
    raise row.bad(name, value, f"give an index {base} or a letter {LETTERS[0]}..{LETTERS[n - 1]}")


def _multiple_choice(row: _Row, benchmark: str) -> BenchmarkItem:
    limit = MULTIPLE_CHOICE[benchmark]
    options = _options(row, limit)
    n = len(options)
    meta: dict[str, Any] = {}
    if benchmark == "socialiqa":
        context = str(row.need(("context",))).strip()
        question = f"{context}\n{str(row.need(('question',))).strip()}"
        label = row.get(("label",))
        gold = (
            _letter(row, "label", label, n, one_based=True)
            if label is not None
            else _letter(row, "answer", row.need(("answer",), "label"), n)
        )
        meta["context"] = context
    else:
        question = str(row.need(("question",))).strip()
        letter_value = row.get(("answer",))
        index_value = row.get(("answer_index", "label", "target"))
        if letter_value is None and index_value is None:
            row.need(("answer", "answer_index", "label", "target"))
        gold = _letter(row, "answer", letter_value, n) if letter_value is not None else ""
        if index_value is not None:
            from_index = _letter(row, "answer_index", index_value, n)
            if gold and gold != from_index:
                raise row.bad("answer_index", index_value, f"it disagrees with answer={letter_value!r}")
            gold = gold or from_index
        for key in ("subject", "category", "src"):
            if row.get((key,)) is not None:
                meta[key] = row.raw[key]
    return BenchmarkItem(benchmark, row.item_id(), question, tuple(options), gold, meta=meta)


def _math(row: _Row) -> BenchmarkItem:
    problem = row.need(_QUESTION_FIELDS["math500"])
    if not isinstance(problem, str):
        raise row.bad("problem", problem, "give the problem as text")
    answer = row.get(_ANSWER_FIELDS)
    if answer is None and isinstance(row.get(("solution",)), str):
        answer = last_boxed(row.raw["solution"])
    if answer is None:
        row.need(_ANSWER_FIELDS + ("solution",), "answer")
    meta = {k: row.raw[k] for k in ("level", "subject", "type") if row.get((k,)) is not None}
    return BenchmarkItem("math500", row.item_id(), problem.strip(), gold=str(answer).strip(), meta=meta)


def _concepts(row: _Row) -> list[str]:
    value = row.need(("concepts", "concept_set", "concept_list"), "concepts")
    if isinstance(value, str) and not value.strip().startswith("["):
        for sep in ("#", ",", None):
            if sep is None or sep in value:
                concepts = [c.strip() for c in value.split(sep)]
                break
    else:
        concepts = [str(c).strip() for c in _as_list(row, "concepts", value)]
    concepts = [c for c in concepts if c]
    if not concepts:
        raise row.bad("concepts", value, "give at least one concept")
    return concepts


def _references(row: _Row) -> list[str]:
    value = row.need(_REFERENCE_FIELDS, "references")
    items = [value] if isinstance(value, str) else _as_list(row, "references", value)
    refs = []
    for ref in items:
        if isinstance(ref, Mapping):
            ref = next(
                (ref[k] for k in ("ref", "text", "sentence", "target") if isinstance(ref.get(k), str)), None
            )
        if isinstance(ref, str) and ref.strip():
            refs.append(ref.strip())
    if not refs:
        raise row.bad("references", value, "give at least one human reference sentence")
    return refs


def _commongen(rows: list[_Row]) -> list[BenchmarkItem]:
    """One item per concept set; rows that repeat a set (CommonGen has one row per reference) are merged."""
    merged: dict[Any, tuple[str, list[str], list[str], dict[str, Any]]] = {}
    for row in rows:
        concepts, refs = _concepts(row), _references(row)
        has_id = row.get(_ID_FIELDS) is not None
        key = ("id", row.item_id()) if has_id else ("concepts", tuple(concepts))
        if key not in merged:
            meta = {"instruction": row.raw["instruction"]} if row.get(("instruction",)) else {}
            merged[key] = (row.item_id(), concepts, [], meta)
        known = merged[key][2]
        known.extend(r for r in refs if r not in known)
    return [
        BenchmarkItem("commongen", item_id, "", concepts=tuple(c), references=tuple(r), meta=meta)
        for item_id, c, r, meta in merged.values()
    ]


def load_items(benchmark: str, source: str, limit: int | None = None) -> list[BenchmarkItem]:
    """Every item of `benchmark` from `source` (a local path or "hf:…"), in file order; the first `limit` if set."""
    check_choice("benchmark", benchmark, BENCHMARKS)
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(
            f"{benchmark}: source={source!r} must be a file path or hf:<name>[:<config>][:<split>]"
        )
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit={limit!r} must be a positive integer or None")
    if source.startswith("hf:"):
        raw = [(source, i, r) for i, r in enumerate(_load_hf(source, benchmark))]
    else:
        raw = _load_local(source, benchmark)
    several_files = len({label for label, _, _ in raw}) > 1
    rows = [_Row(benchmark, label, i, r) for label, i, r in raw]
    if benchmark == "commongen":
        items = _commongen(rows)
    else:
        items = [_math(r) if benchmark == "math500" else _multiple_choice(r, benchmark) for r in rows]
        if several_files:  # row numbers restart in every file: keep ids unique
            items = [
                replace(it, id=f"{Path(r.label).stem}/{it.id}") for it, r in zip(items, rows, strict=True)
            ]
    if not items:
        raise ConfigError(f"{benchmark}: source {source!r} holds no items")
    return items[:limit] if limit is not None else items


# ---------------------------------------------------------------------------------------------- prompts
_COMMONGEN_EXAMPLES = (
    (("umbrella (noun)", "open (verb)", "rain (noun)", "street (noun)"),
     "She opened her umbrella when the rain started to fall on the busy street."),
    (("guitar (noun)", "sing (verb)", "campfire (noun)", "friend (noun)"),
     "A few friends sang along while he played the guitar by the campfire."),
)  # fmt: skip


def format_prompt(item: BenchmarkItem) -> str:
    """The question text shown to the model (the runner appends the answer-format instruction)."""
    if item.is_multiple_choice:
        letters = LETTERS[: item.n_options]
        lines = [item.question, "", "Options:"]
        lines += [f"{letter}. {option}" for letter, option in zip(letters, item.options, strict=True)]
        lines += ["", f"Pick the one correct option and answer with its letter ({letters[0]}-{letters[-1]})."]
        return "\n".join(lines)
    if item.benchmark == "commongen":
        parts = [
            "Write one short, natural sentence about an everyday scene that uses all of the given concepts. "
            "Any form of each word is fine (for example 'ran' for 'run').",
        ]
        for concepts, sentence in _COMMONGEN_EXAMPLES:
            parts.append(f"Concepts: {', '.join(concepts)}\nSentence: {sentence}")
        parts.append(f"Concepts: {concept_text(item.concepts)}\nSentence:")
        return "\n\n".join(parts)
    return item.question
