"""Where each training step's rollouts come from: played now (on-policy) or one step ahead, during the update.

`train.max_staleness: 0`: step s plays its rollouts with the current weights, then updates on them.
`train.max_staleness: 1` (one-step-off asynchrony, as in verl's one-step-off trainer, SkyRL, TRL's
`AsyncGRPOTrainer` and prime-rl): when the update of step s starts, the generation engine gets the weights W_s
and a worker thread plays step s+1's rollouts with them while the update turns W_s into W_{s+1}. Step s+1 then
trains on replies sampled one update ago; the importance correction (`algo.is_correction`, auto:
`sequence_mask`) reweights them with the sampler's log-probs. Step time becomes about
max(rollout, update) instead of their sum.

Results do not depend on timing: a step's rollouts depend only on the weights they were sampled with and the
per-request seeds (`gift.rollout.driver`), and the worker never touches the global RNGs (per-row generators),
the trained model or the optimizer. The generation engine must be its own copy of the weights (a second
Hugging Face model, or a vLLM engine). A checkpoint written after step s holds the finished rollouts of s+1
(`pending_state`), so a resumed run trains on exactly what the uninterrupted one would have.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from gift.opponents.base import OpponentStats
from gift.rollout import RolloutConfig, Trajectory, run_rollouts
from gift.rollout.driver import DriverStats


@dataclass
class StepRollouts:
    """One step's played rollouts, with what the metrics and the run folder need about them."""

    trajectories: list[Trajectory]
    records: list[dict[str, Any]]
    """`Trajectory.record()` of each, taken as soon as the episodes end (the games are reused next step)."""
    stats: DriverStats
    group_seeds: list[int]
    seconds: float


class StepPlayer:
    """Plays one step's share of rollout groups on a backend: sampler batch, games, seeds, driver."""

    def __init__(
        self,
        sampler: Any,
        game_pool: Any,
        tokenizer: Any,
        rollout_cfg: RolloutConfig,
        train_seed: int,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        self.sampler, self.game_pool, self.tokenizer = sampler, game_pool, tokenizer
        self.rollout_cfg, self.train_seed, self.rank, self.world = rollout_cfg, train_seed, rank, world

    def __call__(self, step: int, backend: Any) -> StepRollouts:
        import torch

        start = time.perf_counter()
        mine = self.sampler.next_batch()[self.rank :: self.world]
        slots = [group for group in mine for _ in range(group.size)]
        games = self.game_pool.games_for([group.task for group in slots])
        # Each process gets its own sampling stream (rank 0 keeps the single-process one).
        seed = (self.train_seed * 1_000_003 + step + self.rank * 7_919_333) % 2**31
        stats = DriverStats()
        with torch.no_grad():
            trajectories = run_rollouts(
                games,
                [group.seed for group in slots],
                [group.seed for group in slots],
                backend,
                self.tokenizer,
                dataclasses.replace(self.rollout_cfg, seed=seed),
                tasks=[group.task.name for group in slots],
                stats=stats,
            )
        records = [t.record() for t in trajectories]
        seeds = sorted({group.seed for group in mine})
        return StepRollouts(trajectories, records, stats, seeds, time.perf_counter() - start)


class RolloutSchedule:
    """Hands each step its rollouts; with staleness 1 it plays the next step's in a worker during the update.

    ready = schedule.take(step, policy)     # this step's rollouts
    schedule.launch_next(step, policy)      # staleness 1: the engine gets these weights, step+1 starts
    ... update ...
    schedule.wait()                         # before anything else uses the engine or the games
    """

    def __init__(self, play: Callable[[int, Any], StepRollouts], backend: Any, staleness: int) -> None:
        self.play, self.backend, self.staleness = play, backend, staleness
        self._pending: Future | StepRollouts | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="gift-rollout") if staleness else None

    def take(self, step: int, policy: Any) -> StepRollouts:
        """The rollouts of `step`: those played ahead (or restored from a checkpoint), else played now."""
        self.wait()
        pending, self._pending = self._pending, None
        if pending is not None:
            return pending
        if self.staleness:
            self.backend.sync_weights(policy)
        return self.play(step, self.backend)

    def launch_next(self, step: int, policy: Any) -> None:
        """Staleness 1: give the engine `policy`'s weights now and start playing step + 1 in the worker.

        After the last step too: the final checkpoint then holds the next step's rollouts, so that extending a
        finished run (`--resume` with more train.steps) trains on what a longer run would have.
        """
        if self._pool is None:
            return
        self.backend.sync_weights(policy)
        self._pending = self._pool.submit(self.play, step + 1, self.backend)

    def wait(self) -> None:
        """Block until the rollouts played ahead are finished (re-raising the worker's error)."""
        if isinstance(self._pending, Future):
            self._pending = self._pending.result()

    def pending_state(self) -> str | None:
        """The finished rollouts of the next step as JSON text, for the checkpoint (None if there are none)."""
        self.wait()
        if self._pending is None:
            return None
        ready = self._pending
        return json.dumps(
            {
                "trajectories": [dataclasses.asdict(t) for t in ready.trajectories],
                "records": ready.records,
                "stats": _stats_state(ready.stats),
                "group_seeds": ready.group_seeds,
                "seconds": ready.seconds,
            }
        )

    def load_pending(self, text: str | None) -> None:
        """Restore what `pending_state` saved: the next `take` returns it."""
        if text is None:
            return
        data = json.loads(text)
        stats = dict(data["stats"])
        stats["per_game"] = {k: OpponentStats(**v) for k, v in stats["per_game"].items()}
        trajectories = []
        for t in data["trajectories"]:
            t["reply_spans"] = [tuple(span) for span in t["reply_spans"]]
            trajectories.append(Trajectory(**t))
        self._pending = StepRollouts(
            trajectories, data["records"], DriverStats(**stats), data["group_seeds"], data["seconds"]
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _stats_state(stats: DriverStats) -> dict[str, Any]:
    """The driver's counters as JSON (the per-game counters hold a lock, which does not copy)."""
    out = {f.name: getattr(stats, f.name) for f in dataclasses.fields(stats) if f.name != "per_game"}
    out["per_game"] = {game: counts.as_dict() for game, counts in stats.per_game.items()}
    return out
