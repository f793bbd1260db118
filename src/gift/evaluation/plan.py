"""Everything checked before a model loads: the options, the models, the data, the opponents, the judge.

`prepare(EvalConfig(...))` returns a `Plan` or raises `ConfigError` with one line; only then does `runner.execute`
load weights. Reading every data set here (rather than when its turn comes) means a typo in the last `--data`
fails in a second, not after an hour of generation.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gift.errors import ConfigError, check_range
from gift.evaluation.benchmarks_eval import BENCHMARK_SYSTEM_PROMPT
from gift.evaluation.datasets import FILE_TYPES, SUGGESTED_HF_SOURCES, BenchmarkItem, load_items
from gift.evaluation.extras import check_harness
from gift.evaluation.games_eval import (
    DEFAULT_EPISODES,
    GenerationSettings,
    canonical_game,
    game_options,
    is_perfect_opponent,
    table_games,
)
from gift.evaluation.loading import BACKENDS, ModelSource, resolve_source
from gift.evaluation.matches import make_bot
from gift.evaluation.store import ResultStore
from gift.games.registry import make
from gift.games.registry import spec as game_spec
from gift.rollout.transcript import DEFAULT_SYSTEM_PROMPT

BENCHMARK_NAMES = ("math", "mmlu", "mmlu-pro", "socialiqa", "commongen")
DEFAULT_SUITES = ("games", "math", "mmlu", "mmlu-pro", "socialiqa", "commongen")
BENCHMARK_SUITES = ("mmlu", "mmlu-pro", "socialiqa", "commongen")
GENERATED_MATH_ITEMS = 500
EXPLOIT_SUITE = "tictactoe-v0@perfect"
"""Extra TicTacToe games against the perfect player, played for --exploitability when the table's opponent differs."""


@dataclass
class EvalConfig:
    models: list[str] = field(default_factory=list)
    suites: Sequence[str] = DEFAULT_SUITES
    data: dict[str, str] = field(default_factory=dict)
    data_dir: str = "data/eval"
    episodes: dict[str, int] = field(default_factory=dict)
    """Game id → episodes; games not named play `default_episodes`."""
    default_episodes: int = DEFAULT_EPISODES
    default_episodes_given: bool = False
    """--episodes N was given: it also sizes the generated MATH suite (default 500 problems)."""
    opponents: dict[str, Any] = field(default_factory=dict)
    """Game id → opponent option (bot name, {"kind": ...}, or {"kind": "model", "path": ...} for a checkpoint)."""
    opponent_tries: int | None = None
    judge: dict[str, Any] | None = None
    """Keyword arguments of `OpenAIChatOpponent` for the CommonGen judge (None: CommonGen is n/a)."""
    temperature: float = 0.5
    top_p: float = 1.0
    max_new_tokens: int = 600
    max_new_tokens_given: bool = False
    """--max-new-tokens was given: it wins over a run's own reply cap."""
    run_prompts: bool = True
    """A run's checkpoint plays the games with the run's prompt settings (system prompt, instruction, parser,
    reply prefix, reply cap)."""
    limit: int | None = None
    seeds: int = 1
    out: str | None = None
    resume: bool = False
    backend: str = "hf"
    max_batch: int = 16
    system_prompt: str | None = None
    """Overrides both default system prompts (games: the training one; benchmarks: a plain assistant one)."""
    exploitability: bool = False
    ratings: bool = False
    rating_players: list[str] = field(default_factory=list)
    rating_seeds: int = 10
    harness: str | None = None
    tasks: list[str] = field(default_factory=list)
    baselines: bool = True
    """Add the trivial policies' rows (random, best constant, perfect) to the table."""
    baseline_episodes: int | None = None
    """Episodes per game for the simulated baselines (None: the game's own episode count and seeds)."""


@dataclass
class GameJob:
    suite: str
    game_id: str
    options: dict[str, Any]
    episodes: int
    policy_opponent: ModelSource | None = None


@dataclass
class Plan:
    cfg: EvalConfig
    out: Path
    sources: list[ModelSource]
    seeds: list[int]
    games: list[GameJob]
    benchmarks: dict[str, list[BenchmarkItem]]
    judge: Any
    store: ResultStore
    game_settings: GenerationSettings
    bench_settings: GenerationSettings
    rating_bots: dict[str, Any]
    notes: list[str]


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name}={value!r} must be an integer >= 1")


def suite_names() -> tuple[str, ...]:
    """Every `--suite` name: "games", each evaluation game (by short name), the benchmarks."""
    return ("games", *(game_spec(g).alias for g in table_games()), *BENCHMARK_NAMES)


