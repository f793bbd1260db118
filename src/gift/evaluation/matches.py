"""TicTacToe matches between any two players — models, scripted bots — for the `--ratings` table.

`schedule_matches` pairs every two players on every seed twice, seats swapped. Here a match is played from the
empty board: the first-seated player is Player 1 ('O') and moves first. Both games of a pair on one seed share the
seed's random stream (bots' tie-breaks, models' sampling), so the comparison is paired. A model sees each move as
a fresh single-turn prompt (the position from its seat, the legal moves and the format instruction); a reply
without a legal move forfeits the game (a loss), as in the paper's evaluation. Model moves of all live matches
are batched, one backend call per model per round.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gift.evaluation.games_eval import GenerationSettings, derive_seed, fresh_prompt
from gift.evaluation.ratings import MatchResult, Rating, fit_ratings, schedule_matches
from gift.evaluation.scorers import answer_block
from gift.games.tictactoe import (
    BOTS,
    EMPTY_BOARD,
    MARKS,
    Board,
    cell_to_rc,
    describe_position,
    format_move,
    is_full,
    legal_moves,
    mark_to_move,
    parse_move,
    play,
    rc_to_cell,
    winner,
)
from gift.opponents import Opponent, OpponentRequest, resolve_opponent

GAME = "tictactoe-v0"


def make_bot(spec: str | Mapping[str, Any]) -> Opponent:
    """A TicTacToe bot from a name or {"kind": name, **options} (random, perfect, epsilon)."""
    return resolve_opponent(spec, BOTS, where="--rating-players")


def model_prompt(board: Board, seat: int, variant_key: str) -> str:
    """What a model sees for its move: the position from its seat and the legal moves."""
    text = describe_position(board, seat, random.Random(variant_key))
    moves = ", ".join(format_move(c) for c in legal_moves(board))
    mark = MARKS[seat - 1]
    return f"{text}\n\n## Your Turn\nYou are Player {seat} ('{mark}'). The available moves (row, col) are: [{moves}]"


def read_move(reply: str, board: Board) -> int | None:
    """The legal cell named in the reply's answer block, or None (a forfeit)."""
    move = parse_move(answer_block(reply) or "")
    if move is None or not (1 <= move[0] <= 3 and 1 <= move[1] <= 3):
        return None
    cell = rc_to_cell(*move)
    return cell if cell in legal_moves(board) else None


@dataclass
class _Match:
    seed: Hashable
    players: tuple[str, str]
    rng: random.Random
    board: Board = EMPTY_BOARD
    forfeit: int | None = None
    """Seat (1 or 2) that forfeited."""
    moves: list[str] = field(default_factory=list)

    @property
    def over(self) -> bool:
        return self.forfeit is not None or winner(self.board) is not None or is_full(self.board)

    def score(self) -> float:
        """The first-seated player's score."""
        if self.forfeit is not None:
            return 0.0 if self.forfeit == 1 else 1.0
        won = winner(self.board)
        return 0.5 if won is None else (1.0 if won == MARKS[0] else 0.0)


def play_matches(
    players: Mapping[str, Any],
    seeds: Sequence[Hashable],
    settings: GenerationSettings,
) -> tuple[list[MatchResult], list[dict[str, Any]]]:
    """Play the seat-swapped schedule; players are `Opponent` bots or loaded models (`.backend`, `.codec`).

    Returns the results for `fit_ratings` and one record per game (players, seed, moves, score).
    """
    matches = [
        _Match(seed, (a, b), random.Random(f"{GAME}:ratings:{seed}"))
        for seed, a, b in schedule_matches(list(players), list(seeds))
    ]
    round_no = 0
    while live := [m for m in matches if not m.over]:
        round_no += 1
        waiting: dict[str, list[_Match]] = {}
        for match in live:
            seat = 1 if mark_to_move(match.board) == MARKS[0] else 2
            name = match.players[seat - 1]
            player = players[name]
            if isinstance(player, Opponent):
                _bot_move(player, match, seat)
            else:
                waiting.setdefault(name, []).append(match)
        for name, group in waiting.items():
            _model_moves(players[name], name, group, settings, round_no)
    results = [MatchResult(m.seed, m.players[0], m.players[1], m.score()) for m in matches]
    records = [
        {"seed": m.seed, "first": m.players[0], "second": m.players[1], "score": m.score(), "moves": m.moves,
         "forfeit": m.forfeit}
        for m in matches
    ]  # fmt: skip
    return results, records


def _apply(match: _Match, seat: int, cell: int | None) -> None:
    if cell is None:
        match.forfeit = seat
        match.moves.append("forfeit")
        return
    match.board = play(match.board, cell, MARKS[seat - 1])
    match.moves.append(format_move(cell))


def _bot_move(bot: Opponent, match: _Match, seat: int) -> None:
    board = match.board
    request = OpponentRequest(
        game=GAME,
        seat=seat,
        prompt="",
        state={"board": board, "mark": MARKS[seat - 1], "legal": [cell_to_rc(c) for c in legal_moves(board)]},
        rng=match.rng,
    )
    _apply(match, seat, read_move(f"<answer>{bot.act(request)}</answer>", board))


def _model_moves(
    model: Any, name: str, group: list[_Match], settings: GenerationSettings, round_no: int
) -> None:
    seats = [1 if mark_to_move(m.board) == MARKS[0] else 2 for m in group]
    chats = [
        fresh_prompt(settings, model_prompt(m.board, seat, f"{GAME}:ratings:{m.seed}:{len(m.moves)}"))
        for m, seat in zip(group, seats, strict=True)
    ]
    seed = derive_seed("ratings", name, round_no)
    samples = model.backend.generate(
        [model.codec.prompt_ids(chat) for chat in chats],
        settings.max_new_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        seed=seed,
    )
    for match, seat, sample in zip(group, seats, samples, strict=True):
        _apply(match, seat, read_move(model.codec.decode_reply(sample.token_ids), match.board))


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
