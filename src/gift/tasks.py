"""From a config's task section to what the sampler plays: (Task, groups per step) pairs.

Handles the three modes (single, nested, mixed), the paper presets, per-game options, and self-play: the option
value `opponent: self` is replaced by one shared frozen copy of the policy when the trainer builds its tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gift.compose import Task, preset_games, preset_tasks
from gift.config import Config
from gift.errors import ConfigError
from gift.games.registry import spec as game_spec

SELF_PLAY = "self"
"""Opponent option value that plays the policy itself (a frozen copy refreshed every rollout.self_play_refresh)."""


# ------------------------------------------------------------------------------------------------ tasks
def task_pairs(cfg: Config) -> list[tuple[Task, int]]:
    """(task, groups per step) for the configured mode; validates ids and options by building each game once."""
    t = cfg.task
    _check_options_are_for_played_games(cfg)
    if t.preset is not None:
        if t.mode == "single":
            raise ConfigError(f"task.mode=single cannot use task.preset={t.preset!r}; use nested or mixed")
        groups = None if "groups" not in t.model_fields_set else t.groups
        pairs = preset_tasks(t.preset, t.mode, t.game_options, groups, t.combinator, t.order)
        if t.mode == "mixed" and t.groups_per_game:
            pairs = [(task, t.groups_per_game.get(task.game, n)) for task, n in pairs]
        return pairs
    entries: list[tuple[str, dict[str, Any]]] = []
    for entry in t.games:
        if isinstance(entry, str):
            entries.append((entry, dict(t.game_options.get(entry, {}))))
        else:
            gid = str(entry.get("id", ""))
            entries.append(
                (gid, {**t.game_options.get(gid, {}), **{k: v for k, v in entry.items() if k != "id"}})
            )
    for gid, _ in entries:
        game_spec(gid)
    if t.mode == "nested":
        options = {
            "games": [{"id": g, **o} for g, o in entries],
            "combinator": t.combinator,
            "order": t.order,
        }
        return [(Task("nested", "nested-v0", options), t.groups)]
    return [(Task(g, g, o), t.groups_per_game.get(g, t.groups)) for g, o in entries]


def _played_ids(cfg: Config) -> list[str]:
    t = cfg.task
    if t.preset is not None:
        return list(preset_games(t.preset))
    return [e if isinstance(e, str) else str(e.get("id", "")) for e in t.games]


def _check_options_are_for_played_games(cfg: Config) -> None:
    """Options for a game the run does not play are a typo or a stale config: refuse them, naming the games."""
    played = _played_ids(cfg)
    for key in ("game_options", "groups_per_game"):
        for gid in getattr(cfg.task, key):
            if gid not in played:
                raise ConfigError(
                    f"task.{key} has options for {gid!r}, which this run does not play; played: {', '.join(played)}"
                )


def uses_self_play(value: Any) -> bool:
    if isinstance(value, dict):
        return any(uses_self_play(v) for v in value.values())
    if isinstance(value, list):
        return any(uses_self_play(v) for v in value)
    return value == SELF_PLAY or value == {"kind": SELF_PLAY}


def substitute_self(value: Any, opponent: Any) -> Any:
    """Replace `opponent: self` anywhere in task options by the shared self-play opponent object."""
    if isinstance(value, dict):
        return {
            k: (
                opponent
                if k == "opponent" and v in (SELF_PLAY, {"kind": SELF_PLAY})
                else substitute_self(v, opponent)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [substitute_self(v, opponent) for v in value]
    return value


def validate_tasks(pairs: Sequence[tuple[Task, int]]) -> None:
    """Build every task's game once so bad game options fail with one line before any model loads."""
    from gift.opponents import Opponent

    class _Placeholder(Opponent):
        name = "self-play (validation)"

    for task, _ in pairs:
        try:
            Task(task.name, task.game, substitute_self(task.options, _Placeholder())).make()
        except TypeError as err:  # a missing or unexpected keyword, e.g. {kind: openai} without base_url
            raise ConfigError(f"task {task.name!r}: bad options: {err}") from None