def expand_suites(suites: Sequence[str]) -> list[str]:
    """ "games" → every game of the games suite (matrix, tictactoe, spy, plugins); a game may also be named by
    id or MODULE:ID; duplicates dropped; unknown names rejected."""
    out: list[str] = []
    for suite in suites:
        if suite == "games":
            names = [game_spec(g).id for g in table_games()]
        elif suite in BENCHMARK_NAMES:
            names = [suite]
        else:
            try:
                names = [canonical_game(suite)]
            except ConfigError:
                raise ConfigError(f"unknown suite {suite!r}; allowed: {', '.join(suite_names())}") from None
        for name in names:
            if name not in out:
                out.append(name)
    return out


def default_source(benchmark: str, data_dir: str) -> str | None:
    """A data file or folder for `benchmark` under `data_dir`, if one is there."""
    root = Path(data_dir)
    for stem in dict.fromkeys((benchmark, benchmark.replace("-", "_"))):
        for candidate in (*(root / f"{stem}{ext}" for ext in FILE_TYPES), root / stem):
            if candidate.exists():
                return str(candidate)
    return None


def _load_benchmark(benchmark: str, cfg: EvalConfig) -> list[BenchmarkItem]:
    source = cfg.data.get(benchmark) or default_source(benchmark, cfg.data_dir)
    if source is None:
        raise ConfigError(
            f"{benchmark}: no data; put the items at {Path(cfg.data_dir) / benchmark}.jsonl (or .json/.parquet/.csv, "
            f"or a folder), pass --data {benchmark}=PATH, or --data {benchmark}={SUGGESTED_HF_SOURCES[benchmark]} "
            "when a model hub is reachable"
        )
    return load_items(benchmark, source, cfg.limit)


def _check_numbers(cfg: EvalConfig) -> None:
    check_range("--temperature", cfg.temperature, 0.0)
    check_range("--top-p", cfg.top_p, 1e-6, 1.0)
    for name, value in (("--max-new-tokens", cfg.max_new_tokens), ("--seeds", cfg.seeds),
                        ("--max-batch", cfg.max_batch), ("--rating-seeds", cfg.rating_seeds),
                        ("--episodes", cfg.default_episodes)):  # fmt: skip
        _positive_int(name, value)
    if cfg.limit is not None:
        _positive_int("--limit", cfg.limit)
    if cfg.baseline_episodes is not None:
        _positive_int("--baseline-episodes", cfg.baseline_episodes)
    if cfg.opponent_tries is not None:
        _positive_int("--opponent-tries", cfg.opponent_tries)
    if cfg.backend not in BACKENDS:
        raise ConfigError(f"--backend={cfg.backend!r} is not allowed; choose one of: {', '.join(BACKENDS)}")
    if cfg.backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ConfigError("--backend vllm needs vLLM on a CUDA GPU: pip install -r requirements-gpu.txt")


def _game_job(suite: str, game_id: str, opponent: Any, cfg: EvalConfig) -> GameJob:
    policy = None
    if isinstance(opponent, Mapping) and opponent.get("kind") == "model":
        policy = resolve_source(str(opponent.get("path", "")))
        opponent = None
    options = game_options(game_id, opponent, cfg.opponent_tries)
    if policy is None:
        make(game_id, **options)  # builds the opponent once: a bad bot name or endpoint fails here
    episodes = cfg.episodes.get(game_id, cfg.default_episodes)
    _positive_int(f"--episodes {game_id}", episodes)
    return GameJob(suite, game_id, options, episodes, policy)


def opponent_text(job: GameJob) -> str:
    if job.policy_opponent is not None:
        return f"the model {job.policy_opponent.label}"
    value = job.options.get("opponent")
    if isinstance(value, Mapping):
        extra = ", ".join(f"{k}={v}" for k, v in value.items() if k not in ("kind", "api_key_env"))
        return f"{value.get('kind')}({extra})" if extra else str(value.get("kind"))
    return str(value)


