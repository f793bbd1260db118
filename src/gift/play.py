"""Playing a game in the terminal: a person against the game's opponent, or two automatic players to watch.

Moves are read line by line, so a game can be scripted through a pipe (`printf '2 2\\n1 3\\n' | gift play ...`).
The person answers without the <think>/<answer> tags (the game is built with parser="raw"); the game itself
judges every answer, so an illegal move or garbage gets the same feedback and penalty a model would get.
In watch mode the trained-player seat is taken by a scripted bot of the game or by a language model that
answers with the tag protocol; the model stack (torch, transformers) is imported only then.
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
from gift.games.protocol import FORMAT_INSTRUCTION
from gift.games.registry import make, spec
from gift.opponents import Opponent, OpponentRequest, resolve_opponent

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
    return make(game_id, parser=parser, **opts)


# ------------------------------------------------------------------------------------------------ the episode
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


def play_episode(game: TextGame, seed: int, choose: Chooser, out: TextIO) -> EpisodeResult | None:
    """Reset with `seed` and play to the end; None when `choose` ends the session first."""
    obs, info = game.reset(seed=seed)
    total, steps = 0.0, 0
    while True:
        print(obs, file=out, flush=True)
        reply = choose(obs, game)
        if reply is None:
            return None
        obs, reward, terminated, truncated, info = game.step(reply)
        total += reward
        steps += 1
        if terminated or truncated:
            print(obs, file=out)
            outcome = float(info.get("terminal_reward") or 0.0)
            result = EpisodeResult(
                bool(info["success"]),
                str(info["end_reason"]),
                total,
                outcome,
                steps,
                list(info.get("subgames", [])),
            )
            print_result(result, out)
            if info.get("opponent_failed"):
                print(
                    "the opponent produced no legal move after its retries (is the endpoint reachable?)",
                    file=out,
                )
            return result
        if reward:
            print(f"[penalty {reward:+g}]", file=out)
        print(file=out)


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


def human_chooser(stdin: TextIO, out: TextIO) -> Chooser:
    """Read one answer per line; blank lines are skipped, `help` lists the legal moves, `quit` or EOF ends."""
    echo = not stdin.isatty()

    def choose(obs: str, game: TextGame) -> str | None:
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
                legal = game.legal_actions()
                shown = ", ".join(legal) if legal else "free text (no list of moves for this turn)"
                print(f"legal answers: {shown}\ntype an answer without tags, or 'quit'", file=out)
                continue
            return interpret_answer(line, game.legal_actions())

    return choose


# --------------------------------------------------------------------------------------------- watch players
def _active(game: TextGame) -> TextGame:
    """The sub-game being played (nested games forward to one game at a time)."""
    current = getattr(game, "current", None)
    return _active(current) if isinstance(current, TextGame) and current is not game else game


def player_seat(game: TextGame) -> int:
    """The trained player's 1-based seat (games that draw it store `trained_seat` or `seat`)."""
    return int(getattr(game, "trained_seat", None) or getattr(game, "seat", None) or 1)


def player_state(game: TextGame) -> dict[str, Any] | None:
    """What a scripted bot sees from the trained player's seat, or None when this game does not say.

    Games expose it as `seat_state(seat)` (the view they send their own bots); TicTacToe builds it inline.
    """
    seat_state = getattr(game, "seat_state", None)
    if callable(seat_state):
        return seat_state(player_seat(game))
    if game.id == "tictactoe-v0":
        from gift.games.tictactoe import legal_rc

        return {"board": game.board, "mark": game.mark, "legal": legal_rc(game.board)}
    return None


def game_bots(game: TextGame) -> Mapping[str, Callable[..., Opponent]]:
    """The scripted bots a game's module offers: its `BOTS` mapping, or else one named `*_BOTS`."""
    module = sys.modules.get(type(game).__module__)
    bots = getattr(module, "BOTS", None)
    if isinstance(bots, Mapping):
        return bots
    for name in sorted(vars(module) if module else ()):
        value = getattr(module, name)
        if name.endswith("_BOTS") and isinstance(value, Mapping):
            return value
    return {}


