"""Loading MATH-style problem sets for `math-v0` from local files or a `datasets` name.

Accepted sources (the `data` option):
    path/to/file.jsonl    one JSON object per line
    path/to/file.json     a list of objects, or an object whose "data" (or "problems", "rows") is that list
    path/to/file.parquet  via pyarrow (or pandas) when installed
    path/to/file.csv      with a header row (standard library `csv`)
    hf:NAME[:CONFIG]:SPLIT or hf:NAME   the `datasets` library (split "train" when omitted); imported only then

Accepted fields of a record, first match wins:
    problem   "problem", "question", "Problem", "Question", "query", "prompt" (a string, or a chat list whose
              last user message is taken)
    answer    "answer", "Answer", "final_answer", "gt_answer", "ground_truth", "target", "reward_model" →
              "ground_truth" (verl-style); otherwise the last \\boxed{…} of "solution" / "Solution". An answer
              with GSM8K's "#### 42" ending keeps only what follows the last "####".
    id        "unique_id", "id", "problem_id", "idx" (else the row number)

Rows are cached per source and file version, so building many games over one file reads it once.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from gift.errors import ConfigError

PROBLEM_FIELDS = ("problem", "question", "Problem", "Question", "query", "prompt")
ANSWER_FIELDS = ("answer", "Answer", "final_answer", "gt_answer", "ground_truth", "target")
SOLUTION_FIELDS = ("solution", "Solution")
ID_FIELDS = ("unique_id", "id", "problem_id", "idx")
FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")
_JSON_LIST_KEYS = ("data", "problems", "rows")


@dataclass(frozen=True)
class MathRecord:
    problem: str
    answer: str
    id: str


def load_problems(source: str | os.PathLike[str]) -> tuple[MathRecord, ...]:
    """All records of `source` (see the module docstring); one-line `ConfigError` on any problem."""
    text = os.fspath(source)
    if text.startswith("hf:"):
        return _load_hub_cached(text)
    path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"math-v0: data file {text!r} does not exist; write the problems there as .jsonl/.json/.parquet/.csv "
            "rows with problem and answer fields (the paper trains on MATH levels 3-5 as in SimpleRL-Zoo), or "
            "use data='hf:NAME:SPLIT' for a Hugging Face dataset"
        )
    if path.suffix.lower() not in FILE_SUFFIXES:
        raise ConfigError(
            f"math-v0: data={text!r} has an unsupported type; use one of {', '.join(FILE_SUFFIXES)} or 'hf:NAME:SPLIT'"
        )
    stat = path.stat()
    return _load_file_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _load_file_cached(path: str, mtime_ns: int, size: int) -> tuple[MathRecord, ...]:
    """Keyed by modification time and size too, so an edited file is read again."""
    del mtime_ns, size
    suffix = Path(path).suffix.lower()
    reader = {".jsonl": _read_jsonl, ".json": _read_json, ".parquet": _read_parquet, ".csv": _read_csv}[
        suffix
    ]
    return records_from_rows(reader(path), path)


@lru_cache(maxsize=4)
def _load_hub_cached(source: str) -> tuple[MathRecord, ...]:
    parts = source[len("hf:") :].split(":")
    if not parts[0] or len(parts) > 3 or not all(parts):
        raise ConfigError(
            f"math-v0: data={source!r} must look like 'hf:NAME', 'hf:NAME:SPLIT' or 'hf:NAME:CONFIG:SPLIT'"
        )
    name = parts[0]
    config = parts[1] if len(parts) == 3 else None
    split = parts[-1] if len(parts) > 1 else "train"
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            f"math-v0: data={source!r} needs the 'datasets' package (pip install datasets)"
        ) from None
    try:
        rows = datasets.load_dataset(name, config, split=split)
    except Exception as err:  # the library raises many types; all mean "cannot load this"
        offline = any(
            os.environ.get(k, "").lower() in ("1", "true", "yes", "on")
            for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
        )
        if offline:
            raise ConfigError(
                f"math-v0: cannot load dataset {name!r} (split {split!r}) while HF_HUB_OFFLINE/HF_DATASETS_OFFLINE "
                "is set and it is not in the local cache; download it once online or pass a local file"
            ) from None
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"math-v0: cannot load dataset {name!r} (split {split!r}): {reason}") from None
    return records_from_rows((dict(row) for row in rows), source)


# ----------------------------------------------------------------------------- file readers
def _read_jsonl(path: str) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    raise ConfigError(f"math-v0: {path}:{number} is not valid JSON") from None
    return rows


def _read_json(path: str) -> list[Any]:
    try:
        with open(path, encoding="utf-8") as f:
            content = json.load(f)
    except json.JSONDecodeError as err:
        raise ConfigError(f"math-v0: {path} is not valid JSON ({err.msg} at line {err.lineno})") from None
    if isinstance(content, dict):
        content = next((content[k] for k in _JSON_LIST_KEYS if isinstance(content.get(k), list)), None)
    if not isinstance(content, list):
        raise ConfigError(f"math-v0: {path} must hold a list of records (or an object with a 'data' list)")
    return content


def _read_parquet(path: str) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        try:
            import pandas as pd
        except ImportError:
            raise ConfigError(f"math-v0: reading {path} needs pyarrow (pip install pyarrow)") from None
        return pd.read_parquet(path).to_dict(orient="records")
    try:
        return pq.read_table(path).to_pylist()
    except Exception as err:  # pyarrow reports corrupt files with several exception types
        raise ConfigError(f"math-v0: cannot read parquet file {path}: {str(err).splitlines()[0]}") from None


def _read_csv(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- records
def records_from_rows(rows: Any, where: str) -> tuple[MathRecord, ...]:
    """Map raw rows to `MathRecord`s; the first row without a problem or an answer is a `ConfigError`."""
    records = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ConfigError(f"math-v0: row {index} of {where} is not an object with named fields")
        problem = _problem_text(row)
        if not problem:
            raise ConfigError(
                f"math-v0: row {index} of {where} has no problem text; accepted fields: {', '.join(PROBLEM_FIELDS)}"
            )
        answer = _answer_text(row)
        if not answer:
            accepted = ", ".join(
                (
                    *ANSWER_FIELDS,
                    "reward_model.ground_truth",
                    *(f"{s} with \\boxed{{}}" for s in SOLUTION_FIELDS),
                )
            )
            raise ConfigError(f"math-v0: row {index} of {where} has no answer; accepted fields: {accepted}")
        ident = next((row[k] for k in ID_FIELDS if _present(row.get(k))), index)
        records.append(MathRecord(problem=problem, answer=answer, id=str(ident)))
    if not records:
        raise ConfigError(f"math-v0: {where} holds no problems")
    return tuple(records)


def _present(value: Any) -> bool:
    if value is None or (isinstance(value, float) and value != value):  # NaN from pandas
        return False
    return str(value).strip() != ""


def _problem_text(row: dict[str, Any]) -> str:
    for key in PROBLEM_FIELDS:
        value = row.get(key)
        if isinstance(value, list | tuple):  # chat format: take the last user message
            users = [
                m.get("content") for m in value if isinstance(m, dict) and m.get("role", "user") == "user"
            ]
            value = users[-1] if users else None
        if _present(value):
            return str(value).strip()
    return ""


def _answer_text(row: dict[str, Any]) -> str:
    for key in ANSWER_FIELDS:
        if _present(row.get(key)):
            return _strip_gsm8k(_scalar_text(row[key]))
    reward_model = row.get("reward_model")
    if isinstance(reward_model, dict) and _present(reward_model.get("ground_truth")):
        return _scalar_text(reward_model["ground_truth"])
    for key in SOLUTION_FIELDS:
        if _present(row.get(key)):
            boxed = last_boxed(str(row[key]))
            if boxed:
                return boxed
    return ""


def _scalar_text(value: Any) -> str:
    """Numbers from parquet/JSON as plain text: 12.0 → "12", never "12.0" or numpy reprs."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple) and len(value) == 1:
        return _scalar_text(value[0])
    return str(value).strip()


def _strip_gsm8k(answer: str) -> str:
    return answer.rsplit("####", 1)[1].strip() if "####" in answer else answer


def last_boxed(solution: str) -> str:
    """Content of the last \\boxed{…} (or \\fbox{…}) in a worked solution, braces matched; "" when none."""
    start = max(solution.rfind("\\boxed"), solution.rfind("\\fbox"))
    if start < 0:
        return ""
    brace = solution.find("{", start)
    if brace < 0:
        return ""
    depth = 0
    for end in range(brace, len(solution)):
        if solution[end] == "{":
            depth += 1
        elif solution[end] == "}":
            depth -= 1
            if depth == 0:
                return solution[brace + 1 : end].strip()
    return ""
