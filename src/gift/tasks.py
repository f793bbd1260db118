"""From a config's task section to what the sampler plays: (Task, groups per step) pairs.

Handles the four modes (single, nested, mixed, cst), the paper presets, per-game options, and self-play: the
option value `opponent: self` is replaced by one shared frozen copy of the policy when the trainer builds its
tasks. CST ("Coordinated Subtask Training", arXiv 2601.05633 v2) has the tasks of mixed mode, of which the
sampler plays one per step (`task_sampler`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gift.compose import Task, TaskSampler, check_k_list, preset_games, preset_tasks
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
            raise ConfigError(
                f"task.mode=single cannot use task.preset={t.preset!r}; use nested, mixed or cst"
            )
        groups = None if "groups" not in t.model_fields_set else t.groups
        pairs = preset_tasks(t.preset, t.mode, t.game_options, groups, t.combinator, t.order)
        if t.mode in ("mixed", "cst") and t.groups_per_game:
            pairs = [(task, t.groups_per_game.get(task.game, n)) for task, n in pairs]
        return pairs
    entries: list[tuple[str, dict[str, Any]]] = []
    for position, entry in enumerate(t.games):
        if isinstance(entry, str):
            entries.append((entry, dict(t.game_options.get(entry, {}))))
        else:
            gid = _entry_id(entry, position)
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


def k_list(cfg: Config, pairs: Sequence[tuple[Task, int]]) -> list[int] | None:
    """The CST step counts, one per task (default all 1s); None outside CST mode."""
    if cfg.task.mode != "cst":
        return None
    counts = cfg.task.k_list if cfg.task.k_list is not None else [1] * len(pairs)
    check_k_list(counts, len(pairs))
    return list(counts)


def task_sampler(cfg: Config, pairs: Sequence[tuple[Task, int]]) -> TaskSampler:
    """The run's sampler: every task each step, or under CST one task per step weighted by `k_list`."""
    return TaskSampler(
        pairs, group_size=cfg.task.group_size, base_seed=cfg.task.base_seed, k_list=k_list(cfg, pairs)
    )


def min_groups_per_step(cfg: Config, pairs: Sequence[tuple[Task, int]]) -> int:
    """The fewest rollout groups any step has: all of them, or under CST those of the smallest task."""
    counts = [n for _, n in pairs]
    return min(counts) if cfg.task.mode == "cst" else sum(counts)


def _entry_id(entry: dict[str, Any], position: int) -> str:
    """The game id of a `task.games` entry written as a mapping: {id: ..., **options}."""
    gid = entry.get("id")
    if not isinstance(gid, str):
        shown = "has no 'id'" if gid is None else f"has id={gid!r}, not a game id"
        raise ConfigError(
            f"task.games[{position}] {shown}; write {{id: GAME-ID, **options}} (see gift games)"
        )
    return gid


def _played_ids(cfg: Config) -> list[str]:
    t = cfg.task
    if t.preset is not None:
        return list(preset_games(t.preset))
    return [e if isinstance(e, str) else _entry_id(e, i) for i, e in enumerate(t.games)]


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


def share_endpoints(value: Any, shared: dict[str, Any] | None = None) -> Any:
    """Replace every `{kind: openai, ...}` opponent in task options by one client per distinct endpoint.

    All games of a run then share that client: its `concurrency` bounds the calls in flight across games, and
    its counters cover the whole run.
    """
    import json

    shared = {} if shared is None else shared
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "opponent" and isinstance(item, dict) and item.get("kind") == "openai":
                from gift.opponents import resolve_opponent

                spec = json.dumps(item, sort_keys=True, default=str)
                if spec not in shared:
                    shared[spec] = resolve_opponent(item, {}, where="opponent")
                out[key] = shared[spec]
            else:
                out[key] = share_endpoints(item, shared)
        return out
    if isinstance(value, list):
        return [share_endpoints(v, shared) for v in value]
    return value


class GamePool:
    """Games made once per rollout slot of a task and reset for every episode (making one is the slow part)."""

    def __init__(self) -> None:
        self._games: dict[str, list[Any]] = {}

    def games_for(self, tasks: Sequence[Task]) -> list[Any]:
        """One distinct game instance per entry of `tasks` (entries of one task get different instances)."""
        used: dict[str, int] = {}
        out = []
        for task in tasks:
            pool = self._games.setdefault(task.name, [])
            index = used.get(task.name, 0)
            if index == len(pool):
                pool.append(task.make())
            out.append(pool[index])
            used[task.name] = index + 1
        return out
