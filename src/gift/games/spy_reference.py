"""Who's the Spy under `rules="reference"`: the reference implementation's readings where gift's differ.

Pure functions, so that tests state each rule on its own (the README's rules table lists them all):

- a description is valid when it is not empty, even when it says the secret word (gift rejects that);
- a vote is the *first* "player N" (one space, any case) in the answer; if that one names oneself or nobody
  alive the vote is invalid, even when a later mention would be legal (gift prefers "vote for Player N");
- another seat's reply counts only when it holds a closed `<answer>…</answer>` block (from the first opening
  tag to the last closing one); its content is then accepted as a description even when empty;
- the vote prompt tells a civilian to find the spy and the spy to deflect suspicion (gift's vote prompt is the
  same for both roles, so it does not reveal the role);
- a history over the word limit is replaced, for good, by a short digest of every player's descriptions. The
  reference asks an external model for a summary of under 100 words; this digest keeps the first words of each
  description within the same budget, so no model is needed and a seed still fixes the game.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = [
    "DIGEST_WORDS",
    "compact_history",
    "history_words",
    "read_answer_block",
    "reference_vote",
    "vote_instruction",
]

DIGEST_WORDS = 100
"""Words the digest of a long history keeps at most (the reference's summary target)."""
_FIRST_PLAYER = re.compile(r"player (\d+)")
_ANSWER_BLOCK = re.compile(r"<answer>(.*)</answer>", re.DOTALL)


def read_answer_block(reply: str) -> str | None:
    """The stripped content of the reply's answer block, or None when it has no closed one."""
    m = _ANSWER_BLOCK.search(reply)
    return m.group(1).strip() if m else None


def reference_vote(answer: str, voter: int, alive: list[int]) -> tuple[int | None, str | None]:
    """(target, None) when the first "player N" of `answer` names an alive player other than `voter`."""
    m = _FIRST_PLAYER.search(answer.lower())
    eligible = ", ".join(f"Player {s}" for s in alive if s != voter)
    if m is None:
        return None, f"No vote found. Answer with: I vote for Player N (one of {eligible})."
    target = int(m.group(1)[:6])
    if target == voter:
        return None, f"The first player you named is yourself. Name one of {eligible} first."
    if target not in alive:
        return (
            None,
            f"The first player you named, Player {target}, cannot receive votes. Choose one of {eligible}.",
        )
    return target, None


def vote_instruction(is_spy: bool) -> str:
    """The role-dependent vote request of the reference (it reveals the voter's role)."""
    if is_spy:
        return (
            "Voting time. You hold the odd word: vote so that suspicion falls on someone else, picking a civilian "
            "whose descriptions look doubtful while going along with the table's reasoning."
        )
    return (
        "Voting time. Vote for the spy: look for descriptions that are too vague, too precise or that contradict "
        "the others."
    )


def history_words(history: Mapping[int, list[str]]) -> int:
    """Words of the history as rendered: a "Player N:" label per speaker, then their descriptions."""
    return sum(2 + sum(len(t.split()) for t in texts) for texts in history.values() if texts)


def compact_history(history: Mapping[int, list[str]], limit: int) -> dict[int, list[str]] | None:
    """The digest that replaces a history of more than `limit` words, or None when it is within the limit.

    Every speaker gets an equal share of `DIGEST_WORDS`, split over their descriptions; each description keeps
    its first words (descriptions lead with what matters) and a cut one ends with "…". One entry per speaker.
    """
    if history_words(history) <= limit:
        return None
    speakers = [s for s, texts in history.items() if texts]
    share = max(1, DIGEST_WORDS // max(1, len(speakers)) - 2)
    digest: dict[int, list[str]] = {s: [] for s in history}
    for seat in speakers:
        texts = history[seat]
        each = max(1, share // len(texts) - 1)  # room for the "…" of a cut description
        parts = []
        for text in texts:
            words = text.split()
            parts.append(" ".join(words[:each]) + (" …" if len(words) > each else ""))
        digest[seat] = ["; ".join(parts)]
    return digest
