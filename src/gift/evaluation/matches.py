"""TicTacToe matches between any two players — models, scripted bots — for the `--ratings` table.

`schedule_matches` pairs every two players on every seed twice, seats swapped. A match is a `tictactoe-v0`
game on the episode driver (`MATCH_OPTIONS`): from the empty board, the first-seated player holds the focal
seat as Player 1 ('O') and moves first; the second-seated player answers the other seat. A model sees each move
as a fresh single-turn prompt; a reply without a legal move loses the game, as in the paper's evaluation. All
matches with the same first player run together, so a model's moves of every live match go out in one call.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from gift.evaluation.games_eval import GenerationSettings
from gift.evaluation.ratings import MatchResult, Rating, fit_ratings, schedule_matches
from gift.evaluation.scorers import answer_block
from gift.games.tictactoe import (
    BOTS,
    MARKS,
    Board,
    TicTacToe,
    format_move,
    legal_moves,
    parse_move,
    rc_to_cell,
    winner,
)
from gift.opponents import Opponent, resolve_opponent
from gift.opponents.base import SeatTurn
from gift.rollout.driver import Episode, ModelSeat, TextSeat, derive_seed, drive
from gift.rollout.recorders import ChatSettings, EpisodeLog, FreshRecorder

GAME = "tictactoe-v0"


def make_bot(spec: str | Mapping[str, Any]) -> Opponent:
    """A TicTacToe bot from a name or {"kind": name, **options} (random, perfect, epsilon)."""
    return resolve_opponent(spec, BOTS, where="--rating-players")


def read_move(reply: str, board: Board) -> int | None:
    """The legal cell named in the reply's answer block, or None (a forfeit)."""
    move = parse_move(answer_block(reply) or "")
    if move is None or not (1 <= move[0] <= 3 and 1 <= move[1] <= 3):
        return None
    cell = rc_to_cell(*move)
    return cell if cell in legal_moves(board) else None


MATCH_OPTIONS: Mapping[str, Any] = {"start": "empty", "seat": 1, "illegal_move": "loss", "parser": "lenient"}
"""A rating match: from the empty board, the first-seated player is Player 1 and holds the focal seat; an
illegal move (a focal seat's, or another seat's single try) loses, as in the paper's evaluation."""


def _second_seat(player: Any, settings: GenerationSettings) -> Opponent:
    """A bot as it is; a loaded model as a player whose prompts go to its backend together."""
    if isinstance(player, Opponent):
        return player
    from gift.opponents.policy import PolicyOpponent

    return PolicyOpponent(
        player.backend,
        player.codec.tokenizer,
        system_prompt=settings.system_prompt or "",
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
    )


def _first_seat(player: Any, settings: GenerationSettings, name: str) -> ModelSeat | TextSeat:
    if isinstance(player, Opponent):
        turns = SeatTurn(player, 1)
        return TextSeat(
            lambda game, _obs: f"<answer>{player.act(turns.request(game, game.focal_seat))}</answer>"
        )
    return ModelSeat(
        player.backend, settings.max_new_tokens, settings.temperature, settings.top_p,
        seed=derive_seed("ratings", name),
    )  # fmt: skip


def play_matches(
    players: Mapping[str, Any],
    seeds: Sequence[Hashable],
    settings: GenerationSettings,
) -> tuple[list[MatchResult], list[dict[str, Any]]]:
    """Play the seat-swapped schedule on the episode driver; players are `Opponent` bots or loaded models
    (`.backend`, `.codec`). Returns the results for `fit_ratings` and one record per game."""
    schedule = list(schedule_matches(list(players), list(seeds)))
    seconds = {name: _second_seat(p, settings) for name, p in players.items()}
    chat = ChatSettings(system_prompt=settings.system_prompt, instruction=settings.instruction)
    results: list[MatchResult | None] = [None] * len(schedule)
    records: list[dict[str, Any] | None] = [None] * len(schedule)
    for first in players:
        episodes = []
        for index, (seed, a, b) in enumerate(schedule):
            if a != first:
                continue
            game = TicTacToe(opponent=seconds[b], opponent_tries=1, **MATCH_OPTIONS)
            codec = getattr(players[a], "codec", None)
            log = EpisodeLog(derive_seed(GAME, "ratings", seed))
            episodes.append(Episode(game, log.seed, FreshRecorder(codec, chat, log), index))
        drive(episodes, _first_seat(players[first], settings, first))
        for ep in episodes:
            seed, a, b = schedule[ep.index]
            score, forfeit = _score(ep.game)
            results[ep.index] = MatchResult(seed, a, b, score)
            moves = [format_move(rc_to_cell(r, c)) for _, r, c in ep.game.moves] + ["forfeit"] * (
                forfeit is not None
            )
            records[ep.index] = {"seed": seed, "first": a, "second": b, "score": score, "moves": moves,
                                 "forfeit": forfeit}  # fmt: skip
    return [r for r in results if r is not None], [r for r in records if r is not None]


def _score(game: TicTacToe) -> tuple[float, int | None]:
    """The first-seated player's score (win 1, draw 0.5) and the seat that forfeited, if one did."""
    info = game.last_info
    if info.get("opponent_failed"):
        return 1.0, 2
    if info.get("end_reason") == "illegal_move":
        return 0.0, 1
    won = winner(game.board)
    return (0.5 if won is None else (1.0 if won == MARKS[0] else 0.0)), None


def ratings_markdown(
    ratings: Mapping[str, Rating],
    records: Sequence[Mapping[str, Any]],
    seeds: Sequence[Hashable],
    reference: str | None,
) -> str:
    """ratings.md: the rating table (Elo scale, bootstrap 95% intervals) and the head-to-head mean scores."""
    anchor = f"{reference} is anchored at 1000" if reference else "the players' mean is anchored at 1000"
    lines = [
        "# TicTacToe ratings",
        "",
        f"Seat-swapped, seed-paired matches from the empty board on {len(seeds)} seeds; {anchor}. "
        "Bradley-Terry fit with a first-seat bonus, draws count half; intervals: 95% bootstrap over seed-pairs.",
        "",
        "| Player | Rating [95% interval] | Games | Mean score |",
        "|---|---|---|---|",
    ]
    for name, rating in sorted(ratings.items(), key=lambda kv: -kv[1].rating):
        interval = f"{rating.rating:.0f} [{rating.low:.0f}, {rating.high:.0f}]"
        lines.append(f"| {name} | {interval} | {rating.games} | {rating.score:.3f} |")
    names = sorted(ratings)
    lines += ["", "Head-to-head: mean score of the row player against the column player (both seats).", ""]
    lines += ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for a in names:
        cells = []
        for b in names:
            scores = [r["score"] for r in records if (r["first"], r["second"]) == (a, b)]
            scores += [1.0 - r["score"] for r in records if (r["first"], r["second"]) == (b, a)]
            cells.append("-" if a == b or not scores else f"{sum(scores) / len(scores):.2f}")
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def rate_players(
    players: Mapping[str, Any], seeds: Sequence[Hashable], settings: GenerationSettings, bootstrap: int = 1000
) -> tuple[dict[str, Rating], list[dict[str, Any]], str]:
    """Play the matches, fit the ratings (anchored at "random" when it plays), and render ratings.md."""
    results, records = play_matches(players, seeds, settings)
    reference = "random" if "random" in players else None
    ratings = fit_ratings(results, reference=reference, bootstrap=bootstrap, seed=0)
    return ratings, records, ratings_markdown(ratings, records, seeds, reference)
