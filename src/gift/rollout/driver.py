"""The one episode driver: many games at once, every seat answered by its player, no barrier between games.

Training rollouts, `gift eval`, ratings, `gift play` and the env checker all play through `drive`:

    episodes = [Episode(game, seed, recorder, index) for ...]
    stats = drive(episodes, ModelSeat(backend, ...))          # or TextSeat(answer) for a person / a bot

Each game advances as far as it can on its own: scripted bots answer inline; endpoint players (anything with
a `concurrency`) answer in worker threads, up to their limit, while everything else goes on; model players
(the focal policy, a self-play snapshot — anything with `generate_replies`) collect the prompts of every game
waiting for them, and each generation call takes whatever is ready. A game waiting for a slow opponent never
holds back the others: when its reply lands, the game advances and its next prompt joins the next call.

Results do not depend on timing. A game's state changes only through its own events, in its own order; the
policy's sample for a game's turn t is drawn with its own seed (`ModelSeat.seed_for`), whatever else shares
the call (`GenerationBackend.per_request_seeds`); scripted players draw from the game's own generator.
The retry policy (`gift.opponents.base.SeatTurn`) is the same as in the single-agent view.
"""

from __future__ import annotations

import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from gift.games.base import TextGame
from gift.opponents.base import Opponent, OpponentError, OpponentStats, SeatTurn
from gift.rollout.backends import GenerationBackend, Sample

MAX_ENDPOINT_THREADS = 256
"""Most endpoint calls in flight at once across all endpoint players (each also keeps its own limit)."""


def derive_seed(*parts: object) -> int:
    """A stable 31-bit seed from any parts (independent of Python's hash randomisation)."""
    return zlib.crc32(":".join(str(p) for p in parts).encode()) & 0x7FFFFFFF


@dataclass
class ModelSeat:
    """The focal seat answered by a model through a generation backend, every ready prompt in one call."""

    backend: GenerationBackend
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    """Sampling seed of the whole run of episodes; each (episode, turn) derives its own."""
    max_batch: int | None = None
    """Most prompts per backend call; None sends every ready prompt in one call."""

    def seed_for(self, index: int, turn: int) -> int | None:
        return None if self.seed is None else derive_seed(self.seed, index, turn)

    def generate(
        self, prompts: list[list[int]], seeds: list[int | None], sessions: list[int] | None = None
    ) -> list[Sample]:
        """`sessions` name each prompt's episode, for backends that route an episode to one server."""
        step = self.max_batch or len(prompts)
        samples: list[Sample] = []
        for start in range(0, len(prompts), step):
            chunk, chunk_seeds = prompts[start : start + step], seeds[start : start + step]
            options: dict[str, Any] = {"temperature": self.temperature, "top_p": self.top_p}
            if getattr(self.backend, "per_request_seeds", False) and self.seed is not None:
                options["seeds"] = chunk_seeds
            else:
                options["seed"] = chunk_seeds[0]
            if sessions is not None and getattr(self.backend, "sticky_sessions", False):
                options["sessions"] = sessions[start : start + step]
            out = self.backend.generate([list(p) for p in chunk], self.max_new_tokens, **options)
            if len(out) != len(chunk):
                raise RuntimeError(f"backend returned {len(out)} samples for {len(chunk)} prompts")
            samples.extend(out)
        return samples


@dataclass
class TextSeat:
    """The focal seat answered inline by text: a person at the terminal, a scripted or random player.

    `answer(game, observation)` returns the reply, or None to stop the episode (it is then left unfinished).
    """

    answer: Callable[[TextGame, str], str | None]


@dataclass
class Episode:
    """One game played by the driver, with the recorder of its focal seat's turns."""

    game: TextGame
    seed: int
    recorder: Any
    index: int = 0
    opened: bool = False
    stepping: bool = False
    finished: bool = False
    stopped: bool = False
    """Left unfinished by its focal player (a person who quit)."""
    turn: int = 0
    observation: str = ""
    seat_turn: SeatTurn | None = None


@dataclass
class DriverStats:
    generate_calls: int = 0
    prompts: int = 0
    opponent_batches: int = 0
    max_in_flight: int = 0
    wall_s: float = 0.0
    kv_hits: int = 0
    kv_cached_tokens: int = 0
    kv_prefilled_tokens: int = 0
    """Prefix-cache counters of the policy's backend during this drive (when it keeps one)."""
    per_game: dict[str, OpponentStats] = field(default_factory=dict)
    """The other seats' calls, errors, rejected replies, forfeits and latency, per game."""

    def game(self, game_id: str) -> OpponentStats:
        return self.per_game.setdefault(game_id, OpponentStats())


