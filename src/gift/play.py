"""Playing a game in the terminal on the episode driver: a person in the focal seat, or a player to watch.

Moves are read line by line, so a game can be scripted through a pipe (`printf '2 2\\n1 3\\n' | gift play ...`).
The person answers without the <think>/<answer> tags (the game is built with parser="raw"); the game itself
judges every answer, so an illegal move or garbage gets the same feedback and penalty a model would get, and
the screen says what it cost and how many turns are left. The rules are shown once per game; later turns show
the position (`TextGame.brief`). At the end: the outcome, the rewards and the expected answer
(`TextGame.solution`). In watch mode the focal seat is taken by a scripted bot of the game (from its
registration) or by a language model — a run's checkpoint plays with the run's own prompt settings.
"""

from __future__ import annotations

import inspect
import random
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import yaml

from gift.errors import ConfigError, check_range
from gift.games.base import TextGame
from gift.games.registry import make, spec
from gift.opponents import Opponent, OpponentRequest, resolve_opponent
from gift.rollout.driver import Episode, ModelSeat, TextSeat, derive_seed, drive
from gift.rollout.recorders import ChatSettings, EpisodeLog, FreshRecorder

QUIT_WORDS = frozenset({"quit", "exit", "q"})
HELP_WORDS = frozenset({"help", "?", "moves"})
WATCH_TEMPERATURE = 0.5
"""Sampling temperature of a watched model (the paper's evaluation setting)."""
_NUMBERS = re.compile(r"\s*\(?\s*(-?\d+(?:\s*[,\s]\s*-?\d+)+)\s*\)?\s*")

Chooser = Callable[[str, TextGame], str | None]
"""Given the current observation and the game, the reply to send, or None to end the session."""


# ------------------------------------------------------------------------------------------- building the game
def parse_spec(value: str, flag: str) -> tuple[str, dict[str, Any]]:
    """NAME or NAME:key=value,key=value (values read as YAML scalars) → (NAME, options)."""
    kind, _, rest = value.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} {value!r}: option {item!r} must look like key=value")
        options[key.strip()] = _parse_value(text)
    if not kind.strip():
        raise ConfigError(f"{flag} {value!r} needs a name before the options")
    return kind.strip(), options


def opponent_spec(value: str | None, endpoint: str | None = None, endpoint_model: str | None = None) -> Any:
    """The `opponent` game option for a command-line SPEC: NAME, NAME:key=value,..., or openai (+ endpoint)."""
    if value is None and endpoint is None and endpoint_model is None:
        return None
    kind, options = parse_spec(value or "openai", "--opponent")
    if kind == "openai":
        if not endpoint or not endpoint_model:
            raise ConfigError("--opponent openai needs --endpoint URL and --endpoint-model NAME")
        return {"kind": "openai", "base_url": endpoint, "model": endpoint_model, **options}
    if endpoint or endpoint_model:
        raise ConfigError(f"--endpoint/--endpoint-model only apply to --opponent openai, not {kind!r}")
    return {"kind": kind, **options} if options else kind


