"""Answer diversity: does the policy still answer differently from episode to episode, per game and sub-game?

A policy can raise its success by learning a label prior instead of the game: on `matrix-v0` always answering "2"
wins about half of the episodes. The entropy of the answer distribution and the share of the most common answer
show such a collapse at a glance (entropy 0 and share 1 for a constant answer).

One answer per (sub-)game and trajectory: what the game read as the policy's action where its info carries it
(Matrix and Math `answer`, the Spy vote), otherwise the answer block of the reply that made the move (the last
`<answer>` block, or the whole reply under the raw protocol): the opening move in TicTacToe. In a nested
trajectory only the sub-game stepped last is in the final info; earlier sub-games are read from their replies,
located by the turns each sub-game used.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gift.games.base import TextGame
from gift.games.protocol import parse_lenient, parse_strict

METRICS = ("answer_entropy", "top_answer_share", "answer_count", "top_answer", "episodes")
"""Logged as game/<game-id>/<metric>; top_answer is text (metrics.jsonl only); episodes counts the game's
episodes whose opponent did not fail (the n behind its success rate)."""
_MAX_SHOWN = 60
"""Longest answer text kept for top_answer."""


def normalise(answer: Any) -> str | None:
    """Whitespace-collapsed answer text; None for no answer."""
    if answer is None:
        return None
    text = " ".join(str(answer).split())
    return text or None


def reply_answer(reply: str) -> str | None:
    """The answer of one reply: the protocol's answer block when there is one, else the whole reply (raw)."""
    parsed = parse_strict(reply) or parse_lenient(reply)
    return normalise(parsed.answer if parsed is not None else reply)


def _game_class(game: str) -> Any:
    """The registered class of `game`, or None for an id this process does not know."""
    from gift.errors import ConfigError
    from gift.games.registry import spec

    try:
        return spec(game).load()
    except ConfigError:
        return None


def records_answers(game: str) -> bool:
    """Whether the game's final info records the answer it read (an unreadable reply then counts as none)."""
    cls = _game_class(game)
    return cls is not None and cls.recorded_answer.__func__ is not TextGame.recorded_answer.__func__


def info_answer(info: Mapping[str, Any]) -> str | None:
    """The answer a game's info records for the policy (`TextGame.recorded_answer`), else None."""
    cls = _game_class(str(info.get("game")))
    return None if cls is None else normalise(cls.recorded_answer(dict(info)))


def _replies(record: Mapping[str, Any]) -> list[str]:
    return [str(m.get("content", "")) for m in record.get("messages", []) if m.get("role") == "assistant"]


def _from_replies(game: str, replies: Sequence[str]) -> str | None:
    """The first reply's answer, or the last one's for games that answer at the end (Spy's vote)."""
    if not replies:
        return None
    cls = _game_class(game)
    last = cls is not None and cls.answer_in_last_reply
    return reply_answer(replies[-1] if last else replies[0])


def episode_answers(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(game id, answer) for every (sub-)game of one trajectory record that produced an answer."""
    info = record.get("final_info") or {}
    replies = _replies(record)
    if "subgames" not in info:
        game = str(info.get("game") or record.get("game"))
        answer = info_answer(info) if records_answers(game) else _from_replies(game, replies)
        return [(game, answer)] if answer is not None else []
    out: list[tuple[str, str]] = []
    last_info = info.get("subgame_info") or {}
    last_index = info.get("subgame_index")
    start = 0
    for index, sub in enumerate(info["subgames"]):
        game, turns = str(sub.get("game")), int(sub.get("turns") or 0)
        own = replies[start : start + turns]
        start += turns
        if index == last_index and last_info.get("game") == game and records_answers(game):
            answer = info_answer(last_info)
        else:
            answer = _from_replies(game, own)
        if answer is not None:
            out.append((game, answer))
    return out


def episode_games(record: Mapping[str, Any]) -> list[str]:
    """The game ids a trajectory played: its sub-games, or the game itself."""
    info = record.get("final_info") or {}
    if "subgames" in info:
        return [str(sub.get("game")) for sub in info["subgames"]]
    return [str(info.get("game") or record.get("game"))]


def entropy(counts: Iterable[int]) -> float:
    """Shannon entropy (nats, like train/entropy) of a distribution given by counts; 0 for one answer."""
    values = [c for c in counts if c > 0]
    total = sum(values)
    if total == 0:
        return math.nan
    return max(0.0, -sum(c / total * math.log(c / total) for c in values))


def answer_diversity(records: Iterable[Mapping[str, Any]]) -> dict[str, float | str]:
    """game/<id>/answer_entropy, top_answer_share, answer_count and top_answer over one step's trajectories."""
    by_game: dict[str, Counter[str]] = defaultdict(Counter)
    episodes: Counter[str] = Counter()
    for record in records:
        if not record.get("opponent_failed"):
            episodes.update(episode_games(record))
        for game, answer in episode_answers(record):
            by_game[game][answer] += 1
    metrics: dict[str, float | str] = {f"game/{g}/episodes": float(n) for g, n in sorted(episodes.items())}
    for game, counts in sorted(by_game.items()):
        total = sum(counts.values())
        top, top_count = counts.most_common(1)[0]
        metrics[f"game/{game}/answer_entropy"] = entropy(counts.values())
        metrics[f"game/{game}/top_answer_share"] = top_count / total
        metrics[f"game/{game}/answer_count"] = float(total)
        metrics[f"game/{game}/top_answer"] = top[:_MAX_SHOWN]
    return metrics
