"""Every piece of text a language model reads, for the trained seat and for LLM opponents alike.

Two strategies share these pieces:

- the training chat (`gift.rollout.transcript.ChatCodec` keeps it token-exact): a system message, then one user
  message per turn — "Turn t:", the observation, the budget left, the answer instruction — with the step reward
  in front of every block after the first;
- a fresh single-turn prompt per move (the paper's evaluation, the paper's evaluation protocol, and every LLM opponent): the
  system message and one user message holding the feedback on a rejected attempt (if any), the observation
  and the instruction, each exactly once.

Games write only their observations (rules, state, the game's own answer hint); nothing here is game-specific.
"""

from __future__ import annotations

from gift.games.protocol import FORMAT_INSTRUCTION

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
"""The system message of training and of evaluation alike (the paper's generic one); the observation carries
the rules."""

OPPONENT_INSTRUCTION = "Put your final answer inside <answer> </answer>; keep the whole reply under 200 words."
"""What an LLM opponent is asked for: opponents are read with the lenient parser, so the think block is optional."""


def format_reward(reward: float) -> str:
    """Rewards as the model reads them: 1, 0.5, -0.1 (no float noise such as 0.30000000000000004)."""
    return f"{round(float(reward), 6):g}"


def format_instruction(max_new_tokens: int | None) -> str:
    """The answer-protocol instruction plus a hint of the reply length cap."""
    if max_new_tokens is None:
        return FORMAT_INSTRUCTION
    return f"{FORMAT_INSTRUCTION} Keep the whole reply within {max_new_tokens} tokens."


def turn_block(turn: int, observation: str, actions_left: int, instruction: str) -> str:
    """One turn's block: the turn number, the game's observation, the remaining budget and the instruction."""
    return f"Turn {turn}:\n{observation}\nYou have {actions_left} actions left.\n{instruction}"


def feedback_message(reward: float, next_block: str) -> str:
    """The user message after an assistant reply: the step reward, then the next turn block."""
    return f"Reward: {format_reward(reward)}\n\n{next_block}"


def first_messages(system_prompt: str | None, first_block: str) -> list[dict[str, str]]:
    """The opening of every transcript (the system message is left out when `system_prompt` is empty)."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": first_block})
    return messages


def single_turn_text(observation: str, instruction: str, feedback: str = "") -> str:
    """The user message of a fresh single-turn prompt: feedback on a rejected attempt, observation, instruction."""
    parts = [feedback] if feedback else []
    parts += [observation, instruction]
    return "\n\n".join(parts)


def fresh_messages(
    system_prompt: str | None, observation: str, instruction: str, feedback: str = ""
) -> list[dict[str, str]]:
    """A fresh single-turn chat for one move (evaluation's protocol and every LLM opponent)."""
    return first_messages(system_prompt, single_turn_text(observation, instruction, feedback))


def opponent_prompt(observation: str, feedback: str = "") -> str:
    """The whole text an LLM opponent answers: one feedback line (on a retry), its view, one instruction."""
    return single_turn_text(observation, OPPONENT_INSTRUCTION, feedback)


def rejection_feedback(why: str, shown_reply: str) -> str:
    """Why another seat's previous answer was refused, with a bounded excerpt of it."""
    reason = why.strip() or "It was not a legal answer."
    return f"Your previous reply {shown_reply} was rejected. {reason}"
