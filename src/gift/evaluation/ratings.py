"""Ratings for players (checkpoints, bots, endpoints) from seat-swapped, seed-paired matches.

`schedule_matches` pairs every two players on every seed twice, once in each seat, so the first-move advantage
cancels and each comparison is paired on the same randomness. `fit_ratings` fits a Bradley–Terry model by
maximum likelihood (draws count half a win, an optional common first-seat bonus is fitted alongside), reports it
on the Elo scale (400 points = 10:1 odds) anchored at a reference player or the mean, and gives bootstrap
intervals that resample the seed-paired games as units, with a seeded generator.

A weak prior — `prior` virtual draws of each player against an average opponent — keeps the estimate finite when
a player wins or loses everything (plain maximum likelihood would send it to ±infinity).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from gift.errors import ConfigError

ELO_PER_LOGIT = 400.0 / math.log(10.0)
"""Elo points per unit of the Bradley–Terry log-odds scale."""
_SCORES = {"win": 1.0, "draw": 0.5, "loss": 0.0}


@dataclass(frozen=True)
class MatchResult:
    """One game: `score` is the first-seated player's result (1 win, 0.5 draw, 0 loss; any value in [0, 1])."""

    seed: Hashable
    first: str
    second: str
    score: float


@dataclass(frozen=True)
class Rating:
    """A player's rating on the Elo scale with its bootstrap interval, games played and mean score."""

    rating: float
    low: float
    high: float
    games: int
    score: float

    def format(self) -> str:
        return f"{self.rating:.0f} [{self.low:.0f}, {self.high:.0f}] (games={self.games})"

    def __str__(self) -> str:
        return self.format()


@dataclass(frozen=True)
class BradleyTerryFit:
    """Point estimate on the log-odds scale: strength per player and the first seat's bonus (0 if not fitted)."""

    strengths: dict[str, float]
    seat_advantage: float


def schedule_matches(players: Sequence[str], seeds: Sequence[Hashable]) -> list[tuple[Hashable, str, str]]:
    """(seed, first, second) for every pair on every seed, twice with the seats swapped."""
    players = list(players)
    seeds = list(seeds)
    if len(players) < 2 or len(set(players)) != len(players):
        raise ConfigError(f"players={players!r} must name at least two distinct players")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds={seeds!r} must be a non-empty list without repeats")
    schedule = []
    for seed in seeds:
        for a, b in combinations(players, 2):
            schedule += [(seed, a, b), (seed, b, a)]
    return schedule


def _as_result(item: MatchResult | Sequence[Any] | Mapping[str, Any]) -> MatchResult:
    if isinstance(item, MatchResult):
        seed, first, second, score = item.seed, item.first, item.second, item.score
    elif isinstance(item, Mapping):
        seed, first, second, score = (item.get(k) for k in ("seed", "first", "second", "score"))
    else:
        seed, first, second, score = item
    value = _SCORES.get(score) if isinstance(score, str) else score
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(
            f"match score {score!r} is not allowed; use a number in [0, 1] or 'win', 'draw', 'loss'"
        )
    if first == second:
        raise ConfigError(f"a match needs two different players, got {first!r} twice")
    return MatchResult(seed, str(first), str(second), float(value))


class _Design:
    """The matches as arrays: player indices per seat, scores, and cluster ids for the bootstrap."""

    def __init__(self, results: list[MatchResult], seat_advantage: bool) -> None:
        self.players = sorted({r.first for r in results} | {r.second for r in results})
        index = {p: i for i, p in enumerate(self.players)}
        self.first = np.array([index[r.first] for r in results])
        self.second = np.array([index[r.second] for r in results])
        self.score = np.array([r.score for r in results])
        self.seat_advantage = seat_advantage
        keys = [(repr(r.seed), tuple(sorted((r.first, r.second)))) for r in results]
        cluster_ids = {k: i for i, k in enumerate(dict.fromkeys(keys))}
        self.cluster = np.array([cluster_ids[k] for k in keys])
        self.n_clusters = len(cluster_ids)

    @property
    def n_params(self) -> int:
        return len(self.players) + (1 if self.seat_advantage else 0)

    def logits(self, theta: np.ndarray) -> np.ndarray:
        d = theta[self.first] - theta[self.second]
        return d + theta[-1] if self.seat_advantage else d

    def objective(self, theta: np.ndarray, weight: np.ndarray, prior: float) -> float:
        d = self.logits(theta)
        ll = -(weight * (self.score * np.logaddexp(0.0, -d) + (1 - self.score) * np.logaddexp(0.0, d))).sum()
        return float(ll - prior * (0.5 * np.logaddexp(0.0, -theta) + 0.5 * np.logaddexp(0.0, theta)).sum())

    def fit(self, weight: np.ndarray, prior: float, max_iter: int = 100) -> np.ndarray:
        """Newton's method with backtracking on the (concave) penalised log-likelihood."""
        n = self.n_params
        theta = np.zeros(n)
        rows = np.arange(len(self.score))
        X = np.zeros((len(self.score), n))
        X[rows, self.first] += 1.0
        X[rows, self.second] -= 1.0
        if self.seat_advantage:
            X[:, -1] = 1.0
        value = self.objective(theta, weight, prior)
        for _ in range(max_iter):
            p = 1.0 / (1.0 + np.exp(-self.logits(theta)))
            sig = 1.0 / (1.0 + np.exp(-theta))
            grad = X.T @ (weight * (self.score - p)) + prior * (0.5 - sig)
            hess = -(X.T * (weight * p * (1 - p))) @ X - np.diag(prior * sig * (1 - sig))
            step = np.linalg.solve(hess, -grad)
            t = 1.0
            while t > 1e-8:
                candidate = theta + t * step
                new_value = self.objective(candidate, weight, prior)
                if new_value >= value - 1e-12:
                    break
                t /= 2.0
            theta, value = candidate, new_value
            if np.abs(t * step).max() < 1e-10:
                break
        return theta