def bot_chooser(value: str, seed: int, out: TextIO) -> Chooser:
    """Play the trained seat with a scripted bot of the game (NAME or NAME:key=value,...).

    The bot reads the seat's structured state where the game exposes one; "random" also works for any game
    that lists its legal moves.
    """
    name, options = parse_spec(value, "--player")
    rng = random.Random(f"player:{seed}")
    bots: dict[str, Opponent] = {}

    def choose(obs: str, game: TextGame) -> str | None:
        sub = _active(game)
        state = player_state(sub)
        if state is not None and game_bots(sub):
            if sub.id not in bots:
                bots[sub.id] = resolve_opponent(
                    {"kind": name, **options}, game_bots(sub), f"--player for {sub.id}"
                )
            seat = player_seat(sub)
            reply = bots[sub.id].act(
                OpponentRequest(game=sub.id, seat=seat, prompt=obs, state=state, rng=rng)
            )
        elif name == "random" and sub.legal_actions():
            reply = rng.choice(sub.legal_actions())
        else:
            raise ConfigError(
                f"--player {value!r} cannot play {sub.id}: only 'random' works there, and only on turns "
                "with listed moves; use --model instead"
            )
        print(f"player ({value})> {reply}", file=out)
        return reply

    return choose


class ModelPlayer:
    """A causal LM answering each observation in one turn with the tag protocol (sampled, temperature 0.5)."""

    def __init__(self, name: str, temperature: float = WATCH_TEMPERATURE, max_new_tokens: int = 600) -> None:
        from gift.models import resolve_model

        path = resolve_model(name)
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError as err:
            raise ConfigError(
                f"--model needs the training extra (pip install 'gift-rl[train]'): {err}"
            ) from None
        hf_logging.disable_progress_bar()  # keep the game transcript readable
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        except (OSError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"--model {name!r} could not be loaded: {first}") from None
        self.name = name
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
        self.device = device

    def prompt(self, observation: str) -> str:
        content = f"{observation}\n\n{FORMAT_INSTRUCTION}"
        if getattr(self.tokenizer, "chat_template", None):
            messages = [{"role": "user", "content": content}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return content

    def reply(self, observation: str) -> str:
        import torch

        encoded = self.tokenizer(self.prompt(observation), return_tensors="pt", add_special_tokens=False)
        encoded = {k: v.to(self.device) for k, v in encoded.items()}
        pad = (
            self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id
        )
        with torch.no_grad():
            output = self.model.generate(
                **encoded,
                do_sample=self.temperature > 0,
                temperature=self.temperature if self.temperature > 0 else None,
                top_p=1.0,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=pad,
            )
        new_tokens = output[0, encoded["input_ids"].shape[1] :]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True)

    def chooser(self, out: TextIO) -> Chooser:
        def choose(obs: str, game: TextGame) -> str | None:
            reply = self.reply(obs)
            print(f"model ({self.name})> {reply}", file=out, flush=True)
            return reply

        return choose


def seed_everything(seed: int) -> None:
    """Make sampled model replies repeatable for a given --seed."""
    import torch

    torch.manual_seed(seed)


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
    max_new_tokens: int = 600,
    stdin: TextIO | None = None,
    out: TextIO | None = None,
) -> int:
    """One game in the terminal; returns the exit status (0 also when input ends early)."""
    stdin = stdin if stdin is not None else sys.stdin
    out = out if out is not None else sys.stdout
    if seat not in ("human", "watch"):
        raise ConfigError(f"--seat={seat!r} is not allowed; choose one of: human, watch")
    if seat == "human" and (player or model):
        raise ConfigError("--player and --model choose who plays in --seat watch; add --seat watch")
    if seat == "watch" and bool(player) == bool(model):
        raise ConfigError("--seat watch needs exactly one of --player BOT or --model M")
    check_range("--temperature", temperature, 0.0, 2.0)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ConfigError(f"--max-new-tokens={max_new_tokens!r} must be an integer >= 1")
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    # A watched model must follow the tag protocol like in training; people and bots answer bare.
    env = build_game(game, parser="strict" if model else "raw", opponent=opponent, options=options)
    if model:
        chooser = ModelPlayer(model, temperature=temperature, max_new_tokens=max_new_tokens).chooser(out)
        seed_everything(seed)
        who = f"model {model!r}"
    elif player:
        chooser = bot_chooser(player, seed, out)
        who = f"bot {player!r}"
    else:
        chooser = human_chooser(stdin, out)
        who = "you"
    rival = getattr(getattr(env, "opponent", None), "name", None)
    print(f"# {env.id}, seed {seed}: {who}" + (f" against {rival}" if rival else ""), file=out)
    if seat == "human":
        print(
            "# Type an answer without tags, e.g. '2 3' or a few words; 'help' lists moves, 'quit' leaves.\n",
            file=out,
        )
    play_episode(env, seed, chooser, out)
    return 0