def parse_options(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Game options from `key=value` strings (values read as YAML scalars: 3, 0.5, true, [1, 2])."""
    options: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--option {item!r} must look like key=value")
        options[key.strip()] = _parse_value(text)
    return options


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def takes_opponent(game_id: str) -> bool:
    """Whether the registered game has an `opponent` option."""
    return "opponent" in inspect.signature(spec(game_id).load().__init__).parameters


def build_game(
    game: str, parser: str = "raw", opponent: Any = None, options: Mapping[str, Any] | None = None
) -> TextGame:
    """A registered game id or nested preset (F+I2 …), with `opponent` given to every game that has one."""
    from gift.compose import PRESETS

    game_id, opts = game, dict(options or {})
    if game in PRESETS:
        game_id, opts = "nested-v0", {"games": game, **opts}
    spec(game_id)  # an unknown id fails here with the registry's message
    if opponent is not None:
        if game_id == "nested-v0":
            games = opts.get("games")
            names = PRESETS.get(games, ()) if isinstance(games, str) else games or ()
            if not isinstance(names, list | tuple) or not all(isinstance(g, str) for g in names):
                raise ConfigError("--opponent with nested-v0 needs games given as a preset or a list of ids")
            if not any(takes_opponent(g) for g in names):
                raise ConfigError(f"none of the games {', '.join(names)} has an opponent; drop --opponent")
            opts["games"] = [{"id": g, "opponent": opponent} if takes_opponent(g) else g for g in names]
        elif takes_opponent(game_id):
            opts["opponent"] = opponent
        else:
            raise ConfigError(f"{game_id} has no opponent to choose; drop --opponent")
    return make(game_id, **{"parser": parser, **opts})  # an explicit -o parser=... wins


# ------------------------------------------------------------------------------------------------ the screen
@dataclass
class EpisodeResult:
    success: bool
    end_reason: str
    total_reward: float
    """Sum of every step's reward: the outcome plus all penalties."""
    outcome_reward: float
    steps: int
    subgames: list[dict[str, Any]] = field(default_factory=list)
    """Nested games: one record per sub-game (game, reward, success, end_reason, ...)."""


def _playing(game: TextGame) -> TextGame:
    """The (sub-)game being played now."""
    current = getattr(game, "current", None)
    return _playing(current) if isinstance(current, TextGame) and current is not game else game


class Screen:
    """What the terminal shows of one episode: the rules once per game, then the position, the feedback and
    what it cost, and the turns left."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.shown: set[int] = set()
        self.turn = 0

    def before_turn(self, game: TextGame, observation: str) -> None:
        self.turn += 1
        now = _playing(game)
        full = now.render()
        feedback = observation[: -len(full)].strip() if observation.endswith(full) else ""
        if feedback:
            print(f"[{feedback}]", file=self.out)
        if id(now) not in self.shown:
            self.shown.add(id(now))
            print(full, file=self.out)
        else:
            print(now.brief(), file=self.out)
        print(f"(turn {self.turn}, {game.actions_left} action(s) left)", file=self.out, flush=True)

    def after_step(self, reward: float, info: Mapping[str, Any]) -> None:
        if info.get("format_error") or info.get("invalid_actions") or reward < 0:
            print(f"[that cost {reward:+g}]", file=self.out)

    def finish(self, game: TextGame, log: EpisodeLog) -> EpisodeResult:
        info = log.final_info
        print("\n" + game.render(), file=self.out)
        result = EpisodeResult(
            bool(info.get("success")),
            str(info.get("end_reason")),
            log.reward,
            float(info.get("terminal_reward") or 0.0),
            len(log.replies),
            list(info.get("subgames", [])),
        )
        print_result(result, self.out)
        solution = game.solution()
        if solution:
            print(f"expected:   {solution}", file=self.out)
        if info.get("opponent_failed"):
            print("another player produced no legal move after its tries (is the endpoint reachable?)", file=self.out)
        self.out.flush()
        return result


class ScreenRecorder(FreshRecorder):
    """The fresh-prompt recorder of `gift eval`, printing each turn for a person to watch."""

    def __init__(self, codec: Any, settings: ChatSettings, log: EpisodeLog, screen: Screen, name: str) -> None:
        super().__init__(codec, settings, log)
        self.screen = screen
        self.name = name
        self.game: TextGame | None = None

    def open(self, observation: str, info: dict[str, Any], actions_left: int) -> bool:
        assert self.game is not None
        self.screen.before_turn(self.game, observation)
        return super().open(observation, info, actions_left)

    def text_reply(self, text: str) -> str:
        if self.name:
            print(f"{self.name}> {text}", file=self.screen.out, flush=True)
        return super().text_reply(text)

    def step(self, result: tuple[str, float, bool, bool, dict[str, Any]], actions_left: int) -> bool:
        going = super().step(result, actions_left)
        self.screen.after_step(result[1], result[4])
        if going:
            assert self.game is not None
            self.screen.before_turn(self.game, result[0])
        return going


def print_result(result: EpisodeResult, out: TextIO) -> None:
    penalties = round(result.total_reward - result.outcome_reward, 9) + 0.0  # no '-0'
    verdict = "success" if result.success else "no success"
    print(f"\n=== Game over: {verdict} ===", file=out)
    print(f"end reason: {result.end_reason}", file=out)
    print(
        f"reward:     {result.total_reward:g} (outcome {result.outcome_reward:g}, penalties {penalties:g}) "
        f"after {result.steps} step(s)",
        file=out,
    )
    for record in result.subgames:
        reward = "-" if record.get("reward") is None else f"{record['reward']:g}"
        print(f"  {record.get('game')}: {record.get('end_reason')} (reward {reward})", file=out)
    out.flush()


# -------------------------------------------------------------------------------------------------- a person
def normalise_move(line: str) -> str:
    """Bare numbers such as `2 3` or `2,3` become the games' `(2, 3)` form; anything else passes unchanged."""
    m = _NUMBERS.fullmatch(line)
    if m is None:
        return line.strip()
    return "(" + ", ".join(re.split(r"[\s,]+", m.group(1).strip())) + ")"


def interpret_answer(line: str, legal: list[str] | None) -> str:
    """A person's shorthand as the game's answer: `2` → "I vote for Player 2" when exactly one listed move
    has those numbers; otherwise `normalise_move`. The game still judges the result."""
    text = line.strip()
    numbers = re.findall(r"-?\d+", text)
    if legal and numbers and re.fullmatch(r"[\s(),\d-]+", text):
        matches = [a for a in legal if re.findall(r"-?\d+", a) == numbers]
        if len(matches) == 1:
            return matches[0]
    return normalise_move(text)


def _legal(game: TextGame) -> list[str] | None:
    return game.observe(game.focal_seat).legal


def human_answer(stdin: TextIO, out: TextIO) -> Callable[[TextGame, str], str | None]:
    """Read one answer per line; blank lines are skipped, `help` lists the legal moves, `quit` or EOF ends."""
    echo = not stdin.isatty()

    def answer(game: TextGame, observation: str) -> str | None:
        while True:
            print("your move> ", end="", file=out, flush=True)
            line = stdin.readline()
            if not line:
                print("\n(end of input: leaving the game)", file=out, flush=True)
                return None
            line = line.strip()
            if echo:
                print(line, file=out)
            if not line:
                continue
            if line.lower() in QUIT_WORDS:
                print("(leaving the game)", file=out, flush=True)
                return None
            if line.lower() in HELP_WORDS:
                legal = _legal(game)
                shown = ", ".join(legal) if legal else "free text (no list of moves for this turn)"
                print(f"legal answers: {shown}\ntype an answer without tags, or 'quit'", file=out)
                continue
            return interpret_answer(line, _legal(game))

    return answer


# --------------------------------------------------------------------------------------------- watch players
def bot_answer(value: str, seed: int) -> Callable[[TextGame, str], str | None]:
    """The focal seat played by a scripted bot of the game's registration (NAME or NAME:key=value,...);
    "random" also works for any game that lists its legal moves."""
    name, options = parse_spec(value, "--player")
    rng = random.Random(derive_seed("player", seed))
    bots: dict[str, Opponent] = {}

    def answer(game: TextGame, observation: str) -> str | None:
        sub = _playing(game)
        view = sub.observe(sub.focal_seat)
        available = spec(sub.id).load_bots()
        if name in available or (available and name != "random"):
            if sub.id not in bots:
                bots[sub.id] = resolve_opponent({"kind": name, **options}, available, f"--player for {sub.id}")
            request = OpponentRequest(game=sub.id, seat=view.seat, prompt=view.text, state=view.state, rng=rng)
            return bots[sub.id].act(request)
        if name == "random" and view.legal:
            return rng.choice(view.legal)
        raise ConfigError(
            f"--player {value!r} cannot play {sub.id}: only 'random' works there, and only on turns "
            "with listed moves; use --model instead"
        )

    return answer


WATCH_MAX_NEW_TOKENS = 64
"""A watched model's reply cap unless given (or its run's own): short enough to watch a game in seconds."""


def _model_seat(name: str, temperature: float, max_new_tokens: int | None, seed: int, out: TextIO) -> Any:
    """The loaded model behind a `ModelSeat`, and its chat settings (a run's own where it is a run's)."""
    from gift.evaluation.games_eval import GenerationSettings, run_settings
    from gift.evaluation.loading import load_model, resolve_source, run_prompt

    source = resolve_source(name)
    run = run_prompt(source)
    settings = GenerationSettings(temperature=temperature, max_new_tokens=max_new_tokens or WATCH_MAX_NEW_TOKENS)
    if run is not None:
        settings = run_settings(settings, run, max_new_tokens is not None)
        print(f"# {name} plays with {run.describe()}", file=out)
    loaded = load_model(source, max_batch=1)
    seat = ModelSeat(loaded.backend, settings.max_new_tokens, settings.temperature, seed=seed)
    chat = ChatSettings(settings.system_prompt, settings.instruction, settings.reply_prefix)
    return loaded, seat, chat, run


# ------------------------------------------------------------------------------------------------ a session
def run_play(
    game: str,
    *,
    seat: str = "human",
    opponent: Any = None,
    seed: int | None = None,
    player: str | None = None,
    model: str | None = None,
    options: Mapping[str, Any] | None = None,
    temperature: float = WATCH_TEMPERATURE,
    max_new_tokens: int | None = None,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
) -> int:
    """One game in the terminal on the episode driver; returns the exit status (0 also when input ends early)."""
    stdin = stdin if stdin is not None else sys.stdin
    out = out if out is not None else sys.stdout
    if seat not in ("human", "watch"):
        raise ConfigError(f"--seat={seat!r} is not allowed; choose one of: human, watch")
    if seat == "human" and (player or model):
        raise ConfigError("--player and --model choose who plays in --seat watch; add --seat watch")
    if seat == "watch" and bool(player) == bool(model):
        raise ConfigError("--seat watch needs exactly one of --player BOT or --model M")
    check_range("--temperature", temperature, 0.0, 2.0)
    if max_new_tokens is not None and (
        isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1
    ):
        raise ConfigError(f"--max-new-tokens={max_new_tokens!r} must be an integer >= 1")
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    screen, log = Screen(out), EpisodeLog(seed)
    if model:
        loaded, focal, chat, run = _model_seat(model, temperature, max_new_tokens, seed, out)
        parser = run.parser(game) if run is not None else "strict"
        env = build_game(game, parser=parser, opponent=opponent, options=options)
        recorder = ScreenRecorder(loaded.codec, chat, log, screen, f"model ({model})")
        who = f"model {model!r}"
    else:
        env = build_game(game, parser="raw", opponent=opponent, options=options)
        answer = bot_answer(player, seed) if player else human_answer(stdin, out)
        label = f"player ({player})" if player else ""
        recorder = ScreenRecorder(None, ChatSettings(None, ""), log, screen, label)
        focal = TextSeat(answer)
        who = f"bot {player!r}" if player else "you"
    recorder.game = env
    rival = getattr(getattr(_playing(env), "opponent", None), "name", None)
    print(f"# {env.id}, seed {seed}: {who}" + (f" against {rival}" if rival else ""), file=out)
    if seat == "human":
        print(
            "# Type an answer without tags, e.g. '2 3' or a few words; 'help' lists moves, 'quit' leaves.\n",
            file=out,
        )
    [episode] = [Episode(env, seed, recorder, 0)]
    drive([episode], focal)
    if not episode.stopped:
        screen.finish(env, log)
    return 0
