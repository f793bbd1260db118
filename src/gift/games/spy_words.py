"""Who's the Spy word lists: the shipped one and a user's JSON file, each parsed once per file version.

A list is [[spy_word, civilian_word], ...] or {"pairs": [...], "hints": {word: [hint, ...]}}; hints feed the
scripted players' descriptions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Any

from gift.errors import ConfigError

_EXPECTED_SHAPE = (
    'expected a JSON list [[spy_word, civilian_word], ...] or {"pairs": [[spy_word, civilian_word], ...], '
    '"hints": {"word": ["hint", ...]}}'
)


@dataclass(frozen=True)
class WordList:
    """Word pairs [spy_word, civilian_word] and optional hint phrases per word (keys lower-cased)."""

    pairs: tuple[tuple[str, str], ...]
    hints: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def hints_for(self, word: str) -> list[str]:
        return list(self.hints.get(word.lower(), ()))


def _word_list_error(path: object, problem: str) -> ConfigError:
    return ConfigError(f"spy-v0: word_list {str(path)!r}: {problem}; {_EXPECTED_SHAPE}")


def _parse_word_list(data: Any, path: object) -> WordList:
    raw_hints: Any = {}
    if isinstance(data, dict):
        if "pairs" not in data:
            raise _word_list_error(path, 'the object has no "pairs" key')
        raw_pairs, raw_hints = data["pairs"], data.get("hints", {})
    else:
        raw_pairs = data
    if not isinstance(raw_pairs, list) or not raw_pairs:
        raise _word_list_error(path, "the pairs must be a non-empty list")
    pairs = []
    for i, pair in enumerate(raw_pairs):
        ok = isinstance(pair, list | tuple) and len(pair) == 2
        ok = ok and all(isinstance(w, str) and w.strip() for w in pair)
        if not ok:
            raise _word_list_error(path, f"pair {i} is {pair!r}, not two non-empty strings")
        spy_word, civilian_word = (" ".join(w.split()) for w in pair)
        if spy_word.lower() == civilian_word.lower():
            raise _word_list_error(path, f"pair {i} uses the same word twice ({spy_word!r})")
        pairs.append((spy_word, civilian_word))
    if not isinstance(raw_hints, dict):
        raise _word_list_error(path, '"hints" must be an object {word: [hint, ...]}')
    hints: dict[str, tuple[str, ...]] = {}
    for word, phrases in raw_hints.items():
        if not isinstance(phrases, list) or not all(isinstance(p, str) for p in phrases):
            raise _word_list_error(path, f"the hints of {word!r} must be a list of strings")
        hints[str(word).lower()] = tuple(p.strip() for p in phrases if p.strip())
    return WordList(pairs=tuple(pairs), hints=MappingProxyType(hints))


def load_word_pairs(path: str | os.PathLike[str]) -> WordList:
    """Read a word list: [[spy_word, civilian_word], ...] or {"pairs": [...], "hints": {word: [...]}}.

    Parsed once per file version (path, size, modification time): games are built for every rollout.
    """
    try:
        stat = os.stat(path)
    except OSError:
        raise _word_list_error(path, "file not found") from None
    return _load_word_pairs(os.path.realpath(path), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=16)
def _load_word_pairs(path: str, size: int, mtime_ns: int) -> WordList:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise _word_list_error(path, "file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _word_list_error(path, f"cannot be read as JSON ({err.__class__.__name__})") from None
    return _parse_word_list(data, path)


@cache
def shipped_word_list() -> WordList:
    """The word list that ships with gift (over 500 everyday pairs, each word with 3-4 hints); read once."""
    source = resources.files("gift").joinpath("data", "spy_words.json")
    return _parse_word_list(json.loads(source.read_text(encoding="utf-8")), "gift/data/spy_words.json")
