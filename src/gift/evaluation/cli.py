"""`gift eval`: the paper's results table in one command.

    gift eval --model embedded --model runs/x/checkpoints/step-000200 --suite games,math --episodes 100
    gift eval --model M --data mmlu=data/mmlu.jsonl --judge-endpoint http://127.0.0.1:8000/v1 --judge-model J
    gift eval --model M --out runs/eval-1 --resume          # continue a crashed evaluation

Every argument error, missing data set or unknown suite is reported as one line, with exit status 2, before any
model loads. Results go to --out (default runs/eval-<timestamp>): table.md, table.csv, results.json, items.jsonl,
and with --exploitability / --ratings also exploitability.md / ratings.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from gift.errors import ConfigError
from gift.evaluation.games_eval import DEFAULT_EPISODES, canonical_game, has_opponent, table_games

_DATA_ALIASES = {
    "math": "math500",
    "mmlu_pro": "mmlu-pro",
    "social_iqa": "socialiqa",
    "common_gen": "commongen",
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument as a ConfigError (one line) instead of usage text and exit."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"gift eval: {message} (see gift eval --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="gift eval", description="Evaluate models on the GIFT games and benchmarks; write the table."
    )
    a = p.add_argument
    a(
        "--model",
        action="append",
        default=[],
        help="embedded, a model/checkpoint/run folder or a hub id; repeat",
    )
    a("--suite", action="append", default=[], help="comma list of games,matrix,tictactoe,spy,math,mmlu,mmlu-pro,"
      "socialiqa,commongen (default: games,math,mmlu,mmlu-pro,socialiqa,commongen)")  # fmt: skip
    a(
        "--data",
        action="append",
        default=[],
        metavar="BENCH=SOURCE",
        help="a file/folder or hf:NAME[:CONFIG][:SPLIT]",
    )
    a("--data-dir", default="data/eval", help="where BENCH.jsonl (etc.) is looked for without --data")
    a(
        "--episodes",
        action="append",
        default=[],
        metavar="[GAME=]N",
        help=f"episodes per game (default {DEFAULT_EPISODES})",
    )
    a("--opponent", action="append", default=[], metavar="GAME=SPEC",
      help="bot name[:k=v,...], openai (with --endpoint), or model:PATH for a checkpoint")  # fmt: skip
    a(
        "--opponent-tries",
        type=int,
        default=None,
        help="tries an opponent gets per move (default: TicTacToe 1)",
    )
    a("--endpoint", help="OpenAI-compatible base URL: opponent of every game not given another --opponent")
    a("--endpoint-model", help="model name at --endpoint")
    a("--endpoint-key-env", default="OPENAI_API_KEY", help="environment variable holding the endpoint's key")
    a("--judge-endpoint", help="OpenAI-compatible base URL of the CommonGen judge")
    a("--judge-model", help="judge model name")
    a("--judge-key-env", default="OPENAI_API_KEY", help="environment variable holding the judge's key")
    a(
        "--temperature",
        type=float,
        default=0.5,
        help="sampling temperature (default 0.5, as in the paper; 0 greedy)",
    )
    a("--top-p", type=float, default=1.0, help="nucleus sampling (default 1.0: off)")
    a("--max-new-tokens", type=int, default=None,
      help="reply length cap in tokens (default 600, or a run's own cap)")  # fmt: skip
    a("--no-run-prompt", dest="run_prompts", action="store_false",
      help="play a run's checkpoint with the evaluation defaults, not the run's prompt settings")  # fmt: skip
    a("--limit", type=int, default=None, help="first N items of every benchmark")
    a("--seeds", type=int, default=1, help="repeat the generation with K seeds and report the spread")
    a("--out", default=None, help="output folder (default runs/eval-<timestamp>)")
    a("--resume", action="store_true", help="continue the evaluation in --out, skipping finished items")
    a("--backend", default="hf", help="hf (default) or vllm")
    a("--max-batch", type=int, default=16, help="most prompts per forward pass (hf backend)")
    a("--system-prompt", default=None, help="replace the system prompt of games and benchmarks")
    a("--exploitability", action="store_true", help="matrix and TicTacToe exploitability → exploitability.md")
    a("--ratings", action="store_true", help="TicTacToe ratings among the models and bots → ratings.md")
    a(
        "--rating-players",
        action="append",
        default=[],
        help="comma list of bots (default random,epsilon,perfect)",
    )
    a("--rating-seeds", type=int, default=10, help="seeds per pair of players (each played in both seats)")
    a(
        "--no-baselines",
        dest="baselines",
        action="store_false",
        help="leave out the trivial policies' rows (random legal move, best constant answer, perfect player)",
    )
    a(
        "--baseline-episodes",
        type=int,
        default=None,
        help="episodes per game for the simulated baselines (default: the game's own --episodes)",
    )
    a("--harness", default=None, help="lm-eval: also run lm_eval.simple_evaluate on --tasks")
    a("--tasks", action="append", default=[], help="comma list of lm-eval tasks")
    return p


def _commas(values: Sequence[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _pair(value: str, flag: str, example: str) -> tuple[str, str]:
    key, sep, rest = value.partition("=")
    if not sep or not key.strip() or not rest.strip():
        raise ConfigError(f"{flag} {value!r} must look like {example}")
    return key.strip(), rest.strip()


def _int(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{flag} {text!r} must be an integer") from None


def parse_opponent(spec: str, args: argparse.Namespace) -> Any:
    """An opponent option from SPEC: a bot (NAME[:k=v,...]), openai (needs --endpoint), or model:PATH."""
    if spec.startswith(("model:", "checkpoint:")):
        return {"kind": "model", "path": spec.split(":", 1)[1]}
    from gift.play import parse_spec

    kind, options = parse_spec(spec, "--opponent")
    if kind == "openai":
        return _endpoint_opponent(args, options)
    return {"kind": kind, **options} if options else kind


def _endpoint_opponent(args: argparse.Namespace, options: dict[str, Any] | None = None) -> dict[str, Any]:
    if not args.endpoint or not args.endpoint_model:
        raise ConfigError("--opponent GAME=openai needs --endpoint URL and --endpoint-model NAME")
    return {"kind": "openai", "base_url": args.endpoint, "model": args.endpoint_model,
            "api_key_env": args.endpoint_key_env, **(options or {})}  # fmt: skip


def config_from_args(args: argparse.Namespace) -> Any:
    """An `EvalConfig` from parsed arguments (one-line ConfigError on a bad value)."""
    from gift.evaluation.plan import DEFAULT_SUITES, EvalConfig

    data: dict[str, str] = {}
    for value in args.data:
        bench, source = _pair(value, "--data", "BENCH=SOURCE, e.g. mmlu=data/mmlu.jsonl")
        data[_DATA_ALIASES.get(bench, bench)] = source
    default_episodes, episodes = DEFAULT_EPISODES, {}
    for value in args.episodes:
        if "=" in value:
            game, count = _pair(value, "--episodes", "N or GAME=N, e.g. tictactoe-v0=100")
            episodes[canonical_game(game)] = _int(count, "--episodes")
        else:
            default_episodes = _int(value, "--episodes")
    opponents: dict[str, Any] = {}
    for value in args.opponent:
        game, spec = _pair(value, "--opponent", "GAME=SPEC, e.g. tictactoe-v0=perfect")
        game_id = canonical_game(game)
        if not has_opponent(game_id):
            with_one = ", ".join(g for g in table_games() if has_opponent(g))
            raise ConfigError(f"--opponent {value!r}: {game_id} has no opponent; games with one: {with_one}")
        opponents[game_id] = parse_opponent(spec, args)
    if args.endpoint or args.endpoint_model:
        endpoint = _endpoint_opponent(args)
        for game_id in table_games():  # the endpoint plays every game not given another opponent
            if has_opponent(game_id):
                opponents.setdefault(game_id, endpoint)
    judge = None
    if args.judge_endpoint or args.judge_model:
        if not (args.judge_endpoint and args.judge_model):
            raise ConfigError("the CommonGen judge needs both --judge-endpoint URL and --judge-model NAME")
        judge = {
            "base_url": args.judge_endpoint,
            "model": args.judge_model,
            "api_key_env": args.judge_key_env,
        }
    return EvalConfig(
        models=list(args.model),
        suites=_commas(args.suite) or list(DEFAULT_SUITES),
        data=data,
        data_dir=args.data_dir,
        episodes=episodes,
        default_episodes=default_episodes,
        default_episodes_given=any("=" not in value for value in args.episodes),
        opponents=opponents,
        opponent_tries=args.opponent_tries,
        judge=judge,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=600 if args.max_new_tokens is None else args.max_new_tokens,
        max_new_tokens_given=args.max_new_tokens is not None,
        run_prompts=args.run_prompts,
        limit=args.limit,
        seeds=args.seeds,
        out=args.out,
        resume=args.resume,
        backend=args.backend,
        max_batch=args.max_batch,
        system_prompt=args.system_prompt,
        exploitability=args.exploitability,
        ratings=args.ratings,
        rating_players=_commas(args.rating_players),
        rating_seeds=args.rating_seeds,
        harness=args.harness,
        tasks=_commas(args.tasks),
        baselines=args.baselines,
        baseline_episodes=args.baseline_episodes,
    )


def _error(message: str) -> int:
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


def cli_main(argv: Sequence[str] | None = None, *, model_loader: Any = None) -> int:
    """Run `gift eval` with `argv`; returns the exit status (0 done, 2 bad arguments or data, 130 interrupted).

    `model_loader` replaces `gift.evaluation.loading.load_model` (same signature), e.g. to wrap the backend.
    """
    from gift.evaluation.runner import execute, prepare

    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        plan = prepare(config_from_args(args))
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    except ConfigError as exc:
        return _error(str(exc))
    try:
        summary = execute(plan, model_loader=model_loader)
    except ConfigError as exc:
        return _error(str(exc))
    except KeyboardInterrupt:
        print(f"\ninterrupted; finished items are kept in {plan.store.path}; continue with "
              f"gift eval ... --out {plan.out} --resume", file=sys.stderr)  # fmt: skip
        return 130
    print(summary.paths["markdown"].read_text(), end="")
    written = ", ".join(str(p) for p in summary.paths.values())
    extras = [n for n in ("exploitability.md", "ratings.md") if (summary.out / n).is_file()]
    print(f"wrote {written}" + (f" and {', '.join(str(summary.out / n) for n in extras)}" if extras else ""))
    return 0