def _check(results: Iterable[Any], prior: float) -> list[MatchResult]:
    matches = [_as_result(r) for r in results]
    if not matches:
        raise ConfigError("fit_ratings: no match results given")
    if isinstance(prior, bool) or not isinstance(prior, int | float) or prior <= 0:
        raise ConfigError(f"prior={prior!r} must be a positive number of virtual draws")
    return matches


def fit_bradley_terry(
    results: Iterable[MatchResult | Sequence[Any] | Mapping[str, Any]],
    prior: float = 1.0,
    seat_advantage: bool = True,
) -> BradleyTerryFit:
    """Penalised maximum-likelihood Bradley–Terry strengths on the log-odds scale (centred by the prior)."""
    matches = _check(results, prior)
    design = _Design(matches, seat_advantage)
    theta = design.fit(np.ones(len(matches)), float(prior))
    strengths = {p: float(theta[i]) for i, p in enumerate(design.players)}
    return BradleyTerryFit(strengths, float(theta[-1]) if seat_advantage else 0.0)


def fit_ratings(
    results: Iterable[MatchResult | Sequence[Any] | Mapping[str, Any]],
    reference: str | None = None,
    anchor: float = 1000.0,
    level: float = 0.95,
    bootstrap: int = 1000,
    seed: int = 0,
    prior: float = 1.0,
    seat_advantage: bool = True,
) -> dict[str, Rating]:
    """Elo-scale ratings with percentile-bootstrap intervals, the `reference` player (or the mean) at `anchor`.

    Results are `MatchResult`s, (seed, first, second, score) tuples or dicts with those keys. Each bootstrap
    replicate resamples the (seed, pair) groups — a pair's seat-swapped games on one seed stay together — and is
    re-anchored, so the reference player's own interval has zero width. `bootstrap=0` skips the intervals (NaN).
    """
    matches = _check(results, prior)
    if not 0.0 < level < 1.0:
        raise ConfigError(f"level={level!r} is out of range; allowed: 0 < level < 1")
    if isinstance(bootstrap, bool) or not isinstance(bootstrap, int) or bootstrap < 0:
        raise ConfigError(f"bootstrap={bootstrap!r} must be a non-negative integer")
    design = _Design(matches, seat_advantage)
    if reference is not None and reference not in design.players:
        raise ConfigError(
            f"reference={reference!r} played no match; choose one of: {', '.join(design.players)}"
        )
    n_players = len(design.players)

    def elo(theta: np.ndarray) -> np.ndarray:
        strengths = theta[:n_players]
        zero = strengths[design.players.index(reference)] if reference is not None else strengths.mean()
        return anchor + ELO_PER_LOGIT * (strengths - zero)

    point = elo(design.fit(np.ones(len(matches)), float(prior)))
    low = high = np.full(n_players, math.nan)
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        draws = np.empty((bootstrap, n_players))
        for b in range(bootstrap):
            counts = np.bincount(
                rng.integers(0, design.n_clusters, design.n_clusters), minlength=design.n_clusters
            )
            draws[b] = elo(design.fit(counts[design.cluster].astype(float), float(prior)))
        alpha = (1.0 - level) / 2.0
        low, high = np.quantile(draws, alpha, axis=0), np.quantile(draws, 1.0 - alpha, axis=0)

    ratings = {}
    for i, player in enumerate(design.players):
        as_first = design.first == i
        as_second = design.second == i
        games = int(as_first.sum() + as_second.sum())
        total = design.score[as_first].sum() + (1.0 - design.score[as_second]).sum()
        ratings[player] = Rating(float(point[i]), float(low[i]), float(high[i]), games, float(total / games))
    return ratings


def expected_score(rating_a: float, rating_b: float) -> float:
    """Expected score of a player rated `rating_a` against one rated `rating_b` (Elo scale)."""
    return 1.0 / (1.0 + 10.0 ** ((rating_b - rating_a) / 400.0))
