"""Nested trajectories (several games played in a row, rewarded jointly) and the task sampler for batches.

A `NestedGame` is itself a `TextGame`, so rollouts, evaluation and `check_env` treat it like any other game:

    game = make("nested-v0", games=["math-v0", "matrix-v0", "tictactoe-v0"])   # or games="F+I2"
    obs, info = game.reset(seed=7)

Every sub-game parses the reply itself, so format and invalid-move penalties reach the trajectory unchanged.
Sub-game outcomes stay hidden until the end: a boundary between sub-games returns only that step's penalties,
and the last sub-game's end returns the combinator of all terminal rewards (the paper uses the mean). One turn
budget is shared by the whole composite; running out of it scores the trajectory 0 plus its penalties.

`TaskSampler` decides which game (single, nested, several for "mixed" training, or one per step for CST) each
rollout group plays and with which seed, reproducibly and resumably.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from gift.errors import ConfigError, check_choice
from gift.games.base import TextGame
from gift.games.registry import make

# ------------------------------------------------------------------------------------------- reward combinators


def _mean(rewards: Sequence[float], successes: Sequence[bool]) -> float:
    return sum(rewards) / len(rewards)


def _all(rewards: Sequence[float], successes: Sequence[bool]) -> float:
    return 1.0 if all(successes) else 0.0


def _product(rewards: Sequence[float], successes: Sequence[bool]) -> float:
    return float(math.prod(rewards))


def _min(rewards: Sequence[float], successes: Sequence[bool]) -> float:
    return float(min(rewards))


COMBINATORS: dict[str, Callable[[Sequence[float], Sequence[bool]], float]] = {
    "mean": _mean,  # the paper's soft AND: average sub-game reward
    "all": _all,  # strict AND: 1 only when every sub-game succeeded
    "product": _product,
    "min": _min,
}
ORDERS = ("fixed", "shuffled")


def combine(combinator: str, rewards: Sequence[float], successes: Sequence[bool]) -> float:
    """The composite reward of a finished nested trajectory from its sub-games' terminal rewards."""
    check_choice("combinator", combinator, COMBINATORS)
    if not rewards or len(rewards) != len(successes):
        raise ValueError("combine() needs one reward and one success flag per sub-game")
    return COMBINATORS[combinator](rewards, successes)


# ------------------------------------------------------------------------------------------------------ presets

PRESETS: dict[str, tuple[str, ...]] = {
    "F+I1": ("math-v0", "matrix-v0"),
    "F+I2": ("math-v0", "matrix-v0", "tictactoe-v0"),
    "F+I3": ("math-v0", "matrix-v0", "tictactoe-v0", "spy-v0"),
    "I2": ("matrix-v0", "tictactoe-v0"),
}
"""The paper's task sets (paper-notes §2.2), in the sub-game order it uses for nested training."""

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


# ------------------------------------------------------------------------------------------------- nested game


def _normalise_entry(entry: Any, position: int) -> tuple[str, dict[str, Any]]:
    """Accept "id", {"id": id, **options} or (id, options) and return (id, options)."""
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, Mapping):
        if "id" not in entry:
            raise ConfigError(f"nested-v0: games[{position}]={dict(entry)!r} needs an 'id' key")
        options = {k: v for k, v in entry.items() if k != "id"}
        return str(entry["id"]), options
    if isinstance(entry, tuple | list) and len(entry) == 2 and isinstance(entry[0], str):
        if not isinstance(entry[1], Mapping):
            raise ConfigError(f"nested-v0: games[{position}] options must be a mapping, got {entry[1]!r}")
        return entry[0], dict(entry[1])
    raise ConfigError(
        f"nested-v0: games[{position}]={entry!r}; use a game id, {{'id': ..., **options}} or (id, options)"
    )


@dataclass
class SubgameRecord:
    """How one sub-game of a nested trajectory went (one entry of info["subgames"])."""

    game: str
    reward: float | None = None
    """Terminal reward; None while unfinished or when the composite ran out of turns first."""
    success: bool = False
    turns: int = 0
    penalty: float = 0.0
    end_reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "game": self.game,
            "reward": self.reward,
            "success": self.success,
            "turns": self.turns,
            "penalty": self.penalty,
            "end_reason": self.end_reason,
        }


