"""Who's the Spy (`spy-v0`): four players, one of them holds a different word; describe twice, then vote.

Three civilians share a word and the spy holds a related one; nobody is told their role. Players speak in seat
order for two description rounds, then everyone votes once; the most-voted player is out (ties at random) and the
game ends: the civilians win iff the spy was voted out. The trained player gets exactly three turns
(description, description, vote) and a reward of 1 when its side wins. Opponents seated before it act before it
in every round. The game holds the rules of all four seats; the other players answer outside it (the
single-agent view plays them with the `opponent` option, bots by default).

A description is invalid when empty or when it says the player's own word (`contains_word`); a vote must name an
alive "Player N" other than oneself. Invalid answers cost `INVALID_PENALTY` and are retried within the budget;
opponents get `opponent_tries` attempts and then forfeit (the episode ends with `opponent_failed`).
`rules="reference"` plays the reference implementation's readings instead (`gift.games.spy_reference`).
"""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from gift.errors import ConfigError, check_choice
from gift.games.base import RULE_PROFILES, Outcome, SeatView, TextGame
from gift.games.spy_bots import SpyBot, contains_word
from gift.games.spy_reference import compact_history, read_answer_block, reference_vote, vote_instruction
from gift.games.spy_words import WordList, load_word_pairs, shipped_word_list
from gift.opponents import resolve_opponent

__all__ = [
    "INVALID_PENALTY",
    "SPY_BOTS",
    "SpyBot",
    "WhosTheSpy",
    "WordList",
    "bound_history",
    "check_description",
    "check_vote",
    "contains_word",
    "load_word_pairs",
    "shipped_word_list",
    "tally_votes",
]

NUM_PLAYERS = 4
DESCRIPTION_ROUNDS = 2
INVALID_PENALTY = -0.1
"""Charged for an invalid description or vote (the paper's Who's the Spy environment); the player then tries again."""
SPY_BOTS = MappingProxyType({"bot": SpyBot})
TRIVIAL_DESCRIPTIONS = (
    "It is something many people know from everyday life.",
    "You could come across this almost anywhere.",
)
"""The open-ended answer of the trivial baseline policies. The two share no word, so when the first names the
secret word the second does not."""
_SLOTS = NUM_PLAYERS * (DESCRIPTION_ROUNDS + 1)
"""Turn order: every seat in round 1, every seat in round 2, every seat's vote."""
_VOTE_FOR = re.compile(r"vote\s+for\s+player\s*(\d+)", re.IGNORECASE)
_PLAYER = re.compile(r"player\s*(\d+)", re.IGNORECASE)

RULES = (
    "You are playing Who's the Spy, a word game for four players. Three of the players were given the same "
    "secret word; the fourth, the spy, was given a different word that is related to it. Nobody is told which "
    "of these they are. Everyone describes their own word in turn, for two rounds, without saying it. Then "
    "every player votes for the one they think holds the odd word, and the player with the most votes is out. "
    "The civilians win if the spy is voted out; otherwise the spy wins.",
    "Game: Who's the Spy (4 players). Each player was dealt a secret word: three got one word, and a single "
    "player, the spy, got a similar but different one. You do not know whether your word is the common one or "
    "the odd one. Play: two rounds of one-sentence descriptions in seat order, then one vote. Whoever collects "
    "the most votes is eliminated (a tie is settled at random). If that player is the spy, the three civilians "
    "win; if not, the spy wins.",
    "Welcome to Who's the Spy. Four players sit at the table. Three share a word and are civilians; one holds "
    "a related word and is the spy, though no one is told their part. On each turn a player gives a short "
    "clue about their word, never naming the word itself, and there are two such rounds. After that, all "
    "players vote to remove someone. Remove the spy and the civilians win; remove a civilian and the spy wins. "
    "The descriptions are the only evidence anyone has.",
    "Rules of Who's the Spy: there are 4 players and 2 words. Three players hold word A and one player holds "
    "word B, where A and B are close in meaning. Nobody knows which word the others hold, nor whether their own "
    "word is the majority word. In each of two rounds every player says one descriptive sentence without using "
    "their word. Then everyone votes for another player; the most-voted player leaves and the game ends. The "
    "holders of word A win if the eliminated player held word B; otherwise the holder of word B wins.",
    "This is a social deduction game called Who's the Spy. One of the four players has a word slightly "
    "different from everybody else's, and even that player does not know it. Describe your word so that the "
    "others believe you share theirs, and watch for descriptions that do not quite fit. Two rounds of "
    "descriptions are followed by a single vote: the player named most often is eliminated, ties broken by "
    "chance. Civilians win by eliminating the spy; the spy wins by surviving the vote.",
)
"""Rule wordings; one is picked per prompt from (seed, turn, seat), so the text varies without touching rng."""