def prepare(cfg: EvalConfig) -> Plan:
    """Check every option, read every data set and build opponents/judge; raise ConfigError on the first problem."""
    _check_numbers(cfg)
    check_harness(cfg.harness, cfg.tasks)
    if cfg.resume and not cfg.out:
        raise ConfigError("--resume needs --out: the folder of the evaluation to continue")
    if len(set(cfg.models)) != len(cfg.models):
        raise ConfigError(f"--model values repeat: {cfg.models}; name each model once")
    if not cfg.models and not cfg.ratings:
        raise ConfigError("--model is required (embedded, a model folder, a checkpoint folder or a hub id)")
    sources = [resolve_source(m) for m in cfg.models]
    suites = expand_suites(cfg.suites) if cfg.models else []
    unknown = [k for k in cfg.data if k not in SUGGESTED_HF_SOURCES]
    if unknown:
        raise ConfigError(
            f"--data {unknown[0]}=…: unknown benchmark; allowed: {', '.join(SUGGESTED_HF_SOURCES)}"
        )
    for game in [*cfg.opponents, *cfg.episodes]:
        if game not in table_games():
            raise ConfigError(
                f"unknown game {game!r} in --opponent/--episodes; allowed: {', '.join(table_games())}"
            )
    notes: list[str] = []
    games = [_game_job(s, s, cfg.opponents.get(s), cfg) for s in suites if s not in BENCHMARK_NAMES]
    benchmarks: dict[str, list[BenchmarkItem]] = {}
    if "math" in suites:
        if "math500" in cfg.data or default_source("math500", cfg.data_dir):
            benchmarks["math500"] = _load_benchmark("math500", cfg)
        else:
            count = cfg.limit or cfg.episodes.get("math-v0") or (
                cfg.default_episodes if cfg.default_episodes_given else GENERATED_MATH_ITEMS
            )
            games.insert(0, GameJob("math-v0", "math-v0", {}, count))
            notes.append(
                f"MATH: {count} problems from the built-in generator (math-v0, seeds 1..{count}), not MATH500; "
                f"pass --data math500=PATH for the paper's set."
            )
    judge = None
    for name in (s for s in suites if s in BENCHMARK_SUITES):
        if name == "commongen" and cfg.judge is None:
            notes.append(
                "CommonGen: n/a; it is scored by a judge model: pass --judge-endpoint URL --judge-model NAME."
            )
            continue
        benchmarks[name] = _load_benchmark(name, cfg)
    if "commongen" in benchmarks:
        from gift.opponents.openai_client import OpenAIChatOpponent

        judge = OpenAIChatOpponent(**{"temperature": 0.0, "max_tokens": 512, **(cfg.judge or {})})
    if cfg.exploitability and cfg.models:
        table_ttt = next((g for g in games if g.game_id == "tictactoe-v0"), None)
        if (
            table_ttt is None
            or table_ttt.policy_opponent
            or not is_perfect_opponent(table_ttt.options["opponent"])
        ):
            job = _game_job(EXPLOIT_SUITE, "tictactoe-v0", "perfect", cfg)
            games.append(job)
    rating_bots: dict[str, Any] = {}
    if cfg.ratings:
        for name in cfg.rating_players or ["random", "epsilon", "perfect"]:
            if name in cfg.models or name in rating_bots:
                raise ConfigError(f"--rating-players: {name!r} is named twice")
            from gift.play import parse_spec

            kind, options = parse_spec(name, "--rating-players")
            rating_bots[name] = make_bot({"kind": kind, **options})
        if len(rating_bots) + len(cfg.models) < 2:
            raise ConfigError("--ratings needs at least two players (models and --rating-players bots)")
    out = Path(cfg.out) if cfg.out else Path("runs") / f"eval-{datetime.now():%Y%m%d-%H%M%S}"
    game_system = cfg.system_prompt if cfg.system_prompt is not None else DEFAULT_SYSTEM_PROMPT
    bench_system = cfg.system_prompt if cfg.system_prompt is not None else BENCHMARK_SYSTEM_PROMPT
    game_settings = GenerationSettings(cfg.temperature, cfg.top_p, cfg.max_new_tokens, game_system or None)
    bench_settings = GenerationSettings(cfg.temperature, cfg.top_p, cfg.max_new_tokens, bench_system or None)
    fingerprint = {
        "temperature": cfg.temperature, "top_p": cfg.top_p, "max_new_tokens": cfg.max_new_tokens,
        "game_system_prompt": game_system, "benchmark_system_prompt": bench_system,
        "opponents": {g.suite: opponent_text(g) for g in games},
        "judge_model": (cfg.judge or {}).get("model"),
    }  # fmt: skip
    store = ResultStore(out, cfg.resume, fingerprint)
    store.write_settings(fingerprint)
    seeds = list(range(1, cfg.seeds + 1))
    return Plan(cfg, out, sources, seeds, games, benchmarks, judge, store, game_settings, bench_settings,
                rating_bots, notes)  # fmt: skip