Others = Callable[[TextGame, int], tuple[Opponent, int]]


def _default_others(game: TextGame, seat: int) -> tuple[Opponent, int]:
    return game.seat_player(seat)


def drive(
    episodes: Sequence[Episode],
    focal: ModelSeat | TextSeat,
    others: Others | None = None,
    on_finish: Callable[[Episode], None] | None = None,
) -> DriverStats:
    """Play every episode to its end; `others(game, seat)` names who answers a non-focal seat (default: the
    game's own `opponent`). `on_finish` sees each episode as soon as it ends."""
    return _Driver(episodes, focal, others or _default_others, on_finish).run()


class _Driver:
    def __init__(self, episodes: Sequence[Episode], focal: Any, others: Others, on_finish: Any) -> None:
        self.episodes = list(episodes)
        self.focal = focal
        self.others = others
        self.on_finish = on_finish
        self.stats = DriverStats()
        self.todo: deque[Episode] = deque()
        self.waiting_focal: list[Episode] = []
        self.waiting_model: dict[int, tuple[Any, list[tuple[Episode, int, Any]]]] = {}
        self.in_flight: dict[Future, tuple[Episode, int]] = {}
        self.pool: ThreadPoolExecutor | None = None

    # ------------------------------------------------------------------------------------------ the loop
    def run(self) -> DriverStats:
        start = time.perf_counter()
        store = getattr(getattr(self.focal, "backend", None), "store", None)
        before = _kv_counters(store)
        for ep in self.episodes:
            ep.game.begin(seed=ep.seed)
            self.todo.append(ep)
        try:
            while True:
                while self.todo:
                    self._advance(self.todo.popleft())
                if self._land_replies(block=False):
                    continue
                if self.waiting_focal or self.waiting_model:
                    self._generate()
                elif self.in_flight:
                    self._land_replies(block=True)
                else:
                    break
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)
        self.stats.wall_s = time.perf_counter() - start
        after = _kv_counters(store)
        self.stats.kv_hits, self.stats.kv_cached_tokens, self.stats.kv_prefilled_tokens = (
            b - a for a, b in zip(before, after, strict=True)
        )
        return self.stats

    def _advance(self, ep: Episode) -> None:
        """Move one game on until it waits for a model, an endpoint, or ends."""
        game = ep.game
        while not ep.finished:
            if ep.stepping and game.step_complete():
                ep.stepping = False
                result = game.collect_step()
                ep.observation = result[0]
                if not ep.recorder.step(result, game.actions_left):
                    return self._finish(ep)
                return self._want_focal(ep)
            seat = game.to_move()
            if not ep.opened and (seat is None or seat == game.focal_seat):
                ep.opened = True
                ep.observation, info = game.opening()
                if seat is None:  # another seat forfeited before the focal seat's first turn
                    ep.recorder.end_unplayed(info)
                    return self._finish(ep)
                if not ep.recorder.open(ep.observation, info, game.actions_left):
                    return self._finish(ep)
                return self._want_focal(ep)
            if seat is None or seat == game.focal_seat:
                raise RuntimeError(f"{game.id}: the episode stalled (seat {seat} is to move)")
            if not self._ask_other(ep, seat):
                return

    def _want_focal(self, ep: Episode) -> None:
        if isinstance(self.focal, TextSeat):
            reply = self.focal.answer(ep.game, ep.observation)
            if reply is None:
                ep.stopped = True
                return self._finish(ep)
            self._play_focal(ep, ep.recorder.text_reply(reply))
            return
        self.waiting_focal.append(ep)

    def _play_focal(self, ep: Episode, reply: str) -> None:
        ep.turn += 1
        ep.game.play_focal(reply)
        ep.stepping = True
        self.todo.append(ep)

    def _finish(self, ep: Episode) -> None:
        ep.finished = True
        if self.on_finish is not None:
            self.on_finish(ep)

    # ------------------------------------------------------------------------------------------ other seats
    def _ask_other(self, ep: Episode, seat: int) -> bool:
        """Ask the seat's player; True when its answer was applied inline (the game can go on at once)."""
        game = ep.game
        if ep.seat_turn is None:
            ep.seat_turn = SeatTurn(*self.others(game, seat))
        turn = ep.seat_turn
        request = turn.request(game, seat)
        self.stats.game(_seat_game(game)).add(calls=1)
        player = turn.player
        if hasattr(player, "generate_replies"):
            self.waiting_model.setdefault(id(player), (player, []))[1].append((ep, seat, request))
            return False
        if getattr(player, "concurrency", None):
            future = self._executor().submit(_call, player, request)
            self.in_flight[future] = (ep, seat)
            self.stats.max_in_flight = max(self.stats.max_in_flight, len(self.in_flight))
            return False
        self._judge(ep, seat, *_call(player, request))
        return True

    def _judge(self, ep: Episode, seat: int, reply: str | BaseException, seconds: float | None = None) -> None:
        """Apply another seat's reply, or decide on a retry or a forfeit (`SeatTurn`'s policy).

        `seconds` is how long the player itself took (not the time its reply waited for the driver)."""
        game, turn = ep.game, ep.seat_turn
        assert turn is not None
        turn.answered(seconds)
        counts = self.stats.game(_seat_game(game))
        counts.add(latency_s=seconds if seconds is not None else time.perf_counter() - turn.started)
        if isinstance(reply, BaseException):
            counts.add(errors=1)
            retry = turn.failed(reply)
        else:
            outcome = game.play_other(seat, reply)
            if outcome.valid:
                ep.seat_turn = None
                return
            counts.add(invalid=1)
            retry = turn.rejected(reply, outcome.message)
        if not retry:
            counts.add(forfeits=1)
            ep.seat_turn = None
            game.forfeit(seat)

    def _executor(self) -> ThreadPoolExecutor:
        if self.pool is None:
            self.pool = ThreadPoolExecutor(max_workers=MAX_ENDPOINT_THREADS, thread_name_prefix="gift-seat")
        return self.pool

    def _land_replies(self, block: bool) -> bool:
        """Apply the endpoint replies that have arrived (waiting for at least one when `block`)."""
        if not self.in_flight:
            return False
        if block:
            wait(list(self.in_flight), return_when=FIRST_COMPLETED)
        landed = [f for f in self.in_flight if f.done()]
        for future in sorted(landed, key=lambda f: self.in_flight[f][0].index):
            ep, seat = self.in_flight.pop(future)
            self._judge(ep, seat, *future.result())
            self.todo.append(ep)
        return bool(landed)

    # ------------------------------------------------------------------------------------------ generation
    def _generate(self) -> None:
        """One call per model: the focal policy over every ready prompt, each snapshot over its requests."""
        models, self.waiting_model = list(self.waiting_model.values()), {}
        for player, waiting in models:
            self.stats.opponent_batches += 1
            replies = player.generate_replies([request for _, _, request in waiting])
            for (ep, seat, _), reply in zip(waiting, replies, strict=True):
                self._judge(ep, seat, reply)
                self.todo.append(ep)
        ready, self.waiting_focal = sorted(self.waiting_focal, key=lambda e: e.index), []
        if not ready:
            return
        prompts = [ep.recorder.prompt() for ep in ready]
        seeds = [self.focal.seed_for(ep.index, ep.turn) for ep in ready]
        self.stats.generate_calls += 1
        self.stats.prompts += len(ready)
        samples = self.focal.generate(prompts, seeds, sessions=[ep.index for ep in ready])
        for ep, sample in zip(ready, samples, strict=True):
            self._play_focal(ep, ep.recorder.reply(sample))


def _kv_counters(store: Any) -> tuple[int, int, int]:
    if store is None:
        return 0, 0, 0
    return int(store.hits), int(store.cached_tokens), int(store.prefilled_tokens)


def _seat_game(game: TextGame) -> str:
    """The id of the game being played now (a nested game's current sub-game)."""
    current = getattr(game, "current", None)
    return current.id if current is not None else game.id


def _call(player: Opponent, request: Any) -> tuple[str | BaseException, float]:
    """The player's reply (or its error) and how long it took."""
    start = time.perf_counter()
    try:
        reply: str | BaseException = player.act(request)
    except OpponentError as err:
        reply = err
    return reply, time.perf_counter() - start
