"""The small held-out evaluation that ends `gift train`: the starting model vs the trained one, on unseen seeds.

Training success is measured on the very episodes the policy learns from; a run is judged here instead, on seeds
no training step draws (`heldout_seeds`), against the trivial baselines. Both models play the same episodes the
way the run trains: the run's games and options (the `parser` option included), its system prompt, instruction,
reply prefix and sampling settings, through the training transcript (`gift.rollout.run_rollouts`, one rollout per
seed). The starting model plays before the first step (its result is kept in `heldout-start.json`, so a resumed
run still compares against it); the trained model plays after the last. Every rate carries n and a Wilson 95%
interval; episodes an opponent forfeited are left out and counted.
"""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gift.compose import flatten_subgames
from gift.evaluation.stats import binomial_ci
from gift.fileio import write_text_atomic

START_FILE = "heldout-start.json"
HELDOUT_BASE_SEED = 2**30
"""First held-out seed: far above the training seeds (`task.base_seed` + step × groups) of any practical run."""
SAMPLING_SALT = 7_777_777


def heldout_seeds(base_seed: int, steps: int, groups_per_step: int, count: int) -> list[int]:
    """`count` seeds that no training step of the run draws (training uses [base, base + steps × groups))."""
    train_end = base_seed + steps * max(1, groups_per_step)
    start = HELDOUT_BASE_SEED
    if not (start + count <= base_seed or start >= train_end):  # a run that trains up there: go past its seeds
        start = train_end
    return list(range(start, start + count))


def play_heldout(
    tasks: Sequence[Any],
    seeds: Sequence[int],
    backend: Any,
    tokenizer: Any,
    rollout_cfg: Any,
    rank: int = 0,
    world: int = 1,
) -> list[dict[str, Any]]:
    """This process's share of every task × seed episode, as trajectory records (no tokens).

    Sampling is seeded from the seeds alone, so the starting and the trained model draw alike.
    """
    from gift.rollout import run_rollouts
    from gift.tasks import GamePool

    jobs = [(task, seed) for task in tasks for seed in seeds][rank::world]
    if not jobs:
        return []
    games = GamePool().games_for([task for task, _ in jobs])
    cfg = dataclasses.replace(rollout_cfg, seed=(seeds[0] + SAMPLING_SALT) % 2**31 if seeds else None)
    trajectories = run_rollouts(
        games,
        [seed for _, seed in jobs],
        list(range(len(jobs))),
        backend,
        tokenizer,
        cfg,
        tasks=[task.name for task, _ in jobs],
    )
    return [_slim(t.record()) for t in trajectories]


