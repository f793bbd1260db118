"""Tasks for training batches: which game (single, nested or several for "mixed" training) each group plays.

The nested game itself lives in `gift.games.nested` (re-exported here). `TaskSampler` decides which game (single,
nested, several for "mixed" training, or one per step for CST) each
rollout group plays and with which seed, reproducibly and resumably.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gift.errors import ConfigError, check_choice
from gift.games.base import TextGame
from gift.games.nested import (  # noqa: F401 - the nested game's pieces, re-exported where they always were
    COMBINATORS,
    ORDERS,
    PRESETS,
    NestedGame,
    SubgameRecord,
    combine,
)
from gift.games.registry import make

# ------------------------------------------------------------------------------------------------------ presets

PAPER_GROUPS: dict[tuple[str, str], int] = {
    ("F+I1", "mixed"): 4,
    ("F+I1", "nested"): 8,
    ("F+I2", "mixed"): 4,
    ("F+I2", "nested"): 4,
    ("F+I3", "mixed"): 4,
    ("F+I3", "nested"): 4,
    ("I2", "mixed"): 8,
    ("I2", "nested"): 8,
}
"""Rollout groups per step per task in the paper's configs (mixed: per game; nested: composites)."""
SINGLE_TASK_GROUPS = 8
MODES = ("nested", "mixed")


def preset_games(name: str) -> tuple[str, ...]:
    check_choice("preset", name, PRESETS)
    return PRESETS[name]


# --------------------------------------------------------------------------------------- per-sub-game metrics


