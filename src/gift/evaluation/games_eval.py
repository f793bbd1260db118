"""In-domain game evaluation with the paper's protocol (the paper's evaluation protocol).

Every turn of the evaluated model is a *fresh single-turn prompt*: the system prompt, then one user message with
the game's current observation and the format instruction. Earlier replies are not in the chat (training uses a
multi-turn chat; evaluation does not). N episodes per game use the episode seeds 1..N, so every model meets the
same start states and the same scripted-opponent randomness; TicTacToe starts from the empty board with a random
first player. The episodes run on the episode driver: every prompt that is ready goes to the backend in one
call, and endpoint opponents answer concurrently.

Success is the game's `info["success"]` (a TicTacToe win; a draw is not a success). An episode whose opponent
failed to produce a legal move is excluded (`correct` None) and counted, never scored. The games keep their own
rules for the evaluated model's mistakes: an illegal TicTacToe move costs one of its five moves and the game goes
on, where the paper's evaluation counted it as a loss at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gift.errors import ConfigError
from gift.games.registry import eval_specs, make
from gift.games.registry import spec as game_spec
from gift.prompts import DEFAULT_SYSTEM_PROMPT, format_instruction, fresh_messages
from gift.rollout.driver import Episode, ModelSeat, derive_seed, drive
from gift.rollout.recorders import ChatSettings, EpisodeLog, FreshRecorder

DEFAULT_EPISODES = 100
SCORE_OF_END = {"win": 1.0, "draw": 0.5}


def table_games() -> tuple[str, ...]:
    """The games of `--suite games`, from their registrations (plugins included)."""
    return tuple(s.id for s in eval_specs() if s.eval is not None and s.eval.in_games_suite)


def canonical_game(name: str) -> str:
    """ "tictactoe", "tictactoe-v0" or "my_pkg.games:guess-v0" → the registered id of an evaluation game."""
    by_alias = {s.alias: s.id for s in eval_specs()}
    game = by_alias.get(name, name)
    try:
        found = game_spec(game)
    except ConfigError:
        found = None
    if found is None or found.eval is None:
        allowed = ", ".join([*(s.id for s in eval_specs()), *by_alias])
        raise ConfigError(f"unknown game {name!r}; allowed: {allowed}")
    return found.id


def has_opponent(game_id: str) -> bool:
    return game_spec(game_id).seats > 1


def game_options(game_id: str, opponent: Any = None, opponent_tries: int | None = None) -> dict[str, Any]:
    """The `make` options of the evaluation protocol for one game (opponent None: its registered default)."""
    registered = game_spec(game_id)
    protocol = registered.eval
    if protocol is None:
        raise ConfigError(f"{game_id} is not an evaluation game (its registration has no eval protocol)")
    options: dict[str, Any] = dict(protocol.options)
    if not has_opponent(game_id):
        if opponent is not None:
            raise ConfigError(f"--opponent {game_id}: this game has no opponent; drop the option")
        return options
    options["opponent"] = protocol.opponent if opponent is None else opponent
    if opponent_tries is not None:
        options["opponent_tries"] = opponent_tries
    return options


def kept_info(game_id: str) -> tuple[str, ...]:
    protocol = game_spec(game_id).eval
    return protocol.kept_info if protocol is not None else ()


def is_perfect_opponent(value: Any) -> bool:
    """Whether a TicTacToe opponent option names the minimax player."""
    kind = value.get("kind") if isinstance(value, Mapping) else getattr(value, "name", value)
    return kind == "perfect"


@dataclass(frozen=True)
class GenerationSettings:
    """How the evaluated model is prompted and sampled (shared by games and benchmarks)."""

    temperature: float = 0.5
    top_p: float = 1.0
    max_new_tokens: int = 600
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    length_hint: bool = True
    """Tell the model its reply cap in the format instruction, as training does."""
    custom_instruction: str | None = None
    """Replaces the answer-protocol instruction (a run trained with its own, e.g. for parser=raw)."""
    reply_prefix: str = ""
    """Text that starts every reply (as the run was trained with)."""

    @property
    def instruction(self) -> str:
        if self.custom_instruction is not None:
            return self.custom_instruction
        return format_instruction(self.max_new_tokens if self.length_hint else None)


def run_settings(settings: GenerationSettings, run: Any, max_new_tokens_given: bool) -> GenerationSettings:
    """`settings` with a run's prompt settings (`gift.evaluation.loading.RunPrompt`) in place."""
    from dataclasses import replace

    return replace(
        settings,
        system_prompt=run.system_prompt,
        custom_instruction=run.instruction,
        reply_prefix=run.reply_prefix,
        max_new_tokens=settings.max_new_tokens if max_new_tokens_given else run.max_new_tokens,
    )


