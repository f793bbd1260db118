"""How the focal seat's turns become text and tokens: the two transcript strategies of the episode driver.

- `ChatRecorder` (training): one multi-turn chat per episode, token-in/token-out. Turn t is generated from
  exactly the ids as they stand before it; sampled ids get loss mask 1, environment ids 0 (`Trajectory`).
- `FreshRecorder` (evaluation, watching, the paper's protocol): every turn is a fresh single-turn prompt — the
  system prompt, then the observation and the instruction — and earlier replies are not in the chat.

Both build their text with `gift.prompts` only. A recorder answers the driver three questions: the prompt ids
of the next focal turn, the reply text to play from a sample, and whether the episode goes on after a step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gift.prompts import feedback_message, first_messages, fresh_messages, turn_block
from gift.rollout.backends import Sample
from gift.rollout.transcript import ChatCodec


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
    """The sampling log-prob at each sampled position, 0.0 elsewhere. PPO's old log-probs are recomputed by the
    learner; these feed `train/logprob_gap` (how far the sampler is from the trainer)."""
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


@dataclass(frozen=True)
class ChatSettings:
    """The text around the observations and the length caps shared by both recorders."""

    system_prompt: str | None
    instruction: str
    reply_prefix: str = ""
    max_new_tokens: int = 200
    max_context: int = 4096


class ChatRecorder:
    """The training chat of one episode, token-exact (see `gift.rollout.transcript`)."""

    def __init__(self, codec: ChatCodec, settings: ChatSettings, traj: Trajectory) -> None:
        self.codec = codec
        self.settings = settings
        self.traj = traj
        self.prefix_ids = codec.encode(settings.reply_prefix) if settings.reply_prefix else []
        self.room = settings.max_new_tokens + 1  # a reply plus a possibly missing end-of-turn token
        self.turn = 0
        self._history: list[dict[str, str]] = []

    def open(self, observation: str, info: dict[str, Any], actions_left: int) -> bool:
        """The first prompt; False when it leaves no room for a reply (the episode is cut at once)."""
        s, traj = self.settings, self.traj
        traj.messages = first_messages(s.system_prompt, turn_block(1, observation, actions_left, s.instruction))
        ids = self.codec.prompt_ids(traj.messages) + self.prefix_ids
        traj.input_ids, traj.loss_mask = ids, [0] * len(ids)
        traj.sampled_logprobs, traj.prompt_len, traj.final_info = [0.0] * len(ids), len(ids), info
        if len(ids) + self.room > s.max_context:
            traj.context_truncated = True
            return False
        return True

    def prompt(self) -> list[int]:
        return list(self.traj.input_ids)

    def reply(self, sample: Sample) -> str:
        """Append the sampled ids (mask 1) and return the reply text the game reads."""
        traj, ids = self.traj, list(sample.token_ids)
        if len(ids) != len(sample.logprobs) or len(ids) > self.settings.max_new_tokens:
            raise RuntimeError("backend returned a sample whose ids and log-probs disagree or exceed the cap")
        start = len(traj.input_ids)
        traj.input_ids.extend(ids)
        traj.loss_mask.extend([1] * len(ids))
        traj.sampled_logprobs.extend(float(x) for x in sample.logprobs)
        traj.reply_spans.append((start, len(traj.input_ids)))
        traj.reply_lengths.append(len(ids))
        traj.replies_finished.append(bool(sample.finished))
        self.turn += 1
        self._history = list(traj.messages)
        text = self.settings.reply_prefix + self.codec.decode_reply(ids)
        traj.messages.append({"role": "assistant", "content": text})
        self._last_ids = ids
        return text

    def step(self, result: tuple[str, float, bool, bool, dict[str, Any]], actions_left: int) -> bool:
        """Record a step's reward and flags and append the environment ids; True while the episode goes on."""
        obs, reward, terminated, truncated, info = result
        traj = self.traj
        traj.turn_rewards.append(float(reward))
        traj.final_info = info
        traj.format_errors += int(bool(info.get("format_error", False)))
        traj.invalid_actions += int(info.get("invalid_actions", 0) or 0)
        traj.opponent_failed = traj.opponent_failed or bool(info.get("opponent_failed", False))
        ids, history = self._last_ids, self._history
        if terminated or truncated:
            traj.terminated, traj.truncated = bool(terminated), bool(truncated)
            self._extend_env(self.codec.env_ids(history, ids, None))
            return False
        next_user = feedback_message(reward, turn_block(self.turn + 1, obs, actions_left, self.settings.instruction))
        env = self.codec.env_ids(history, ids, next_user)
        if len(traj.input_ids) + len(env) + len(self.prefix_ids) + self.room > self.settings.max_context:
            traj.context_truncated = True
            self._extend_env(self.codec.env_ids(history, ids, None))
            return False
        self._extend_env(env + self.prefix_ids)
        traj.messages.append({"role": "user", "content": next_user})
        return True

    def end_unplayed(self, info: dict[str, Any]) -> None:
        """Another seat forfeited before the first focal turn: no reply was generated or scored."""
        self.traj.final_info = info
        self.traj.terminated = True
        self.traj.opponent_failed = bool(info.get("opponent_failed", False))

    def _extend_env(self, ids: list[int]) -> None:
        self.traj.input_ids.extend(ids)
        self.traj.loss_mask.extend([0] * len(ids))
        self.traj.sampled_logprobs.extend([0.0] * len(ids))


@dataclass
class EpisodeLog:
    """What a fresh-prompt episode leaves: its replies, rewards and final info (evaluation records)."""

    seed: int
    replies: list[str] = field(default_factory=list)
    prompts: list[list[dict[str, str]]] = field(default_factory=list)
    reward: float = 0.0
    format_errors: int = 0
    invalid_actions: int = 0
    final_info: dict[str, Any] = field(default_factory=dict)
    terminated: bool = False
    truncated: bool = False


class FreshRecorder:
    """A fresh single-turn prompt per focal turn (the paper's evaluation protocol); nothing is token-tracked."""

    def __init__(self, codec: ChatCodec | None, settings: ChatSettings, log: EpisodeLog) -> None:
        self.codec = codec
        self.settings = settings
        self.log = log
        self.observation = ""

    def open(self, observation: str, info: dict[str, Any], actions_left: int) -> bool:
        self.observation, self.log.final_info = observation, info
        return True

    def messages(self) -> list[dict[str, str]]:
        return fresh_messages(self.settings.system_prompt, self.observation, self.settings.instruction)

    def prompt(self) -> list[int]:
        chat = self.messages()
        self.log.prompts.append(chat)
        assert self.codec is not None, "a model-answered seat needs a codec"
        prefix = self.codec.encode(self.settings.reply_prefix) if self.settings.reply_prefix else []
        return self.codec.prompt_ids(chat) + prefix

    def reply(self, sample: Sample) -> str:
        assert self.codec is not None
        return self.text_reply(self.settings.reply_prefix + self.codec.decode_reply(sample.token_ids))

    def text_reply(self, text: str) -> str:
        self.log.replies.append(text)
        return text

    def step(self, result: tuple[str, float, bool, bool, dict[str, Any]], actions_left: int) -> bool:
        obs, reward, terminated, truncated, info = result
        log = self.log
        log.reward += float(reward)
        log.format_errors += int(bool(info.get("format_error", False)))
        log.invalid_actions += int(info.get("invalid_actions", 0) or 0)
        log.final_info, log.terminated, log.truncated = info, bool(terminated), bool(truncated)
        self.observation = obs
        return not (terminated or truncated)

    def end_unplayed(self, info: dict[str, Any]) -> None:
        self.log.final_info, self.log.terminated = info, True
