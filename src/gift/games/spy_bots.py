"""Scripted opponents for Who's the Spy, and the word rules they share with the game.

The whole-word rule (`contains_word`) lives here rather than in `gift.games.spy` so the bots can check their own
descriptions without importing the game module (which imports this one).

State keys a bot reads from `OpponentRequest.state` (sent by `WhosTheSpy.seat_state`):
    phase             "describe" or "vote"
    round             1 or 2 while describing, 3 for the vote
    seat              this player's number (1-based)
    num_players       4
    secret_word       this player's word (never its role: nobody is told whether they are the spy)
    hints             hint phrases for the secret word from the word list (empty for lists without hints)
    used_descriptions this player's earlier descriptions, oldest first
    alive             players still in the game
    eligible          players this seat may vote for (alive, not itself)
    history           {player: [descriptions, oldest first]} for every player, this one included
    answer_block      True when the game reads only `<answer>…</answer>` from other seats (reference rules)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from gift.errors import check_range
from gift.opponents.base import Opponent, OpponentRequest

GENERIC_DESCRIPTIONS: tuple[str, ...] = (
    "Most people have come across this at some point.",
    "You could easily run into one during an ordinary week.",
    "Plenty of folks have an opinion about this thing.",
    "I would recognise it anywhere, but I will stay vague.",
    "Think about everyday life and you will get close.",
    "More common than you might expect.",
    "Children and grown-ups alike know what this is.",
    "There are several kinds of it around the world.",
    "Easy to picture once somebody mentions it.",
    "Nothing exotic; familiar to nearly everyone.",
)
"""Descriptions for words the list has no hints for; each is checked against the word before use."""

_STOPWORDS = frozenset(
    """a an the of to in on at by for from with without and or but nor so as is are was were be been being it its
    it's this that these those there their they them you your yours i me my we our he his she her who whom which
    what when where why how than then also very often some any all most more much many can could would should
    will may might must do does did done has have had not no yes just like one ones into onto out up down over
    under about after before while if else such only own same other another each every both few too""".split()
)
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def contains_word(text: str, word: str) -> bool:
    """True when `text` says `word`: case-insensitive, whole word, also +s / +es; a multi-word `word` as a phrase.

    "cat" is found in "Cats purr" and "the cat's toy" but not in "category".
    """
    tokens = word.split()
    if not tokens:
        return False
    body = r"\s+".join(re.escape(t) for t in tokens)
    return re.search(rf"(?<!\w){body}(?:e?s)?(?!\w)", text, re.IGNORECASE) is not None


def _stem(token: str) -> str:
    if token.endswith("'s"):
        token = token[:-2]
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("s") and not token.endswith("ss"):
        return token[:-1]
    return token


def content_words(text: str) -> set[str]:
    """Lower-cased, roughly singular content words of `text` (stop words dropped), for overlap scores."""
    return {_stem(t) for t in _TOKEN.findall(text.lower()) if t not in _STOPWORDS}


def fit_score(descriptions: Iterable[str], vocabulary: set[str]) -> float:
    """Share of the content words in `descriptions` that occur in `vocabulary` (0 when they have none)."""
    said: set[str] = set()
    for text in descriptions:
        said |= content_words(text)
    if not said:
        return 0.0
    return len(said & vocabulary) / len(said)


def valid_generic_descriptions(word: str) -> list[str]:
    """The generic descriptions that do not say `word`."""
    return [d for d in GENERIC_DESCRIPTIONS if not contains_word(d, word)]


class SpyBot(Opponent):
    """Describes its word with unused hints and votes for the player whose words fit its own word least.

    `noise` is the chance of a random (still valid) description or vote instead, for weaker opponents.
    """

    name = "bot"

    def __init__(self, noise: float = 0.0) -> None:
        super().__init__()
        check_range("spy bot: noise", noise, 0.0, 1.0)
        self.noise = float(noise)

    def act(self, request: OpponentRequest) -> str:
        state = request.state
        noisy = self.noise > 0 and request.rng.random() < self.noise
        if state["phase"] == "vote":
            text = f"I vote for Player {self._vote(state, request, noisy)}"
        else:
            text = self._describe(state, request, noisy)
        # A game that reads only answer blocks from other seats (spy-v0 under reference rules) says so.
        return f"<answer>{text}</answer>" if state.get("answer_block") else text

    # ------------------------------------------------------------------ choices
    def _describe(self, state: Mapping, request: OpponentRequest, noisy: bool) -> str:
        word = state["secret_word"]
        used = set(state.get("used_descriptions", ()))
        generic = [d for d in valid_generic_descriptions(word) if d not in used]
        if not noisy:
            hints = [h for h in state.get("hints", ()) if h not in used and h.strip()]
            hints = [h for h in hints if not contains_word(h, word)]
            if hints:
                return request.rng.choice(hints)
        if generic:
            return request.rng.choice(generic)
        return request.rng.choice(valid_generic_descriptions(word) or ["I will say nothing more."])

    def _vote(self, state: Mapping, request: OpponentRequest, noisy: bool) -> int:
        eligible: Sequence[int] = sorted(state["eligible"])
        if noisy:
            return request.rng.choice(eligible)
        vocabulary = content_words(state["secret_word"])
        for hint in state.get("hints", ()):
            vocabulary |= content_words(hint)
        for own in state.get("used_descriptions", ()):
            vocabulary |= content_words(own)
        history: Mapping[int, Sequence[str]] = state.get("history", {})
        scores = {seat: fit_score(history.get(seat, ()), vocabulary) for seat in eligible}
        lowest = min(scores.values())
        return request.rng.choice([seat for seat in eligible if scores[seat] == lowest])