def subgame_records(info: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-sub-game records of a final info: info["subgames"] for a nested game, one record for a single game."""
    if "subgames" in info:
        return [dict(r) for r in info["subgames"]]
    return [
        {
            "game": info.get("game"),
            "reward": info.get("terminal_reward"),
            "success": bool(info.get("success", False)),
            "turns": info.get("turns_used", 0),
            "penalty": None,
            "end_reason": info.get("end_reason"),
        }
    ]


def flatten_subgames(info: Mapping[str, Any]) -> dict[str, float]:
    """Flat numeric metrics per sub-game of one finished episode, keyed "<game>/<metric>".

    A repeated game id gets a suffix ("matrix-v0#2"). "reward" counts an unfinished sub-game as 0 and
    "finished" says whether it produced a terminal reward at all.
    """
    flat: dict[str, float] = {}
    seen: dict[str, int] = {}
    for record in subgame_records(info):
        name = str(record["game"])
        seen[name] = seen.get(name, 0) + 1
        key = name if seen[name] == 1 else f"{name}#{seen[name]}"
        flat[f"{key}/reward"] = float(record["reward"] or 0.0)
        flat[f"{key}/success"] = float(bool(record["success"]))
        flat[f"{key}/finished"] = float(record["reward"] is not None)
        flat[f"{key}/turns"] = float(record["turns"] or 0)
    return flat


def summarize_subgames(infos: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """Mean of `flatten_subgames` over episodes (each key averaged over the episodes that have it)."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for info in infos:
        for key, value in flatten_subgames(info).items():
            sums[key] = sums.get(key, 0.0) + value
            counts[key] = counts.get(key, 0) + 1
    return {key: sums[key] / counts[key] for key in sums}


# ------------------------------------------------------------------------------------------------ task sampling


@dataclass(frozen=True)
class Task:
    """What a rollout group plays: `make(game, **options)`, logged under `name`."""

    name: str
    game: str
    options: dict[str, Any] = field(default_factory=dict)

    def make(self) -> TextGame:
        return make(self.game, **self.options)


@dataclass(frozen=True)
class Group:
    """One rollout group of a batch: `size` rollouts of `task` that all start from `seed`."""

    task: Task
    seed: int
    size: int
    index: int
    """Position of the group in its batch."""


def _options_for(game_id: str, game_options: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any]:
    return dict((game_options or {}).get(game_id, {}))


SAMPLER_MODES = (*MODES, "cst")
"""How a preset's games become tasks: one nested composite, mixed games in one batch, or CST (one game a step)."""

CST_GROUPS: dict[str, int] = {"F+I1": 16, "F+I2": 8, "F+I3": 8, "I2": 8}
"""Rollout groups per CST step, all of the step's one sub-task (16 rollouts each). From the authors' CST configs
for arXiv 2601.05633 v2 (GIFT-LLM `config/_25_mn_batch.yaml` F+I1: 16 groups; `_26_mnt_batch.yaml` F+I2,
`_27_all_batch.yaml` F+I3 and `_28_nt_batch.yaml` I2: 8 groups)."""


def cst_phase(step: int, k_list: Sequence[int]) -> int:
    """Index of the sub-task that Coordinated Subtask Training trains at (0-indexed) training step `step`.

    Round robin weighted by `k_list`: sub-task 0 for k_list[0] steps, then sub-task 1 for k_list[1] steps, …,
    then again from the start. This is the rule of the authors' CST environment (arXiv 2601.05633 v2; the phase
    of 1-indexed step t is the first i with (t - 1) mod sum(k_list) < k_list[0] + … + k_list[i]). It depends on
    the step alone, so a resumed run trains the same sub-task at every step as an uninterrupted one.
    """
    check_k_list(k_list)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ConfigError(f"step={step!r} must be an integer >= 0")
    position = step % sum(k_list)
    for index, bound in enumerate(itertools.accumulate(k_list)):
        if position < bound:
            return index
    raise AssertionError("unreachable: position < sum(k_list)")


def check_k_list(k_list: Sequence[int], num_tasks: int | None = None) -> None:
    """One-line ConfigError unless `k_list` is a non-empty list of integers >= 1 (one per sub-task)."""
    if isinstance(k_list, str | bytes) or not isinstance(k_list, Sequence) or not k_list:
        raise ConfigError(f"task.k_list={k_list!r} must be a non-empty list of integers >= 1")
    if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in k_list):
        raise ConfigError(f"task.k_list={list(k_list)!r} must hold integers >= 1 (steps per sub-task)")
    if num_tasks is not None and len(k_list) != num_tasks:
        raise ConfigError(
            f"task.k_list={list(k_list)!r} has {len(k_list)} entries but there are {num_tasks} sub-tasks; "
            "give one step count per sub-task, in their order"
        )


def preset_tasks(
    name: str,
    mode: str,
    game_options: Mapping[str, Mapping[str, Any]] | None = None,
    groups: int | None = None,
    combinator: str = "mean",
    order: str = "fixed",
) -> list[tuple[Task, int]]:
    """The (task, groups per step) list for a paper preset played "nested" (one composite), "mixed" (OR) or
    "cst" (one game per step; `TaskSampler(k_list=...)` picks which).

    `game_options` maps a game id to its options (e.g. {"tictactoe-v0": {"opponent": "minimax"}}); `groups`
    overrides the paper's group count per task (CST: per step, see `CST_GROUPS`).
    """
    games = preset_games(name)
    check_choice("mode", mode, SAMPLER_MODES)
    if mode == "cst":
        count = CST_GROUPS[name] if groups is None else groups
        return [(Task(g, g, _options_for(g, game_options)), count) for g in games]
    count = PAPER_GROUPS[(name, mode)] if groups is None else groups
    if mode == "mixed":
        return [(Task(g, g, _options_for(g, game_options)), count) for g in games]
    entries = [{"id": g, **_options_for(g, game_options)} for g in games]
    options = {"games": entries, "combinator": combinator, "order": order}
    return [(Task(name, "nested-v0", options), count)]


