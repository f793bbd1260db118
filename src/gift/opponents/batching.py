"""Batch a model opponent's moves across games that step in parallel threads.

A game asks its opponent for a move from inside `game.step`, one game at a time. When the rollout engine steps a
turn's games in threads, each game's opponent call lands here instead of going straight to the backend; once every
game still stepping is waiting for a move, all waiting prompts go to the backend in one `generate` call.

The batch's contents do not depend on thread timing: a batch is sent only when every worker of the round is
either waiting or finished, so it holds exactly the games that needed a move at that point, and the prompts are
ordered by the worker's key (the game's index). The batch's sampling seed is the smallest key's request seed, so a
seeded rollout replays the same opponent moves.

    batcher = MoveBatcher(backend)
    with batcher.round(workers=len(live)):          # the engine, around one turn's parallel steps
        ... each worker thread: with batcher.worker(index): game.step(reply)
    sample = batcher.generate(prompt_ids, max_new_tokens, temperature, top_p, seed)   # the opponent
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass
class _Pending:
    prompt: list[int]
    seed: int | None


class MoveBatcher:
    """Collects `generate` requests from worker threads and answers them together; counts calls for metrics."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self._lock = threading.Condition()
        self._local = threading.local()
        self._active = 0
        self._in_round = False
        self._options: tuple[int, float, float] | None = None
        self._pending: dict[int, _Pending] = {}
        self._results: dict[int, Any] = {}
        self.calls = 0
        self.requests = 0

    @contextmanager
    def round(self, workers: int) -> Iterator[None]:
        """One turn of parallel steps with exactly `workers` worker threads (each must enter `worker`)."""
        with self._lock:
            if self._in_round:
                raise RuntimeError("MoveBatcher.round: rounds cannot be nested")
            self._in_round, self._active = True, int(workers)
        try:
            yield
        finally:
            with self._lock:
                self._in_round, self._active = False, 0
                self._pending.clear()
                self._results.clear()

    @contextmanager
    def worker(self, key: int) -> Iterator[None]:
        """Marks the current thread as the round's worker `key` until it finishes its step."""
        self._local.key = int(key)
        try:
            yield
        finally:
            self._local.key = None
            with self._lock:
                self._active -= 1
                self._flush_if_ready()

    def generate(
        self, prompt: list[int], max_new_tokens: int, temperature: float, top_p: float, seed: int | None
    ) -> Any:
        """One prompt's sample: batched with the round's other workers, or alone outside a round."""
        key = getattr(self._local, "key", None)
        if key is None or not self._in_round:
            self.calls += 1
            self.requests += 1
            return self.backend.generate(
                [prompt], max_new_tokens, temperature=temperature, top_p=top_p, seed=seed
            )[0]
        options = (int(max_new_tokens), float(temperature), float(top_p))
        with self._lock:
            if self._options is not None and self._pending and self._options != options:
                raise RuntimeError("MoveBatcher: requests of one batch must share their sampling options")
            self._options = options
            self._pending[key] = _Pending(list(prompt), seed)
            self._flush_if_ready()
            while key not in self._results:
                self._lock.wait()
            result = self._results.pop(key)
        if isinstance(result, BaseException):
            raise result
        return result

    def _flush_if_ready(self) -> None:
        """With the lock held: when every live worker is waiting, answer all of them in one call."""
        if not self._pending or len(self._pending) < self._active:
            return
        keys = sorted(self._pending)
        batch = [self._pending[k] for k in keys]
        self._pending = {}
        max_new_tokens, temperature, top_p = self._options or (1, 1.0, 1.0)
        self.calls += 1
        self.requests += len(keys)
        try:
            samples = self.backend.generate(
                [p.prompt for p in batch],
                max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                seed=batch[0].seed,
            )
            if len(samples) != len(keys):
                raise RuntimeError(f"backend returned {len(samples)} samples for {len(keys)} prompts")
            self._results.update(zip(keys, samples, strict=True))
        except Exception as err:  # noqa: BLE001 - every waiting game gets the error, none hangs
            self._results.update({k: err for k in keys})
        self._lock.notify_all()
