"""Per-item results on disk, appended as they finish, so a crashed evaluation resumes where it stopped.

One JSON object per line in `<out>/items.jsonl`, keyed by (model, suite, item, seed). Each line is flushed and
fsynced before the next batch starts; a line cut short by a crash is dropped when the file is reopened. The
settings that change what a generation means (temperature, token cap, prompts, opponents…) are kept in
`<out>/settings.json`, and `--resume` refuses to mix results made under different ones.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from gift.errors import ConfigError

ITEMS_FILE = "items.jsonl"
SETTINGS_FILE = "settings.json"
Key = tuple[str, str, str, int]


def record_key(record: Mapping[str, Any]) -> Key:
    return (str(record["model"]), str(record["suite"]), str(record["item"]), int(record["seed"]))


class ResultStore:
    """The append-only JSONL of finished items, with an index for skipping them on resume."""

    def __init__(self, out_dir: str | os.PathLike, resume: bool, settings: Mapping[str, Any]) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / ITEMS_FILE
        self.records: dict[Key, dict[str, Any]] = {}
        self._check_settings(settings, resume)
        if self.path.is_file() and self.path.stat().st_size > 0:
            if not resume:
                raise ConfigError(
                    f"--out {str(self.out_dir)!r} already holds results ({ITEMS_FILE}); pass --resume to continue "
                    "that evaluation or choose another --out"
                )
            self._load()

    def _check_settings(self, settings: Mapping[str, Any], resume: bool) -> None:
        self._old_settings: dict[str, Any] = {}
        path = self.out_dir / SETTINGS_FILE
        if not (resume and path.is_file()):
            return
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = {}
        self._old_settings = old if isinstance(old, dict) else {}
        for key, value in _plain(dict(settings)).items():
            before = self._old_settings.get(key)
            if isinstance(value, dict) and isinstance(
                before, dict
            ):  # e.g. opponents: compare the shared games
                pairs = [(f"{key}[{k}]", before[k], v) for k, v in value.items() if k in before]
            else:
                pairs = [(key, before, value)]
            for name, was, now in pairs:
                if was is not None and now is not None and was != now:
                    raise ConfigError(
                        f"--resume: {str(self.out_dir)!r} was evaluated with {name}={was!r}, now {now!r}; "
                        "use the same settings or another --out"
                    )

    def write_settings(self, settings: Mapping[str, Any]) -> None:
        """Record the settings (merged with those of the run being resumed)."""
        merged = dict(self._old_settings)
        for key, value in _plain(dict(settings)).items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            elif value is not None or key not in merged:
                merged[key] = value
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / SETTINGS_FILE).write_text(json.dumps(merged, indent=2, sort_keys=True))

    def _load(self) -> None:
        raw = self.path.read_bytes()
        complete = raw[: raw.rfind(b"\n") + 1]
        if len(complete) != len(raw):  # a line cut by a crash: drop it, so new lines start clean
            with self.path.open("r+b") as fh:
                fh.truncate(len(complete))
        for lineno, line in enumerate(complete.decode("utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                self.records[record_key(record)] = record
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise ConfigError(
                    f"{self.path}:{lineno}: not a result record ({err}); move the file away"
                ) from None

    def has(self, model: str, suite: str, item: str, seed: int) -> bool:
        return (model, suite, str(item), int(seed)) in self.records

    def add(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Append finished items and make them durable before returning."""
        lines = []
        for record in records:
            plain = _plain(dict(record))
            self.records[record_key(plain)] = plain
            lines.append(json.dumps(plain, ensure_ascii=False) + "\n")
        if not lines:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write("".join(lines))
            fh.flush()
            os.fsync(fh.fileno())

    def select(
        self, model: str, suite: str, items: Sequence[str], seeds: Sequence[int]
    ) -> list[dict[str, Any]]:
        """The stored records of exactly these items and seeds (a later, smaller --limit sees only its items)."""
        out = []
        for seed in seeds:
            for item in items:
                record = self.records.get((model, suite, str(item), int(seed)))
                if record is not None:
                    out.append(record)
        return out


def _plain(value: Any) -> Any:
    """JSON-safe copy: tuples become lists, sets sorted lists, unknown objects their text."""
    return json.loads(json.dumps(value, default=lambda v: sorted(v) if isinstance(v, set) else str(v)))