def _slim(record: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("task", "game", "seed", "success", "total_reward", "opponent_failed", "format_errors", "num_turns")
    return {**{k: record[k] for k in keys}, "subgames": flatten_subgames(record["final_info"])}


def _rate(flags: Sequence[bool], excluded: int) -> dict[str, Any]:
    """Success with n and its Wilson 95% interval; None values (not NaN, so the JSON stays strict) when n is 0."""
    estimate = binomial_ci(sum(bool(f) for f in flags), len(flags))
    values = estimate.as_dict() if estimate.n else {"value": None, "low": None, "high": None, "n": 0}
    return {**values, "excluded": excluded}


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per task and per game (sub-games of nested tasks included): success with n and its Wilson 95% interval.

    Returns {"tasks": {name: rate}, "games": {game-id: rate}}; a rate is `Estimate.as_dict()` plus
    "excluded" (episodes an opponent forfeited) and, for tasks, "reward" (mean total reward).
    """
    by_task: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        by_task[r["task"]].append(r)
    tasks = {}
    games: dict[str, list[bool]] = defaultdict(list)
    excluded: dict[str, int] = defaultdict(int)
    for name, recs in sorted(by_task.items()):
        kept = [r for r in recs if not r["opponent_failed"]]
        rewards = [float(r["total_reward"]) for r in kept]
        tasks[name] = {
            **_rate([r["success"] for r in kept], len(recs) - len(kept)),
            "reward": sum(rewards) / len(rewards) if rewards else None,
        }
        for r in recs:
            for key, value in r["subgames"].items():
                game, _, metric = key.rpartition("/")
                if metric != "success":
                    continue
                if r["opponent_failed"]:
                    excluded[game] += 1
                else:
                    games[game].append(bool(value))
    return {
        "tasks": tasks,
        "games": {g: _rate(games.get(g, []), excluded[g]) for g in sorted(set(games) | set(excluded))},
    }


def evaluate(
    tasks: Sequence[Any], seeds: Sequence[int], backend: Any, tokenizer: Any, rollout_cfg: Any, accelerator: Any
) -> dict[str, Any]:
    """Play the held-out episodes on every process, gather them, summarise; every RNG is left as it was, so
    the training steps do not depend on whether the evaluation runs."""
    from accelerate.utils import gather_object

    from gift.checkpoint import rng_state, set_rng_state

    saved = rng_state()
    try:
        mine = play_heldout(
            tasks, seeds, backend, tokenizer, rollout_cfg, accelerator.process_index, accelerator.num_processes
        )
    finally:
        set_rng_state(saved)
    return summarize(gather_object(mine))


def prepare(cfg: Any, tasks: Sequence[Any], groups: int, run_dir: Path, start: int, players: tuple) -> dict | None:
    """The held-out seeds and the starting model's result: played now on a fresh run, read back on a resume.

    `players` is (backend, tokenizer, rollout config, accelerator); None when `train.heldout_episodes` is 0.
    """
    count = cfg.train.heldout_episodes
    if not count:
        return None
    seeds = heldout_seeds(cfg.task.base_seed, cfg.train.steps, groups, count)
    first = load_start(run_dir)
    if first is None and start == 0:
        first = evaluate(tasks, seeds, *players)
        if players[-1].is_main_process:
            save_start(run_dir, first)
    return {"seeds": seeds, "start": first}


def save_start(run_dir: Path, result: Mapping[str, Any]) -> None:
    write_text_atomic(run_dir / START_FILE, json.dumps(result, indent=2, allow_nan=False))


def load_start(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / START_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def heldout_section(
    seeds: Sequence[int],
    start: Mapping[str, Any] | None,
    trained: Mapping[str, Any],
    baselines: Mapping[str, Sequence[Mapping[str, Any]]],
) -> dict[str, Any]:
    """summary.json's "heldout": per task and per game the starting and the trained model, and per game the
    trivial baselines (random legal move, best constant) that the run's checks computed."""

    def side(kind: str, name: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"trained": trained[kind].get(name)}
        entry["start"] = (start or {}).get(kind, {}).get(name)
        return entry

    games = {}
    for game in trained["games"]:
        games[game] = {**side("games", game), "baselines": list(baselines.get(game.split("#")[0], []))}
    return {
        "episodes_per_task": len(seeds),
        "seeds": [seeds[0], seeds[-1]] if seeds else [],
        "tasks": {name: side("tasks", name) for name in trained["tasks"]},
        "games": games,
    }


def _cell(rate: Mapping[str, Any] | None) -> str:
    if not rate or not rate.get("n"):
        return "-"
    return f"{100 * rate['value']:.1f} [{100 * rate['low']:.1f}, {100 * rate['high']:.1f}] n={rate['n']}"


def table_rows(section: Mapping[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(what, start, trained, random, best constant) rows of the end table, success in % with 95% CIs."""

    def baseline(rows: Sequence[Mapping[str, Any]], policy: str) -> str:
        row = next((r for r in rows if r.get("policy") == policy), None)
        return _cell(row) if row is None or row.get("method") != "exact" else f"{100 * row['value']:.1f} (exact)"

    out = []
    for name, entry in section.get("tasks", {}).items():
        out.append((f"task {name}", _cell(entry["start"]), _cell(entry["trained"]), "", ""))
    for game, entry in section.get("games", {}).items():
        rows = entry.get("baselines", [])
        out.append(
            (game, _cell(entry["start"]), _cell(entry["trained"]), baseline(rows, "random"), baseline(rows, "constant"))
        )
    return out