# ---------------------------------------------------------------------------------------------- pure rules
def check_description(text: str, word: str) -> str | None:
    """Why `text` is not a valid description of `word`, or None when it is."""
    if not text.strip():
        return "Your description was empty. Describe your word in one short sentence."
    if contains_word(text, word):
        return "Your description contains your secret word (or its plural). Describe it without saying it."
    return None


def check_vote(answer: str, voter: int, alive: list[int]) -> tuple[int | None, str | None]:
    """(target, None) for a legal vote, else (None, why). "vote for Player N" wins over other mentions."""
    m = _VOTE_FOR.search(answer) or _PLAYER.search(answer)
    eligible = ", ".join(f"Player {s}" for s in alive if s != voter)
    if m is None:
        return None, f"No vote found. Answer with: I vote for Player N (one of {eligible})."
    target = int(m.group(1))
    if target == voter:
        return None, f"You cannot vote for yourself. Choose one of {eligible}."
    if target not in alive:
        return None, f"Player {target} cannot receive votes. Choose one of {eligible}."
    return target, None


def tally_votes(votes: Mapping[int, int], rng: random.Random) -> int:
    """The player with the most votes; a tie is broken uniformly at random with `rng` (drawn only on ties)."""
    if not votes:
        raise ValueError("tally_votes needs at least one vote")
    counts = Counter(votes.values())
    top = max(counts.values())
    leaders = sorted(seat for seat, n in counts.items() if n == top)
    return leaders[0] if len(leaders) == 1 else rng.choice(leaders)


def _word_count(history: Mapping[int, list[str]]) -> int:
    return sum(len(text.split()) for texts in history.values() for text in texts)


