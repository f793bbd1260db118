"""Training rollouts: a batch of games played by the policy through the episode driver.

    trajectories = run_rollouts(games, seeds, group_ids, backend, tokenizer, RolloutConfig())

G games that share a seed (and a group id) form a GRPO group. Every game is begun with its seed; the driver
(`gift.rollout.driver`) generates the replies of every game waiting for the policy in one backend call,
while the other seats answer on their own. Each `Trajectory` keeps the token-exact training sequence
(`gift.rollout.recorders.ChatRecorder`, see `gift.rollout.transcript`):

    input_ids         prompt ids, then per turn: sampled ids (loss_mask 1) + environment ids (loss_mask 0)
    sampled_logprobs  the sampling log-prob at each sampled position, 0.0 elsewhere

Turn t is generated from exactly `input_ids` as it stands before turn t, so the trainer's prefix is what the model
saw. The trajectory score is the sum of every step reward, penalties included (the paper's reward design).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gift.errors import ConfigError, check_range
from gift.games.base import TextGame
from gift.prompts import DEFAULT_SYSTEM_PROMPT, format_instruction
from gift.rollout.backends import GenerationBackend, check_sampling
from gift.rollout.driver import DriverStats, Episode, ModelSeat, drive
from gift.rollout.recorders import ChatRecorder, ChatSettings, Trajectory
from gift.rollout.transcript import ChatCodec

__all__ = ["RolloutConfig", "Trajectory", "run_rollouts"]


@dataclass
class RolloutConfig:
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_new_tokens: int = 200
    """Cap on each reply's length (tokens)."""
    max_context: int = 4096
    """Cap on a whole trajectory (tokens); a game that could not fit its next reply is cut there."""
    temperature: float = 1.0
    top_p: float = 1.0
    max_batch: int | None = None
    """Most prompts per backend call; None sends every live game of a turn in one call."""
    seed: int | None = None
    """Sampling seed (each turn derives its own); vary it between training steps. None: unseeded."""
    length_hint: bool = True
    """Tell the model its reply cap in the format instruction."""
    instruction: str | None = None
    """Replaces the answer-protocol instruction of every turn block (e.g. for games played with parser="raw")."""
    reply_prefix: str = ""
    """Text placed at the start of every reply as environment tokens (e.g. "<think>", RAGEN's prefill; the
    paper uses none). The model continues after it; the game sees prefix + sampled text."""

    def __post_init__(self) -> None:
        check_sampling(self.max_new_tokens, self.temperature, self.top_p)
        if isinstance(self.max_context, bool) or not isinstance(self.max_context, int):
            raise ConfigError(f"max_context={self.max_context!r} must be an integer")
        check_range("max_context", self.max_context, self.max_new_tokens + 2)
        if self.max_batch is not None and (
            isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int) or self.max_batch < 1
        ):
            raise ConfigError(f"max_batch={self.max_batch!r} must be an integer >= 1 or None")



def run_rollouts(
    games: Sequence[TextGame],
    seeds: Sequence[int],
    group_ids: Sequence[int],
    backend: GenerationBackend,
    tokenizer: Any,
    cfg: RolloutConfig | None = None,
    tasks: Sequence[str] | None = None,
    stats: DriverStats | None = None,
) -> list[Trajectory]:
    """Play every game to its end (or the context cap); return one trajectory per game, in input order.

    `games` must be distinct instances (each keeps its own episode state). `tasks` optionally names each game's
    task for logging and per-task statistics (default: the game id). The other seats are answered by each
    game's own players through the episode driver (`gift.rollout.driver`); `stats`, if given, receives the
    driver's counters (generation calls, opponent calls and latency per game).
    """
    cfg = cfg or RolloutConfig()
    count = len(games)
    if len(seeds) != count or len(group_ids) != count or (tasks is not None and len(tasks) != count):
        raise ConfigError("run_rollouts: games, seeds, group_ids (and tasks) must have the same length")
    if len({id(g) for g in games}) != count:
        raise ConfigError("run_rollouts: the same game instance appears twice; pass one instance per rollout")
    codec = ChatCodec(tokenizer)
    instruction = cfg.instruction or format_instruction(cfg.max_new_tokens if cfg.length_hint else None)
    settings = ChatSettings(
        system_prompt=cfg.system_prompt,
        instruction=instruction,
        reply_prefix=cfg.reply_prefix,
        max_new_tokens=cfg.max_new_tokens,
        max_context=cfg.max_context,
    )
    trajectories, episodes = [], []
    for index, (game, seed) in enumerate(zip(games, seeds, strict=True)):
        traj = Trajectory(
            game_id=game.id,
            task=str(tasks[index]) if tasks is not None else game.id,
            group_id=int(group_ids[index]),
            seed=int(seed),
            input_ids=[],
            loss_mask=[],
            sampled_logprobs=[],
            prompt_len=0,
            messages=[],
            final_info={},
        )
        trajectories.append(traj)
        episodes.append(Episode(game, int(seed), ChatRecorder(codec, settings, traj), index))
    seat = ModelSeat(
        backend, cfg.max_new_tokens, cfg.temperature, cfg.top_p, seed=cfg.seed, max_batch=cfg.max_batch
    )
    # Cached prefixes from another rollout are never valid here (other weights or other games): start clean,
    # and free them at the end.
    reset = getattr(backend, "reset_cache", None)
    if reset is not None:
        reset()
    try:
        result = drive(episodes, seat)
    finally:
        if reset is not None:
            reset()
    if stats is not None:
        stats.__dict__.update(result.__dict__)
    return trajectories
