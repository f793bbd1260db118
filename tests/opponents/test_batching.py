"""MoveBatcher: opponent moves of games stepping in threads are answered together, deterministically."""

from __future__ import annotations

import threading

from gift.games.registry import make
from gift.opponents.batching import MoveBatcher
from gift.opponents.policy import PolicyOpponent
from gift.rollout import RolloutConfig, run_rollouts
from gift.rollout.backends import GenerationBackend, Sample


class EchoBackend(GenerationBackend):
    """Answers each prompt with its own first two ids; records every call's prompts and seed."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[list[list[int]], int | None]] = []
        self.fail = fail

    def generate(self, prompts, max_new_tokens, temperature=1.0, top_p=1.0, seed=None):
        self.calls.append(([list(p) for p in prompts], seed))
        if self.fail:
            raise RuntimeError("engine down")
        return [Sample(token_ids=list(p[:2]), logprobs=[0.0, 0.0], finished=True) for p in prompts]


def run_workers(batcher, plans):
    """plans[key] = list of prompts that worker `key` asks for in turn (empty: it never asks)."""
    answers: dict[int, list] = {}
    errors: dict[int, BaseException] = {}

    def work(key):
        with batcher.worker(key):
            try:
                answers[key] = [batcher.generate(p, 4, 1.0, 1.0, seed=100 + key) for p in plans[key]]
            except BaseException as err:  # noqa: BLE001
                errors[key] = err

    with batcher.round(len(plans)):
        threads = [threading.Thread(target=work, args=(k,)) for k in plans]
        for t in reversed(threads):  # start order must not matter
            t.start()
        for t in threads:
            t.join(timeout=30)
            assert not t.is_alive(), "a worker hung"
    return answers, errors


def test_waiting_workers_are_answered_in_one_call_ordered_by_key():
    backend = EchoBackend()
    batcher = MoveBatcher(backend)
    plans = {3: [[30, 31, 32]], 1: [[10, 11], [12, 13]], 2: [], 0: [[1, 2, 3], [4, 5]]}
    answers, errors = run_workers(batcher, plans)
    assert errors == {}
    # Round 1: every worker that asks at all; round 2: the two that ask twice. Worker 2 never blocks anyone.
    assert backend.calls == [([[1, 2, 3], [10, 11], [30, 31, 32]], 100), ([[4, 5], [12, 13]], 100)]
    assert {k: [s.token_ids for s in v] for k, v in answers.items()} == {
        0: [[1, 2], [4, 5]],
        1: [[10, 11], [12, 13]],
        2: [],
        3: [[30, 31]],
    }
    assert (batcher.calls, batcher.requests) == (2, 5)


def test_outside_a_round_each_request_is_its_own_call():
    backend = EchoBackend()
    batcher = MoveBatcher(backend)
    assert batcher.generate([7, 8, 9], 4, 1.0, 1.0, seed=5).token_ids == [7, 8]
    assert backend.calls == [([[7, 8, 9]], 5)]


def test_a_backend_failure_reaches_every_waiting_worker_and_nobody_hangs():
    batcher = MoveBatcher(EchoBackend(fail=True))
    answers, errors = run_workers(batcher, {0: [[1, 2]], 1: [[3, 4]], 2: []})
    assert set(errors) == {0, 1} and all("engine down" in str(e) for e in errors.values())


def test_mixed_sampling_options_in_one_batch_are_refused():
    batcher = MoveBatcher(EchoBackend())
    seen: list[BaseException] = []
    barrier = threading.Barrier(2)

    def work(key, tokens):
        with batcher.worker(key):
            barrier.wait()
            try:
                batcher.generate([1, 2], tokens, 1.0, 1.0, seed=None)
            except RuntimeError as err:
                seen.append(err)

    with batcher.round(2):
        threads = [threading.Thread(target=work, args=(k, 4 + k)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
    assert len(seen) == 1 and "sampling options" in str(seen[0])


class MovePolicy(GenerationBackend):
    """The learner's side: replies "(row, col)" cycling over the cells, so some moves are legal."""

    def __init__(self, tok) -> None:
        self.tok = tok
        self.turn = 0

    def generate(self, prompts, max_new_tokens, temperature=1.0, top_p=1.0, seed=None):
        self.turn += 1
        out = []
        for row, _ in enumerate(prompts):
            cell = (self.turn + row) % 9
            ids = self.tok(f"({cell // 3 + 1}, {cell % 3 + 1})", add_special_tokens=False)["input_ids"]
            ids = ids[:max_new_tokens]
            out.append(Sample(token_ids=ids, logprobs=[0.0] * len(ids), finished=False))
        return out


def test_self_play_rollouts_batch_opponent_moves_and_are_reproducible(tiny_model):
    model, tok = tiny_model
    cfg = RolloutConfig(max_new_tokens=12, max_context=4096, seed=3)
    seeds = [11, 11, 12, 12, 13, 13]
    results = []
    for _ in range(2):
        opponent = PolicyOpponent.from_model(model, tok, max_new_tokens=6)
        games = [make("tictactoe-v0", opponent=opponent, start="empty", parser="raw") for _ in seeds]
        trajs = run_rollouts(games, seeds, seeds, MovePolicy(tok), tok, cfg, batchers=[opponent.batcher])
        results.append((trajs, opponent.stats.as_dict(), opponent.batcher))
    (trajs_a, stats_a, batcher_a), (trajs_b, stats_b, _) = results
    assert [t.input_ids for t in trajs_a] == [t.input_ids for t in trajs_b]  # thread timing changes nothing
    assert [t.opponent_failed for t in trajs_a] == [t.opponent_failed for t in trajs_b]
    counts = ("calls", "errors", "invalid", "forfeits")
    assert [stats_a[k] for k in counts] == [stats_b[k] for k in counts]
    assert stats_a["calls"] == stats_b["calls"] == batcher_a.requests >= len(seeds)
    # Moves of different games went out together: far fewer generate calls than moves asked for.
    assert batcher_a.calls <= batcher_a.requests / 2