def _as_task(spec: Any) -> Task:
    if isinstance(spec, Task):
        return spec
    if isinstance(spec, str):
        if spec in PRESETS:
            return preset_tasks(spec, "nested")[0][0]
        return Task(spec, spec, {})
    if isinstance(spec, Mapping) and "id" in spec:
        options = {k: v for k, v in spec.items() if k not in ("id", "name")}
        return Task(str(spec.get("name", spec["id"])), str(spec["id"]), options)
    raise ConfigError(f"task {spec!r}: use a game id, a preset name, {{'id': ..., **options}} or a Task")


class TaskSampler:
    """Which task and seed each rollout group of a training step gets (the paper's training setup, seeds).

    `tasks` is {task: groups per step} or a list of (task, groups) where a task is a game id, a preset name
    (a nested composite), {"id": ..., "name": ..., **options} or a `Task`. Groups are laid out task by task;
    at step s group g gets seed `base_seed + s * num_groups + g`, so seeds never repeat across groups or steps
    and all rollouts of a group share theirs. Only the step counter is state (`state_dict`).

    With `k_list` (Coordinated Subtask Training, one step count per task) a step plays only the groups of the
    task `cst_phase(step, k_list)`; seeds keep the same layout, so they still never repeat.
    """

    def __init__(
        self,
        tasks: Mapping[Any, int] | Sequence[tuple[Any, int]],
        group_size: int = 16,
        base_seed: int = 10000,
        k_list: Sequence[int] | None = None,
    ) -> None:
        pairs = list(tasks.items()) if isinstance(tasks, Mapping) else list(tasks)
        if not pairs:
            raise ConfigError("tasks is empty; give at least one game id or preset with its number of groups")
        self.tasks: list[tuple[Task, int]] = []
        for spec_, count in pairs:
            task = _as_task(spec_)
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ConfigError(f"task {task.name!r}: groups={count!r} must be an integer >= 1")
            self.tasks.append((task, count))
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
            raise ConfigError(f"group_size={group_size!r} must be an integer >= 1")
        if isinstance(base_seed, bool) or not isinstance(base_seed, int):
            raise ConfigError(f"base_seed={base_seed!r} must be an integer")
        if k_list is not None:
            check_k_list(k_list, len(self.tasks))
        self.group_size = group_size
        self.base_seed = base_seed
        self.k_list: list[int] | None = None if k_list is None else [int(k) for k in k_list]
        self.step = 0

    @property
    def num_groups(self) -> int:
        return sum(count for _, count in self.tasks)

    def phase_at(self, step: int) -> int | None:
        """The index of the one task trained at `step` under CST; None when every task plays every step."""
        return None if self.k_list is None else cst_phase(step, self.k_list)

    def batch_at(self, step: int) -> list[Group]:
        """The groups of training step `step` (pure: does not move the counter)."""
        start = self.base_seed + step * self.num_groups
        phase = self.phase_at(step)
        groups: list[Group] = []
        offset = 0
        for position, (task, count) in enumerate(self.tasks):
            if phase is None or position == phase:
                for k in range(count):
                    index = len(groups)
                    groups.append(
                        Group(task=task, seed=start + offset + k, size=self.group_size, index=index)
                    )
            offset += count
        return groups

    def next_batch(self) -> list[Group]:
        groups = self.batch_at(self.step)
        self.step += 1
        return groups

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "step": self.step,
            "base_seed": self.base_seed,
            "num_groups": self.num_groups,
        }
        if self.k_list is not None:
            state["k_list"] = list(self.k_list)
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("k_list") != self.k_list:
            raise ConfigError(
                f"sampler state has k_list={state.get('k_list')!r} but this run uses {self.k_list!r}; "
                "resume with the same task.mode and task.k_list"
            )
        for key in ("base_seed", "num_groups"):
            if key in state and state[key] != getattr(self, key):
                raise ConfigError(
                    f"sampler state has {key}={state[key]!r} but this run uses {getattr(self, key)!r}; "
                    "resume with the same tasks and base_seed"
                )
        self.step = int(state["step"])
