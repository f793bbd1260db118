"""The batched multi-turn rollout: play a batch of games turn by turn, one backend call per turn.

    trajectories = run_rollouts(games, seeds, group_ids, backend, tokenizer, RolloutConfig())

G games that share a seed (and a group id) form a GRPO group. Every game is reset with its seed; then, turn after
turn, the pending replies of all live games are generated in one batched `backend.generate` call, decoded and
passed to `game.step`. Each `Trajectory` keeps the token-exact training sequence (see `gift.rollout.transcript`):

    input_ids         prompt ids, then per turn: sampled ids (loss_mask 1) + environment ids (loss_mask 0)
    sampled_logprobs  the sampling log-prob at each sampled position, 0.0 elsewhere

Turn t is generated from exactly `input_ids` as it stands before turn t, so the trainer's prefix is what the model
saw. The trajectory score is the sum of every step reward, penalties included (paper-notes §4.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from gift.errors import ConfigError, check_range
from gift.games.base import TextGame
from gift.rollout.backends import GenerationBackend, Sample, check_sampling
from gift.rollout.transcript import (
    DEFAULT_SYSTEM_PROMPT,
    ChatCodec,
    feedback_message,
    first_messages,
    format_instruction,
    turn_block,
)


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

    def turn_seed(self, turn: int) -> int | None:
        return None if self.seed is None else (int(self.seed) * 1_000_003 + turn) % 2**31


@dataclass
class Trajectory:
    """One played episode: the training sequence, the rewards, the outcome flags and the readable chat."""

    game_id: str
    task: str
    group_id: int
    seed: int
    input_ids: list[int]
    loss_mask: list[int]
    sampled_logprobs: list[float]
    prompt_len: int
    messages: list[dict[str, str]]
    """The readable transcript (assistant contents are the decoded replies), for saving samples."""
    final_info: dict[str, Any]
    reply_spans: list[tuple[int, int]] = field(default_factory=list)
    """[start, end) of each turn's sampled ids inside `input_ids`."""
    turn_rewards: list[float] = field(default_factory=list)
    reply_lengths: list[int] = field(default_factory=list)
    replies_finished: list[bool] = field(default_factory=list)
    """Per turn: the reply ended with a stop token (False: cut at max_new_tokens)."""
    terminated: bool = False
    truncated: bool = False
    """The game's own turn budget ran out."""
    context_truncated: bool = False
    """Cut by max_context before the game ended; the game was abandoned with the rewards so far."""
    opponent_failed: bool = False
    format_errors: int = 0
    invalid_actions: int = 0

    @property
    def total_reward(self) -> float:
        """The trajectory score: the sum of every step reward, penalties included."""
        return float(sum(self.turn_rewards))

    @property
    def num_turns(self) -> int:
        return len(self.turn_rewards)

    @property
    def success(self) -> bool:
        return bool(self.final_info.get("success", False)) and not self.context_truncated

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated or self.context_truncated

    def record(self, include_tokens: bool = False) -> dict[str, Any]:
        """A plain dict for logs and sample files (token arrays only on request)."""
        out: dict[str, Any] = {
            "game": self.game_id,
            "task": self.task,
            "group_id": self.group_id,
            "seed": self.seed,
            "total_reward": self.total_reward,
            "turn_rewards": list(self.turn_rewards),
            "num_turns": self.num_turns,
            "success": self.success,
            "terminated": self.terminated,
            "truncated": self.truncated,
            "context_truncated": self.context_truncated,
            "opponent_failed": self.opponent_failed,
            "format_errors": self.format_errors,
            "invalid_actions": self.invalid_actions,
            "reply_lengths": list(self.reply_lengths),
            "replies_finished": list(self.replies_finished),
            "prompt_len": self.prompt_len,
            "length": len(self.input_ids),
            "final_info": dict(self.final_info),
            "messages": [dict(m) for m in self.messages],
        }
        if include_tokens:
            out.update(
                input_ids=list(self.input_ids),
                loss_mask=list(self.loss_mask),
                sampled_logprobs=list(self.sampled_logprobs),
            )
        return out


