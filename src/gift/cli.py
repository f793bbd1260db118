"""The `gift` command: list and check games, play them in the terminal, train and evaluate.

    gift games
    gift check-env tictactoe-v0 --episodes 50
    gift play tictactoe-v0 --opponent perfect
    gift play tictactoe-v0 --seat watch --player random --opponent perfect
    gift train configs/f_i2_nested.yaml algo.lr=2e-6
    gift eval --help
    gift study studies/nested-vs-mixed-cpu.yaml

User errors (a bad id, option, config key or missing file) print one line to stderr and exit with status 2;
a failed env check exits with 1. Training and evaluation modules are imported only by their subcommands.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from gift.errors import ConfigError

NOT_AVAILABLE = "{what} is not available in this build"


def _parser() -> argparse.ArgumentParser:
    from gift import __version__

    parser = argparse.ArgumentParser(
        prog="gift", description="Train language models by reinforcement learning on text games (GIFT)."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("games", help="list the registered games", description="List the registered games.")

    check = commands.add_parser(
        "check-env",
        help="play random episodes and check a game against the game API",
        description="Play random episodes of a game and check the API contract the trainer relies on.",
    )
    check.add_argument("id", help="a registered game id, or a nested preset (F+I1, F+I2, F+I3, I2)")
    check.add_argument("--episodes", type=int, default=20, help="random episodes to play (default 20)")
    check.add_argument("--seed", type=int, default=0, help="first episode seed (default 0)")

    play = commands.add_parser(
        "play",
        help="play a game in the terminal, or watch two players",
        description="Play a game in the terminal: one answer per line on stdin (no tags needed). "
        "With --seat watch, a bot or a model takes your seat and every move is printed.",
    )
    play.add_argument("game", help="a registered game id, or a nested preset (F+I1, F+I2, F+I3, I2)")
    play.add_argument(
        "--opponent",
        metavar="SPEC",
        help="the game's bot (random, perfect, epsilon, epsilon:epsilon=0.2 ...) or 'openai' with --endpoint",
    )
    play.add_argument("--seat", choices=("human", "watch"), default="human", help="who plays (default human)")
    play.add_argument("--seed", type=int, default=None, help="episode seed (default: random, printed)")
    play.add_argument("--player", metavar="BOT", help="--seat watch: a bot of the game plays your seat")
    play.add_argument(
        "--model",
        metavar="M",
        help="--seat watch: a model plays your seat ('embedded', a folder or a hub id)",
    )
    play.add_argument("--endpoint", metavar="URL", help="OpenAI-compatible base URL for --opponent openai")
    play.add_argument("--endpoint-model", metavar="NAME", help="model name at --endpoint")
    play.add_argument(
        "-o", "--option", action="append", default=[], metavar="KEY=VALUE", help="a game option (repeatable)"
    )
    play.add_argument("--temperature", type=float, default=0.5, help="--model sampling temperature (0.5)")
    play.add_argument("--max-new-tokens", type=int, default=None,
                      help="--model tokens per reply (default: a run's own cap, else 64)")  # fmt: skip

    train = commands.add_parser(
        "train",
        help="train a model (config file and key=value overrides)",
        description="Train with a YAML config (default: the built-in defaults) and section.key=value overrides.",
    )
    train.add_argument("items", nargs="*", metavar="[CONFIG] [KEY=VALUE]", help="config file, then overrides")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run saved in RUN_DIR")

    study = commands.add_parser(
        "study",
        help="run and compare a grid of training runs (settings x modes x seeds)",
        description="Run the study's missing runs (finished ones are skipped, interrupted ones resumed), then "
        "write its tables and figures (mean and 95% CI across seeds, paired differences between modes).",
    )
    study.add_argument("file", metavar="STUDY.yaml", help="the study file")
    study.add_argument("--dry-run", action="store_true", help="list the runs and what each would do")
    study.add_argument("--aggregate-only", action="store_true", help="only write tables and figures")
    study.add_argument("--no-wait", action="store_true", help="executor slurm: submit and return")

    commands.add_parser(
        "eval",
        help="evaluate a model on the games and benchmarks (gift eval --help)",
        add_help=False,
        description="Evaluate a model; every argument is passed to the evaluation command.",
    )
    return parser


# ------------------------------------------------------------------------------------------------ subcommands
def _games() -> int:
    from gift.compose import PRESETS
    from gift.games.registry import game_specs

    specs = game_specs()
    presets = [(name, ", ".join(games)) for name, games in PRESETS.items()]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title="Registered games")
        table.add_column("id", style="bold")
        table.add_column("description")
        for s in specs:
            table.add_row(s.id, s.description)
        console = Console(highlight=False)
        console.print(table)
        console.print("Nested presets (play or check them like a game id):")
        for name, games in presets:
            console.print(f"  [bold]{name}[/bold]: {games}")
        return 0
    width = max(len(s.id) for s in specs)
    for s in specs:
        print(f"{s.id:<{width}}  {s.description}")
    print("\nNested presets (play or check them like a game id):")
    for name, games in presets:
        print(f"  {name}: {games}")
    return 0


def _check_env(game_id: str, episodes: int, seed: int) -> int:
    from gift.compose import PRESETS, NestedGame
    from gift.games.checker import EnvCheckError, check_env
    from gift.games.registry import spec

    if episodes < 1:
        raise ConfigError(f"--episodes={episodes} must be >= 1")
    if game_id in PRESETS:
        game = NestedGame(games=game_id)
    else:
        spec(game_id)
        game = game_id
    try:
        report = check_env(game, episodes=episodes, seed=seed)
    except EnvCheckError as exc:
        print(f"FAILED {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0


def _play(args: argparse.Namespace) -> int:
    from gift.play import opponent_spec, parse_options, run_play

    return run_play(
        args.game,
        seat=args.seat,
        opponent=opponent_spec(args.opponent, args.endpoint, args.endpoint_model),
        seed=args.seed,
        player=args.player,
        model=args.model,
        options=parse_options(args.option),
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
    )


def _split_train_items(items: Sequence[str]) -> tuple[str | None, list[str]]:
    """The config path (the one item without '=') and the overrides."""
    paths = [item for item in items if "=" not in item]
    if len(paths) > 1:
        raise ConfigError(f"expected one config file, got {len(paths)}: {', '.join(paths)}")
    return (paths[0] if paths else None), [item for item in items if "=" in item]


def _train(items: Sequence[str], resume: str | None) -> int:
    import gift.config

    config_path, overrides = _split_train_items(items)
    if resume is not None and not Path(resume).is_dir():
        raise ConfigError(f"--resume {resume!r}: no such run folder")
    # Validate the config the run will use, so bad keys and values fail before torch is imported.
    check_path = config_path
    if check_path is None and resume is not None:
        from gift.resume import resume_config_path

        check_path = resume_config_path(resume)
    default_path = getattr(gift.config, "default_config_path", None)
    if check_path is None and callable(default_path):
        check_path = str(default_path())
    gift.config.load_config(check_path, overrides)
    try:
        from gift.trainer import main as train_main
    except ModuleNotFoundError as err:
        return _unavailable("training", err)
    status = train_main(config_path, overrides, resume)
    return status if isinstance(status, int) else 0


def _eval(argv: list[str]) -> int:
    try:
        from gift.evaluation import cli_main
    except ImportError as err:
        if any(a in ("-h", "--help") for a in argv):
            print("usage: gift eval [ARGS ...]\n\nEvaluate a model on the games and benchmarks.")
            print(NOT_AVAILABLE.format(what="evaluation"))
            return 0
        if isinstance(err, ModuleNotFoundError) or "cli_main" in str(err):
            return _unavailable("evaluation", err)
        raise
    status = cli_main(argv)
    return status if isinstance(status, int) else 0


def _unavailable(what: str, err: ModuleNotFoundError | ImportError) -> int:
    """Say in one line why a heavy subcommand cannot run: our module is absent, or a dependency is."""
    missing = getattr(err, "name", None) or ""
    if missing and not missing.startswith("gift"):
        print(f"error: {what} needs the package {missing!r}: pip install 'gift-rl[train]'", file=sys.stderr)
    else:
        print(f"error: {NOT_AVAILABLE.format(what=what)}", file=sys.stderr)
    return 2


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# ------------------------------------------------------------------------------------------------------- main
def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The parser of one subcommand, so usage errors show that subcommand's usage line."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `gift` and `python -m gift`; returns the exit status."""
    # Offline unless asked otherwise: a missing model or dataset is then one line at once, not a minute of
    # retries and a traceback (HF_HUB_OFFLINE=0 allows downloads).
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(name, "1")
    parser = _parser()
    args, extra = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if args.command != "eval" and extra:
        _subparser(parser, args.command).error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "games":
            return _games()
        if args.command == "check-env":
            return _check_env(args.id, args.episodes, args.seed)
        if args.command == "play":
            return _play(args)
        if args.command == "train":
            return _train(args.items, args.resume)
        if args.command == "study":
            from gift.study import run_study

            return run_study(args.file, args.dry_run, args.aggregate_only, wait=not args.no_wait)
        return _eval(extra)
    except ConfigError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or _one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `gift games | head -1`); stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
