"""The evaluation run: per model, play the games and answer the benchmarks; then the table and the extras.

    plan = prepare(EvalConfig(models=["embedded"], suites=["games", "math"]))   # every error here, no model loaded
    summary = execute(plan)                                                      # table.md, table.csv, results.json

`execute` loads one model at a time and appends every finished item to `<out>/items.jsonl`; a resumed run skips
what is there and does not even load a model that has nothing left. The table is computed from that file, over
exactly the items and seeds of this run (a smaller --limit on resume shows only its items).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from gift.evaluation.baselines import BASELINE_NOTE, eval_baselines
from gift.evaluation.benchmarks_eval import run_benchmark
from gift.evaluation.extras import exploitability_markdown, model_exploitability, run_lm_eval
from gift.evaluation.games_eval import derive_seed, play_episodes, run_settings
from gift.evaluation.loading import load_model, release, run_prompt
from gift.evaluation.matches import rate_players
from gift.evaluation.plan import EXPLOIT_SUITE, EvalConfig, GameJob, Plan, opponent_text, prepare
from gift.evaluation.report import TableRow, column_of, summarise, write_report

__all__ = ["EvalConfig", "EvalSummary", "Plan", "build_rows", "execute", "prepare"]
ModelLoader = Callable[..., Any]


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _episode_ids(job: GameJob) -> list[str]:
    return [f"episode-{s}" for s in range(1, job.episodes + 1)]


def _pending(plan: Plan, label: str) -> bool:
    """Whether anything is left to generate for this model (a finished model is not even loaded)."""
    for seed in plan.seeds:
        for job in plan.games:
            if any(not plan.store.has(label, job.suite, i, seed) for i in _episode_ids(job)):
                return True
        for suite, items in plan.benchmarks.items():
            if any(not plan.store.has(label, suite, it.id, seed) for it in items):
                return True
    return False


def _run_model(plan: Plan, model: Any, load: ModelLoader, log: Callable[[str], None]) -> None:
    label, store = model.label, plan.store
    opponents: dict[str, Any] = {}
    source = getattr(model, "source", None)
    run = run_prompt(source) if plan.cfg.run_prompts and source is not None else None
    settings = plan.game_settings
    if run is not None:
        settings = run_settings(settings, run, plan.cfg.max_new_tokens_given)
        if plan.cfg.system_prompt is not None:
            settings = replace(settings, system_prompt=plan.cfg.system_prompt or None)
        log(f"[{label}] playing the games with {run.describe()} (--no-run-prompt: the evaluation defaults)")
    try:
        for seed in plan.seeds:
            for job in plan.games:
                todo = [
                    s
                    for s in range(1, job.episodes + 1)
                    if not store.has(label, job.suite, f"episode-{s}", seed)
                ]
                if not todo:
                    continue
                options = dict(job.options)
                if run is not None and "parser" not in options:
                    options["parser"] = run.parser(job.game_id)
                if job.policy_opponent is not None:
                    options["opponent"] = _policy_opponent(job, opponents, plan, load)
                log(f"[{label}] {job.suite} seed {seed}: {len(todo)} episodes")

                def save(records: list[dict[str, Any]], job: GameJob = job, seed: int = seed) -> None:
                    store.add({"model": label, "suite": job.suite, "seed": seed, **r} for r in records)

                play_episodes(job.game_id, options, todo, model, settings, derive_seed(seed, label), save)
            for suite, items in plan.benchmarks.items():
                todo_items = [it for it in items if not store.has(label, suite, it.id, seed)]
                if todo_items:
                    log(f"[{label}] {suite} seed {seed}: {len(todo_items)} items")
                    run_benchmark(model, suite, todo_items, seed, plan.bench_settings, store.add, plan.judge)
    finally:
        for handle in opponents.values():
            release(handle.loaded)


@dataclass
class _OpponentHandle:
    opponent: Any
    loaded: Any


def _policy_opponent(job: GameJob, cache: dict[str, Any], plan: Plan, load: ModelLoader) -> Any:
    """A `PolicyOpponent` for a checkpoint opponent, loaded once per evaluated model."""
    from gift.opponents.policy import PolicyOpponent

    source = job.policy_opponent
    assert source is not None
    if source.label not in cache:
        loaded = load(source, backend="hf", max_batch=1, merged_dir=plan.out / "merged")
        opponent = PolicyOpponent(
            loaded.backend, loaded.tokenizer, temperature=plan.cfg.temperature, max_new_tokens=200
        )
        cache[source.label] = _OpponentHandle(opponent, loaded)
    return cache[source.label].opponent


def _suite_items(plan: Plan) -> dict[str, list[str]]:
    items = {job.suite: _episode_ids(job) for job in plan.games}
    items.update({suite: [it.id for it in its] for suite, its in plan.benchmarks.items()})
    return items


def build_rows(plan: Plan) -> tuple[list[TableRow], dict[str, Any]]:
    """The table rows from the stored records, plus per-model details (exclusions, end reasons)."""
    rows, details = [], {}
    for source in plan.sources:
        cells: dict[str, Any] = {}
        detail: dict[str, Any] = {}
        for suite, ids in _suite_items(plan).items():
            records = plan.store.select(source.label, suite, ids, plan.seeds)
            ends: dict[str, int] = {}
            for r in records:
                key = str(r.get("end_reason") or r.get("outcome") or r.get("excluded") or "")
                if key:
                    ends[key] = ends.get(key, 0) + 1
            detail[suite] = {"records": len(records), "outcomes": ends}
            if (column := column_of(suite)) is not None:
                cells[column] = summarise(records, suite, plan.seeds)
        rows.append(TableRow(source.label, cells))
        details[source.label] = detail
    return rows, details


def _notes(plan: Plan, rows: list[TableRow]) -> list[str]:
    cfg = plan.cfg
    notes = [
        f"Sampling: temperature {cfg.temperature}, top-p {cfg.top_p}, at most {cfg.max_new_tokens} new tokens, "
        f"{len(plan.seeds)} seed(s); prompt = system + item + answer-format instruction; answer = <answer> block.",
        "Games: a fresh single-turn prompt every turn; success = the game's success flag (TicTacToe: a win, from "
        "the empty board, random first player); episodes whose opponent failed are excluded. "
        + "; ".join(f"{g.suite}: {g.episodes} episodes (seeds 1..{g.episodes})" + (
            f" vs {opponent_text(g)}" if "opponent" in g.options or g.policy_opponent else "") for g in plan.games),
        "Avg = mean of MMLU, MMLU-Pro, CommonGen and SocialIQA (n/a unless all four are present).",
        *plan.notes,
    ]  # fmt: skip
    for row in rows:
        for column, cell in row.cells.items():
            if cell is not None and cell.excluded:
                what = "judge gave no verdict or failed" if column == "CommonGen" else "opponent failed"
                notes.append(f"{row.model}: {column}: {cell.excluded} item(s) excluded ({what}).")
    return notes


@dataclass
class EvalSummary:
    out: Path
    rows: list[TableRow]
    notes: list[str]
    paths: dict[str, Path]
    extra: dict[str, Any]


def execute(
    plan: Plan, model_loader: ModelLoader | None = None, log: Callable[[str], None] = _log
) -> EvalSummary:
    """Run the plan: every model's games and benchmarks, then the table and the extras."""
    load = model_loader or load_model
    cfg = plan.cfg
    for source in plan.sources:
        if not _pending(plan, source.label):
            log(f"[{source.label}] every item is already in {plan.store.path}; nothing to generate")
            continue
        log(f"[{source.label}] loading")
        model = load(source, backend=cfg.backend, max_batch=cfg.max_batch, merged_dir=plan.out / "merged")
        try:
            _run_model(plan, model, load, log)
        finally:
            release(model)
    rows, details = build_rows(plan)
    baselines = eval_baselines(plan.games, cfg.baseline_episodes) if cfg.baselines else {}
    notes = _notes(plan, rows) + ([BASELINE_NOTE] if baselines else [])
    extra: dict[str, Any] = {"settings": _settings(plan), "details": details}
    if cfg.exploitability and plan.sources:
        extra["exploitability"] = _exploitability(plan)
    if cfg.ratings:
        extra["ratings"] = _ratings(plan, load, log)
    if cfg.harness:
        extra["harness"] = {}
        for source in plan.sources:
            log(f"[{source.label}] lm-eval: {', '.join(cfg.tasks)}")
            extra["harness"][source.label] = run_lm_eval(source.weights, source.adapter, cfg.tasks, cfg.limit)
    paths = write_report(plan.out, rows, notes, extra, baselines)
    return EvalSummary(plan.out, rows, notes, paths, extra)