def run_rollouts(
    games: Sequence[TextGame],
    seeds: Sequence[int],
    group_ids: Sequence[int],
    backend: GenerationBackend,
    tokenizer: Any,
    cfg: RolloutConfig | None = None,
    tasks: Sequence[str] | None = None,
    batchers: Sequence[Any] = (),
) -> list[Trajectory]:
    """Play every game to its end (or the context cap); return one trajectory per game, in input order.

    `games` must be distinct instances (each keeps its own episode state). `tasks` optionally names each game's
    task for logging and per-task statistics (default: the game id). With `batchers` (the `MoveBatcher` of a
    model opponent, e.g. self-play), a turn's games step in parallel threads so that their opponent moves are
    generated in one call; the result is the same for any thread timing.
    """
    cfg = cfg or RolloutConfig()
    count = len(games)
    if len(seeds) != count or len(group_ids) != count or (tasks is not None and len(tasks) != count):
        raise ConfigError("run_rollouts: games, seeds, group_ids (and tasks) must have the same length")
    if len({id(g) for g in games}) != count:
        raise ConfigError("run_rollouts: the same game instance appears twice; pass one instance per rollout")
    codec = ChatCodec(tokenizer)
    prefix_ids = codec.encode(cfg.reply_prefix) if cfg.reply_prefix else []
    instruction = cfg.instruction or format_instruction(cfg.max_new_tokens if cfg.length_hint else None)
    room = cfg.max_new_tokens + 1  # a reply plus a possibly missing end-of-turn token

    trajectories: list[Trajectory] = []
    live: list[int] = []
    for index, (game, seed) in enumerate(zip(games, seeds, strict=True)):
        obs, info = game.reset(seed=int(seed))
        messages = first_messages(cfg.system_prompt, turn_block(1, obs, game.actions_left, instruction))
        ids = codec.prompt_ids(messages) + prefix_ids
        game_id = str(info.get("game", game.id))
        trajectories.append(
            Trajectory(
                game_id=game_id,
                task=str(tasks[index]) if tasks is not None else game_id,
                group_id=int(group_ids[index]),
                seed=int(seed),
                input_ids=ids,
                loss_mask=[0] * len(ids),
                sampled_logprobs=[0.0] * len(ids),
                prompt_len=len(ids),
                messages=messages,
                final_info=info,
            )
        )
        if len(ids) + room > cfg.max_context:
            trajectories[-1].context_truncated = True
        else:
            live.append(index)

    # Cached prefixes from another rollout are never valid here (other weights or other games): start clean,
    # and free them at the end.
    reset = getattr(backend, "reset_cache", None)
    if reset is not None:
        reset()
    try:
        turn = 0
        while live:
            turn += 1
            samples = _generate_turn(backend, [trajectories[i].input_ids for i in live], cfg, turn)

            def step(index: int, sample: Sample, turn: int = turn) -> bool:
                return _play_turn(
                    games[index], trajectories[index], sample, codec, cfg, instruction, room, turn, prefix_ids
                )

            flags = _step_all(step, live, samples, batchers)
            live = [index for index, flag in zip(live, flags, strict=True) if flag]
    finally:
        if reset is not None:
            reset()
    return trajectories


def _step_all(step: Any, live: list[int], samples: list[Sample], batchers: Sequence[Any]) -> list[bool]:
    """Step every live game with its sample: in order, or in one thread per game inside each batcher's round."""
    if not batchers or len(live) < 2:
        return [step(index, sample) for index, sample in zip(live, samples, strict=True)]

    def work(index: int, sample: Sample) -> bool:
        with ExitStack() as scope:
            for batcher in batchers:
                scope.enter_context(batcher.worker(index))
            return step(index, sample)

    with ExitStack() as rounds:
        for batcher in batchers:
            rounds.enter_context(batcher.round(len(live)))
        with ThreadPoolExecutor(max_workers=len(live), thread_name_prefix="gift-step") as pool:
            return list(pool.map(work, live, samples))


def _generate_turn(
    backend: GenerationBackend, prompts: list[list[int]], cfg: RolloutConfig, turn: int
) -> list[Sample]:
    """All pending replies of a turn: one backend call (or chunks of `cfg.max_batch`)."""
    step = cfg.max_batch or len(prompts)
    samples: list[Sample] = []
    for start in range(0, len(prompts), step):
        chunk = [list(p) for p in prompts[start : start + step]]
        seed = cfg.turn_seed(turn)
        out = backend.generate(
            chunk,
            cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            seed=None if seed is None else seed + start,
        )
        if len(out) != len(chunk):
            raise RuntimeError(f"backend returned {len(out)} samples for {len(chunk)} prompts")
        samples.extend(out)
    for sample in samples:
        if len(sample.token_ids) != len(sample.logprobs) or len(sample.token_ids) > cfg.max_new_tokens:
            raise RuntimeError("backend returned a sample whose ids and log-probs disagree or exceed the cap")
    return samples


def _play_turn(
    game: TextGame,
    traj: Trajectory,
    sample: Sample,
    codec: ChatCodec,
    cfg: RolloutConfig,
    instruction: str,
    room: int,
    turn: int,
    prefix_ids: list[int],
) -> bool:
    """Append one reply, step the game, append what the environment says next. Returns True if still live."""
    ids = list(sample.token_ids)
    start = len(traj.input_ids)
    traj.input_ids.extend(ids)
    traj.loss_mask.extend([1] * len(ids))
    traj.sampled_logprobs.extend(float(x) for x in sample.logprobs)
    traj.reply_spans.append((start, len(traj.input_ids)))
    traj.reply_lengths.append(len(ids))
    traj.replies_finished.append(bool(sample.finished))

    history = list(traj.messages)
    reply = cfg.reply_prefix + codec.decode_reply(ids)
    traj.messages.append({"role": "assistant", "content": reply})
    obs, reward, terminated, truncated, info = game.step(reply)
    traj.turn_rewards.append(float(reward))
    traj.final_info = info
    traj.format_errors += int(bool(info.get("format_error", False)))
    traj.invalid_actions += int(info.get("invalid_actions", 0) or 0)
    traj.opponent_failed = traj.opponent_failed or bool(info.get("opponent_failed", False))

    if terminated or truncated:
        traj.terminated, traj.truncated = bool(terminated), bool(truncated)
        _extend_env(traj, codec.env_ids(history, ids, None))
        return False
    next_user = feedback_message(reward, turn_block(turn + 1, obs, game.actions_left, instruction))
    env = codec.env_ids(history, ids, next_user)
    if len(traj.input_ids) + len(env) + len(prefix_ids) + room > cfg.max_context:
        traj.context_truncated = True
        _extend_env(traj, codec.env_ids(history, ids, None))
        return False
    _extend_env(traj, env + prefix_ids)
    traj.messages.append({"role": "user", "content": next_user})
    return True


def _extend_env(traj: Trajectory, ids: list[int]) -> None:
    traj.input_ids.extend(ids)
    traj.loss_mask.extend([0] * len(ids))
    traj.sampled_logprobs.extend([0.0] * len(ids))