def bound_history(history: Mapping[int, list[str]], limit: int) -> tuple[dict[int, list[str]], bool]:
    """Keep the history within `limit` words (descriptions only) by dropping each player's oldest ones.

    Returns (bounded history, whether anything was dropped). Every player keeps at least their latest
    description; if even those are too long together, each is cut to an equal share of the limit.
    """
    full = {seat: list(texts) for seat, texts in history.items()}
    if _word_count(full) <= limit:
        return full, False
    longest = max(len(texts) for texts in full.values())
    for keep in range(longest - 1, 0, -1):
        trimmed = {seat: texts[-keep:] for seat, texts in full.items()}
        if _word_count(trimmed) <= limit:
            return trimmed, True
    speakers = sum(1 for texts in full.values() if texts)
    share = max(1, limit // max(1, speakers))
    cut = {}
    for seat, texts in full.items():
        words = texts[-1].split() if texts else []
        cut[seat] = [" ".join(words[:share]) + (" …" if len(words) > share else "")] if texts else []
    return cut, True


# ---------------------------------------------------------------------------------------------- the game
class WhosTheSpy(TextGame):
    """Who's the Spy against three opponents (scripted bots by default, or any `Opponent`).

    `rules`: "gift" (default) or "reference" — the reference implementation's description and vote rules, vote
    prompt, opponent-reply reading, up to 5 `||` actions per reply, a lasting digest of a long history and a
    forfeit scored as a loss (`gift.games.spy_reference`; the README lists every difference).
    """

    id = "spy-v0"
    seats = NUM_PLAYERS
    default_max_turns = 3

    def __init__(
        self,
        opponent: Any = "bot",
        word_list: str | os.PathLike[str] | None = None,
        history_limit: int = 300,
        opponent_tries: int = 3,
        rules: str = "gift",
        max_turns: int | None = None,
        parser: str = "strict",
    ) -> None:
        super().__init__(max_turns=max_turns, parser=parser)
        check_choice(f"{self.id}: rules", rules, RULE_PROFILES)
        self.rules = rules
        if rules == "reference":
            self.max_actions_per_turn = 5  # the reference splits every answer on `||`, up to 5 actions
        for name, value in (("history_limit", history_limit), ("opponent_tries", opponent_tries)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{self.id}: {name}={value!r} must be an integer >= 1")
        if word_list is not None and not isinstance(word_list, str | os.PathLike):
            raise ConfigError(f"{self.id}: word_list={word_list!r} must be None (the shipped list) or a path")
        self.words_source = shipped_word_list() if word_list is None else load_word_pairs(word_list)
        self.opponent = resolve_opponent(opponent, SPY_BOTS, self.id)
        self.history_limit = history_limit
        self.opponent_tries = opponent_tries
        self._started = False

    # ------------------------------------------------------------------ state
    def _reset(self) -> None:
        spy_word, civilian_word = self.words_source.pairs[self.rng.randrange(len(self.words_source.pairs))]
        self.trained_seat = self.rng.randint(1, NUM_PLAYERS)
        self.spy_seat = self.rng.randint(1, NUM_PLAYERS)
        self.spy_word, self.civilian_word = spy_word, civilian_word
        self.words = {s: spy_word if s == self.spy_seat else civilian_word for s in self._seats()}
        self.history: dict[int, list[str]] = {s: [] for s in self._seats()}
        self.votes: dict[int, int] = {}
        self.alive = list(self._seats())
        self.slot = 0
        self.eliminated: int | None = None
        self.winner: str | None = None
        self.forfeited_seat: int | None = None
        self.forfeit_scored = False
        self.history_digested = False
        self.focal_seat = self.trained_seat
        self._started = True

    @staticmethod
    def _seats() -> range:
        return range(1, NUM_PLAYERS + 1)

    @property
    def round(self) -> int:
        """1 or 2 while describing, 3 during the vote."""
        return min(self.slot, _SLOTS - 1) // NUM_PLAYERS + 1

    @property
    def phase(self) -> str:
        if self.forfeited_seat is not None or self.slot >= _SLOTS:
            return "over"
        return "describe" if self.round <= DESCRIPTION_ROUNDS else "vote"

    def _slot_seat(self) -> int:
        return self.slot % NUM_PLAYERS + 1

    def seat_state(self, seat: int) -> dict[str, Any]:
        """The structured view of `seat` that scripted bots read (keys documented in `gift.games.spy_bots`)."""
        word = self.words[seat]
        return {
            "phase": self.phase,
            "round": self.round,
            "seat": seat,
            "num_players": NUM_PLAYERS,
            "secret_word": word,
            "hints": self.words_source.hints_for(word),
            "used_descriptions": list(self.history[seat]),
            "alive": list(self.alive),
            "eligible": [s for s in self.alive if s != seat],
            "history": {s: list(texts) for s, texts in self.history.items()},
            "answer_block": self.rules == "reference",
        }

    # ------------------------------------------------------------------ turns
    def _to_move(self) -> int:
        return self._slot_seat()

    def _act(self, action: str) -> Outcome:
        return self._apply(self.trained_seat, action, penalty=INVALID_PENALTY)

    def _act_other(self, seat: int, action: str) -> Outcome:
        return self._apply(seat, action, penalty=0.0)

    def _other_answer(self, reply: str) -> str | None:
        return super()._other_answer(reply) if self.rules == "gift" else read_answer_block(reply)

    def _apply(self, seat: int, action: str, penalty: float) -> Outcome:
        """A description or a vote of `seat`: rejected with the reason, or recorded (the vote may end the game)."""
        if self.phase == "describe":
            problem = self._description_problem(seat, action)
            if problem is not None:
                return Outcome(valid=False, penalty=penalty, message=problem)
            self._record(seat, action)
        else:
            read = check_vote if self.rules == "gift" else reference_vote
            target, problem = read(action, seat, self.alive)
            if target is None:
                return Outcome(valid=False, penalty=penalty, message=problem or "")
            self.votes[seat] = target
        self.slot += 1
        return self._finish() if self.slot >= _SLOTS else Outcome()

    def _description_problem(self, seat: int, text: str) -> str | None:
        if self.rules == "gift":
            return check_description(text, self.words[seat])
        if (
            seat == self.trained_seat and not text.strip()
        ):  # the reference takes any answered text from others
            return "Your description was empty. Describe your word in one short sentence."
        return None

    def _record(self, seat: int, text: str) -> None:
        """Keep a description; under reference rules a history over the limit becomes a lasting digest."""
        if self.rules == "gift":
            self.history[seat].append(" ".join(text.split()))
            return
        self.history[seat].append(text.strip())
        digest = compact_history(self.history, self.history_limit)
        if digest is not None:
            self.history = digest
            self.history_digested = True

    def forfeit(self, seat: int) -> None:
        """Unscored; under reference rules scored 0 once the focal seat has played (before, there is no reply)."""
        self.forfeited_seat = seat
        if self.rules == "reference" and self.turns_used > 0:
            self.forfeit_scored = True
            self.forfeit_as_loss(seat)
        else:
            super().forfeit(seat)

    def _finish(self) -> Outcome:
        self.eliminated = tally_votes(self.votes, self.rng)
        self.alive = [s for s in self.alive if s != self.eliminated]
        self.winner = "civilians" if self.eliminated == self.spy_seat else "spy"
        won = self.winner == self._side(self.trained_seat)
        return Outcome(
            terminated=True, reward=1.0 if won else 0.0, success=won, end_reason="win" if won else "loss"
        )

    def _side(self, seat: int) -> str:
        return "spy" if seat == self.spy_seat else "civilians"

    # ------------------------------------------------------------------ text
    def _rules_text(self, seat: int) -> str:
        key = (self.seed or 0) * 1_000_003 + self.turns_used * 7919 + self.slot * 101 + seat
        return RULES[random.Random(key).randrange(len(RULES))]

    def observe(self, seat: int) -> SeatView:
        eligible = [f"I vote for Player {s}" for s in self.alive if s != seat]
        legal = eligible if self.phase == "vote" else None
        return SeatView(self.id, seat, self._prompt(seat), self.seat_state(seat), legal)

    def _prompt(self, seat: int) -> str:
        lines = [
            self._rules_text(seat),
            "",
            "## Your turn",
            f"You are Player {seat}. Your secret word is: {self.words[seat]}",
        ]
        if self.phase == "vote":
            eligible = ", ".join(f"Player {s}" for s in self.alive if s != seat)
            request = (
                "Voting time. Going by the descriptions, vote for the player you believe holds a different word "
                "from the others. You cannot vote for yourself."
                if self.rules == "gift"
                else vote_instruction(seat == self.spy_seat)
            )
            lines += [
                request,
                f"Players you can vote for: {eligible}.",
                "Answer in the form: I vote for Player N",
            ]
        else:
            lines += [
                f"Description round {self.round} of {DESCRIPTION_ROUNDS}: describe your word in one short sentence.",
                "Never write the word itself or its plural; a description that contains it is rejected.",
                "Make it clearly different from anything you said before: take a new angle, such as what it is "
                "used for, how it looks or feels, where it is found, or what it reminds people of.",
                "If the word has several meanings, go with the most common one.",
            ]
        lines += ["", "## Descriptions so far", *self._history_lines(seat)]
        return "\n".join(lines)

    def _history_lines(self, seat: int) -> list[str]:
        if self.rules == "gift":
            shown, trimmed = bound_history(self.history, self.history_limit)
        else:
            shown, trimmed = self.history, self.history_digested
        if not any(shown.values()):
            return ["(nobody has spoken yet)"]
        note = (
            "(Earlier descriptions are left out; each player's latest are shown.)"
            if self.rules == "gift"
            else "(The descriptions so far were replaced by a short digest.)"
        )
        lines = [note] if trimmed else []
        for s, texts in shown.items():
            if not texts:
                continue
            lines.append(f"Player {s}{' (you)' if s == seat else ''}:")
            lines += [f"- {text}" for text in texts]
        return lines

    def render(self) -> str:
        if not self._started:
            return "Call reset() to start a game of Who's the Spy."
        if self.forfeited_seat is not None:
            scored = "you score 0" if self.forfeit_scored else "it cannot be scored"
            return f"The game is over: Player {self.forfeited_seat} gave no valid answer, so {scored}."
        if self.eliminated is not None:
            who = "the spy" if self.eliminated == self.spy_seat else "a civilian"
            return (
                f"The game is over. Player {self.eliminated} was voted out and was {who}. The spy was Player "
                f"{self.spy_seat} with the word {self.spy_word!r}; the civilians had {self.civilian_word!r}. "
                f"The {self.winner} win."
            )
        return self._prompt(self.trained_seat)

    oracle_name = "oracle"
    answer_in_last_reply = True

    @classmethod
    def oracle_answer(cls, info: dict[str, Any], legal: list[str] | None, rng: Any) -> str | None:
        """Knows the roles: votes for the spy, or as the spy for a random civilian."""
        if info.get("phase") != "vote":
            return cls.open_answer(info)
        me, spy = info["trained_seat"], info["spy_seat"]
        if me != spy:
            return f"I vote for Player {spy}"
        return rng.choice(legal) if legal else f"I vote for Player {1 if me != 1 else 2}"

    @classmethod
    def recorded_answer(cls, info: dict[str, Any]) -> str | None:
        vote = (info.get("votes") or {}).get(info.get("trained_seat"))
        return None if vote is None else f"Player {vote}"

    @classmethod
    def open_answer(cls, info: dict[str, Any]) -> str | None:
        """A description that fits any word and never names the player's own (`info["secret_word"]`)."""
        word = str(info.get("secret_word") or "")
        return next(
            (d for d in TRIVIAL_DESCRIPTIONS if not word or not contains_word(d, word)), TRIVIAL_DESCRIPTIONS[-1]
        )

    @classmethod
    def constant_answers(cls) -> list[str] | None:
        return [f"I vote for Player {k}" for k in range(1, NUM_PLAYERS + 1)]

    def brief(self) -> str:
        text = self.render()
        return text[text.index("## Your turn") :] if "## Your turn" in text else text

    def solution(self) -> str | None:
        if not self._started:
            return None
        return f"the spy was Player {self.spy_seat} ({self.spy_word!r}; the civilians had {self.civilian_word!r})"

    def legal_actions(self) -> list[str] | None:
        if not self._started or self.phase != "vote":
            return None
        return [f"I vote for Player {s}" for s in self.alive if s != self.trained_seat]

    def game_info(self) -> dict[str, Any]:
        if not self._started:
            return {}
        info: dict[str, Any] = {
            "phase": self.phase,
            "round": self.round,
            "trained_seat": self.trained_seat,
            "spy_seat": self.spy_seat,
            "roles": {s: "spy" if s == self.spy_seat else "civilian" for s in self._seats()},
            "trained_role": "spy" if self.trained_seat == self.spy_seat else "civilian",
            "spy_word": self.spy_word,
            "civilian_word": self.civilian_word,
            "secret_word": self.words[self.trained_seat],
            "descriptions": {s: list(texts) for s, texts in self.history.items()},
            "votes": dict(self.votes),
            "eliminated": self.eliminated,
            "winner": self.winner,
            "forfeited_seat": self.forfeited_seat,
            "rules": self.rules,
        }
        if self.forfeited_seat is not None and not self.forfeit_scored:
            info["opponent_failed"] = True
        return info