def _settings(plan: Plan) -> dict[str, Any]:
    cfg = plan.cfg
    return {
        "models": cfg.models, "suites": [j.suite for j in plan.games] + list(plan.benchmarks), "seeds": plan.seeds,
        "temperature": cfg.temperature, "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens,
        "limit": cfg.limit, "backend": cfg.backend, "opponents": {g.suite: opponent_text(g) for g in plan.games},
        "judge_model": (cfg.judge or {}).get("model"), "created": datetime.now().isoformat(timespec="seconds"),
    }  # fmt: skip


def _exploitability(plan: Plan) -> dict[str, Any]:
    ids = _suite_items(plan)
    ttt_suite = EXPLOIT_SUITE if EXPLOIT_SUITE in ids else "tictactoe-v0"
    results = {}
    for source in plan.sources:
        matrix = plan.store.select(source.label, "matrix-v0", ids.get("matrix-v0", []), plan.seeds)
        ttt = plan.store.select(source.label, ttt_suite, ids.get(ttt_suite, []), plan.seeds)
        results[source.label] = model_exploitability(matrix, ttt)
    (plan.out / "exploitability.md").write_text(exploitability_markdown(results))
    return results


def _ratings(plan: Plan, load: ModelLoader, log: Callable[[str], None]) -> dict[str, Any]:
    cfg = plan.cfg
    players: dict[str, Any] = {}
    try:
        for source in plan.sources:
            log(f"[{source.label}] loading for the ratings")
            players[source.label] = load(source, backend=cfg.backend, max_batch=cfg.max_batch,
                                         merged_dir=plan.out / "merged")  # fmt: skip
        players.update(plan.rating_bots)
        seeds = list(range(1, cfg.rating_seeds + 1))
        ratings, records, text = rate_players(players, seeds, plan.game_settings)
    finally:
        for name, player in players.items():
            if name not in plan.rating_bots:
                release(player)
    (plan.out / "ratings.md").write_text(text)
    with (plan.out / "ratings.jsonl").open("w") as fh:
        fh.writelines(json.dumps(r, default=str) + "\n" for r in records)
    return {name: {"rating": r.rating, "low": r.low, "high": r.high, "games": r.games, "score": r.score}
            for name, r in ratings.items()}  # fmt: skip