def fresh_prompt(settings: GenerationSettings, observation: str) -> list[dict[str, str]]:
    """One turn's prompt: system message + a single user message (observation, then the format instruction)."""
    return fresh_messages(settings.system_prompt, observation, settings.instruction)


def episode_score(record: Mapping[str, Any]) -> float:
    """TicTacToe score of a finished episode: win 1, draw 0.5, anything else 0."""
    return SCORE_OF_END.get(str(record.get("end_reason")), 0.0)


def _record(log: EpisodeLog, kept: tuple[str, ...]) -> dict[str, Any]:
    info = log.final_info
    failed = bool(info.get("opponent_failed", False))
    return {
        "item": f"episode-{log.seed}",
        "episode_seed": log.seed,
        "correct": None if failed else bool(info.get("success", False)),
        "excluded": "opponent_failed" if failed else None,
        "end_reason": info.get("end_reason"),
        "reward": round(log.reward, 6),
        "turns": len(log.replies),
        "format_errors": log.format_errors,
        "invalid_actions": log.invalid_actions,
        "reply": log.replies[-1] if log.replies else "",
        "replies": list(log.replies),
        "info": {k: info[k] for k in kept if k in info},
    }


def play_episodes(
    game_id: str,
    options: Mapping[str, Any],
    episode_seeds: Sequence[int],
    model: Any,
    settings: GenerationSettings,
    sample_seed: int,
    on_finish: Callable[[list[dict[str, Any]]], None],
    prompt_log: Callable[[list[list[dict[str, str]]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Play one episode per seed with `model` (anything with `.backend` and `.codec`); return their records.

    The episodes run on the episode driver with a fresh prompt every turn. Each finished episode is handed to
    `on_finish` at once, so a crash keeps it. `sample_seed` seeds the model's sampling (each episode's turn
    derives its own). `prompt_log`, if given, sees every prompt the model answers.
    """
    options = dict(options)
    chat = ChatSettings(
        system_prompt=settings.system_prompt, instruction=settings.instruction, reply_prefix=settings.reply_prefix
    )
    episodes = []
    for index, seed in enumerate(episode_seeds):
        game = make(game_id, **options)
        if "opponent" in options:  # one opponent for every episode: one endpoint client, one concurrency gate
            options["opponent"] = game.opponent
        log = EpisodeLog(int(seed))
        episodes.append(Episode(game, int(seed), FreshRecorder(model.codec, chat, log), index))
    records: list[dict[str, Any]] = []

    def finished(ep: Episode) -> None:
        log = ep.recorder.log
        if prompt_log is not None and log.prompts:
            prompt_log(log.prompts)
        record = _record(log, kept_info(game_id))
        records.append(record)
        on_finish([record])

    seat = ModelSeat(
        model.backend,
        settings.max_new_tokens,
        settings.temperature,
        settings.top_p,
        seed=derive_seed(sample_seed, game_id),
    )
    drive(episodes, seat, on_finish=finished)
    by_seed = {r["episode_seed"]: r for r in records}
    return [by_seed[int(s)] for s in episode_seeds if int(s) in by_seed]