class NestedGame(TextGame):
    """Several games played in sequence in one trajectory with one shared turn budget and a joint reward.

    `games` is a list of game ids, {"id": ..., **options} dicts or (id, options) pairs, or a preset name
    ("F+I1", "F+I2", "F+I3", "I2"). `max_turns` defaults to the sum of the sub-games' own budgets.
    """

    id = "nested-v0"
    default_max_turns = 1
    accounting_info_keys: ClassVar[tuple[str, ...]] = ("subgames", "subgame_info")
    """Info keys holding per-sub-game turn/penalty bookkeeping (they change even on an unread reply)."""

    def __init__(
        self,
        games: Sequence[Any] | str | None = None,
        combinator: str = "mean",
        order: str = "fixed",
        max_turns: int | None = None,
        parser: str = "strict",
    ) -> None:
        check_choice("nested-v0: combinator", combinator, COMBINATORS)
        check_choice("nested-v0: order", order, ORDERS)
        if isinstance(games, str):
            if games not in PRESETS:
                raise ConfigError(
                    f"nested-v0: games={games!r} is not a preset; use a list of game ids or one of: "
                    f"{', '.join(PRESETS)}"
                )
            games = PRESETS[games]
        if games is None or isinstance(games, Mapping) or len(games) < 1:
            raise ConfigError(
                f"nested-v0: games={games!r}; give a non-empty list of game ids or a preset name "
                f"({', '.join(PRESETS)})"
            )
        subgames: list[TextGame] = []
        for position, entry in enumerate(games):
            game_id, options = _normalise_entry(entry, position)
            sub = make(game_id, **options)
            if not isinstance(sub, TextGame):
                raise ConfigError(f"nested-v0: {game_id!r} is not a TextGame and cannot be nested")
            if "parser" not in options:
                sub.parser = parser
            subgames.append(sub)
        own_budget = sum(sub.max_turns for sub in subgames)
        super().__init__(max_turns=own_budget if max_turns is None else max_turns, parser=parser)
        self.games: list[TextGame] = subgames
        self.combinator = combinator
        self.order = order
        self.play_order: list[int] = list(range(len(subgames)))
        self.index = 0
        self.records: list[SubgameRecord] = []
        self.truncated_early = False

    @property
    def current(self) -> TextGame:
        """The sub-game being played now."""
        return self.games[self.play_order[self.index]]

    # ------------------------------------------------------------------------------------- TextGame hooks
    def _reset(self) -> None:
        self.play_order = list(range(len(self.games)))
        if self.order == "shuffled":
            self.rng.shuffle(self.play_order)
        self.index = 0
        self.truncated_early = False
        for sub in self.games:
            # The composite budget is what counts: a sub-game never truncates on its own.
            sub.max_turns = self.max_turns
            sub.reset(seed=self.seed)
        self.records = [SubgameRecord(game=self.games[i].id) for i in self.play_order]

    def render(self) -> str:
        return self.current.render()

    def legal_actions(self) -> list[str] | None:
        return self.current.legal_actions()

    def game_info(self) -> dict[str, Any]:
        return {
            "subgames": [r.as_dict() for r in self.records],
            "subgame_index": self.index,
            "subgame": self.current.id,
            "combinator": self.combinator,
            "nested_truncated": self.truncated_early,
        }

    def _act(self, action: str):  # pragma: no cover - step() is overridden; sub-games act themselves
        raise NotImplementedError("NestedGame forwards whole replies to its sub-games")

    # ------------------------------------------------------------------------------------------------ step
    def step(self, reply: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self.done:
            raise RuntimeError(f"{self.id}: step() called on a finished episode; call reset() first")
        info = self._info()
        sub = self.current
        record = self.records[self.index]
        # Tie the sub-game's budget to what the composite has left, so "||"-chained actions stop in time.
        sub.max_turns = sub.turns_used + self.actions_left
        before = sub.turns_used
        obs, sub_reward, sub_terminated, sub_truncated, sub_info = sub.step(reply)
        self.turns_used += max(1, sub.turns_used - before)
        terminal = sub_info.get("terminal_reward") if sub_terminated else None
        penalty = float(sub_reward) - (float(terminal) if terminal is not None else 0.0)
        record.turns = sub.turns_used
        record.penalty += penalty
        info.update(
            penalty=penalty,
            format_error=bool(sub_info.get("format_error", False)),
            invalid_actions=int(sub_info.get("invalid_actions", 0)),
            subgame_info=sub_info,
        )
        reward = penalty
        terminated = truncated = False
        if sub_terminated and sub_info.get("opponent_failed"):
            record.end_reason = "opponent_failed"
            terminated = True
            info.update(
                opponent_failed=True, end_reason="opponent_failed", success=False, terminal_reward=0.0
            )
        elif sub_terminated:
            record.reward = 0.0 if terminal is None else float(terminal)
            record.success = bool(sub_info.get("success", False))
            record.end_reason = sub_info.get("end_reason")
            if self.index == len(self.games) - 1:
                combined = combine(
                    self.combinator,
                    [r.reward or 0.0 for r in self.records],
                    [r.success for r in self.records],
                )
                reward += combined
                terminated = True
                success = all(r.success for r in self.records)
                info.update(success=success, end_reason="completed", terminal_reward=combined)
            else:
                self.index += 1
                obs = self.current.render()  # the next sub-game's first observation; the outcome stays hidden
        if not terminated and (sub_truncated or self.actions_left <= 0):
            truncated = True
            self.truncated_early = True
            if record.end_reason is None:
                record.end_reason = "out_of_turns"
            info.update(success=False, end_reason="out_of_turns", terminal_reward=0.0)
        self.done = terminated or truncated
        info.update(self._budget_info(), **self.game_info())
        self.last_info = info
        return obs, reward, terminated, truncated, info


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
    """Which task and seed each rollout group of a training step gets (paper-notes §5, "Seeds").

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
