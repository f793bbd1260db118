"""Opponent latency: training rollouts against a slow OpenAI-compatible opponent, against their lower bounds.

    python bench/opponent_latency.py                       # tictactoe + spy, 16 and 64 games, 200 ± 50 ms
    python bench/opponent_latency.py --latency-ms 500 --jitter-ms 100 --games 64 --game spy

The opponent is a real HTTP server on 127.0.0.1 (`tests/opponents/chat_server.py`, in a process of its own) that waits a seeded
latency, uniform in latency ± jitter, before answering a legal move, description or vote read from the prompt,
and records every request. Every game's opponent prompt carries its table number, so the server knows which
game asked. All games share one `OpenAIChatOpponent` (concurrency = the number of games) and play one
training-style rollout (`gift.rollout.run_rollouts`).

The trained seat: the tiny model (`gift.models.build_tiny_model`) generates `--model-tokens` tokens for every
prompt, timed, and the reply is then replaced by a legal move, description or vote read from the prompt (the
random model's own text would be rejected and games would end early, mostly without calling the opponent), so
every episode lasts its full length; `--backend scripted` skips the model (generation costs only the parsing).

Printed against the rollout wall time, from the same run:
  critical path   generation time (the backend calls) + the longest chain of opponent latencies of one game
                  (a game's calls are one after another, so its chain is the sum of its requests' latencies)
  one-by-one      generation time + the sum of every opponent latency: what code calling the opponent from
                  inside each game step, one game after another, pays
Target: wall <= 1.25x the critical-path bound at 64 games.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import random
import re
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from _common import REPO_ROOT, machine, print_header, quiet_transformers, versions, write_results

if str(REPO_ROOT) not in sys.path:
    sys.path.insert(1, str(REPO_ROOT))  # for tests.opponents.chat_server

from tests.opponents.chat_server import ChatServer, last_user_text, respond  # noqa: E402

from gift.games.spy import WhosTheSpy, contains_word  # noqa: E402
from gift.games.tictactoe import TicTacToe  # noqa: E402
from gift.opponents.openai_client import OpenAIChatOpponent  # noqa: E402
from gift.rollout import RolloutConfig, run_rollouts  # noqa: E402
from gift.rollout.backends import GenerationBackend, Sample  # noqa: E402
from gift.rollout.driver import DriverStats, derive_seed  # noqa: E402

TARGET = 1.25
NEW_TOKENS = 48
DESCRIPTIONS = ("You can hold it in one hand.", "Most homes have one.", "People use it every day.")
_MOVES = re.compile(r"\(row, col\)(?: are)?: \[([^\]]*)\]")
_VOTABLE = re.compile(r"Players you can vote for: ([^.\n]*)")
_WORD = re.compile(r"Your secret word is: (.+)")
_TABLE = re.compile(r"\[table (\d+)\]")


# ----------------------------------------------------------------------------------------- legal answers
def legal_answer(text: str, rng: random.Random) -> str:
    """A legal move, vote or description for the last turn shown in `text` (a prompt, chat-templated or not)."""
    turn = text.rsplit("<|im_start|>user", 1)[-1]
    moves = _MOVES.findall(turn)
    if moves:
        return rng.choice(re.findall(r"\(\d, \d\)", moves[-1]))
    votable = _VOTABLE.findall(turn)
    if votable:
        return "I vote for " + rng.choice(re.findall(r"Player \d+", votable[-1]))
    word = _WORD.findall(turn)
    allowed = [d for d in DESCRIPTIONS if not (word and contains_word(d, word[-1].strip()))]
    return rng.choice(allowed or ["It is hard to describe."])


class Tagged:
    """Puts the game's table number into every view of the other seats, so the server knows who asked."""

    table: int = 0

    def observe(self, seat: int) -> Any:
        view = super().observe(seat)  # type: ignore[misc]
        return dataclasses.replace(view, text=f"{view.text}\n[table {self.table}]")


class TaggedTicTacToe(Tagged, TicTacToe):
    pass


class TaggedSpy(Tagged, WhosTheSpy):
    pass


GAMES = {"tictactoe": TaggedTicTacToe, "spy": TaggedSpy}


# ----------------------------------------------------------------------------------------- the two sides
class LegalBackend(GenerationBackend):
    """The trained seat: `inner` (the tiny model) generates, timed; the reply is a legal answer from the prompt."""

    per_request_seeds = True

    def __init__(self, tokenizer: Any, inner: GenerationBackend | None, model_tokens: int) -> None:
        self.tokenizer, self.inner, self.model_tokens = tokenizer, inner, model_tokens
        self.seconds, self.calls, self.prompts = 0.0, 0, 0

    def generate(self, prompts, max_new_tokens, temperature=1.0, top_p=1.0, seed=None, seeds=None):
        start = time.perf_counter()
        seeds = list(seeds) if seeds is not None else [seed] * len(prompts)
        if self.inner is not None:
            self.inner.generate(prompts, self.model_tokens, temperature=temperature, top_p=top_p, seeds=seeds)
        samples = []
        for prompt, row_seed in zip(prompts, seeds, strict=True):
            answer = legal_answer(self.tokenizer.decode(prompt), random.Random(row_seed))
            text = f"<think>x</think> <answer>{answer}</answer>"
            ids = [*self.tokenizer(text, add_special_tokens=False)["input_ids"], self.tokenizer.eos_token_id]
            samples.append(Sample(ids[:max_new_tokens], [0.0] * min(len(ids), max_new_tokens), True))
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.prompts += len(prompts)
        return samples


class SlowOpponent:
    """The server's responder: waits a seeded latency, then answers legally; records (table, start, end)."""

    def __init__(self, latency_s: float, jitter_s: float, seed: int) -> None:
        self.latency_s, self.jitter_s, self.seed = latency_s, jitter_s, seed
        self.lock = threading.Lock()
        self.asked: Counter[int] = Counter()
        self.records: list[tuple[int, float, float]] = []

    def __call__(self, body: dict[str, Any]) -> str:
        text = last_user_text(body)
        table = int(_TABLE.findall(text)[-1])
        with self.lock:
            nth = self.asked[table]
            self.asked[table] += 1
        rng = random.Random(derive_seed(self.seed, table, nth))
        delay = max(0.0, rng.uniform(self.latency_s - self.jitter_s, self.latency_s + self.jitter_s))
        start = time.perf_counter()
        time.sleep(delay)
        end = time.perf_counter()
        with self.lock:
            self.records.append((table, start, end))
        return f"<answer>{legal_answer(text, rng)}</answer>"


def _serve(conn: Any, latency_s: float, jitter_s: float, seed: int) -> None:
    slow = SlowOpponent(latency_s, jitter_s, seed)
    with ChatServer(respond(slow)) as server:
        conn.send(server.base_url)
        conn.recv()
        conn.send((slow.records, server.max_in_flight, len(server.requests)))


class OpponentServer:
    """The slow server in a process of its own (as a real one is: it does not share the driver's GIL)."""

    def __init__(self, latency_s: float, jitter_s: float, seed: int) -> None:
        self.options = (latency_s, jitter_s, seed)
        self.results: tuple[list[tuple[int, float, float]], int, int] = ([], 0, 0)

    def __enter__(self) -> OpponentServer:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, *self.options), daemon=True)
        self.process.start()
        self.base_url = self.conn.recv()
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.send("stop")
        self.results = self.conn.recv()
        self.process.join(timeout=10)


# ----------------------------------------------------------------------------------------- one rollout
def measure(
    game: str, count: int, args: argparse.Namespace, backend: LegalBackend, tok: Any
) -> dict[str, Any]:
    with OpponentServer(args.latency_ms / 1000, args.jitter_ms / 1000, args.seed) as server:
        opponent = OpenAIChatOpponent(
            base_url=server.base_url, model="bench", concurrency=count, retries=0, timeout=60
        )
        games = [GAMES[game](opponent=opponent) for _ in range(count)]
        for table, g in enumerate(games):
            g.table = table
        seeds = [args.seed * 10_000 + i for i in range(count)]
        cfg = RolloutConfig(max_new_tokens=NEW_TOKENS, max_context=8192, seed=args.seed)
        stats = DriverStats()
        gen_before, calls_before = backend.seconds, backend.calls
        start = time.perf_counter()
        trajs = run_rollouts(games, seeds, list(range(count)), backend, tok, cfg, stats=stats)
        wall = time.perf_counter() - start
        opponent.close()
    records, server_peak, requests = server.results
    by_table: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for table, begin, end in records:
        by_table[table].append((begin, end))
    overlapping = sum(
        later[0] < earlier[1]
        for spans in by_table.values()
        for earlier, later in zip(sorted(spans), sorted(spans)[1:], strict=False)
    )
    chains = {t: sum(end - begin for begin, end in spans) for t, spans in by_table.items()}
    gen = backend.seconds - gen_before
    critical = gen + max(chains.values(), default=0.0)
    one_by_one = gen + sum(chains.values())
    return {
        "game": game,
        "games": count,
        "wall_s": wall,
        "generation_s": gen,
        "generation_calls": backend.calls - calls_before,
        "longest_chain_s": max(chains.values(), default=0.0),
        "critical_path_s": critical,
        "one_by_one_s": one_by_one,
        "wall_over_critical": wall / critical,
        "wall_over_one_by_one": wall / one_by_one,
        "opponent_calls": requests,
        "server_latency_mean_s": sum(chains.values()) / max(requests, 1),
        "driver_latency_mean_s": sum(g.latency_s for g in stats.per_game.values()) / max(requests, 1),
        "server_max_in_flight": server_peak,
        "driver_max_in_flight": stats.max_in_flight,
        "calls_overlapping_within_a_game": overlapping,
        "end_reasons": dict(Counter(t.final_info.get("end_reason") for t in trajs)),
        "focal_turns": sum(t.num_turns for t in trajs),
    }


# ----------------------------------------------------------------------------------------- main
def load_backend(kind: str, model_tokens: int, workdir: Path) -> tuple[LegalBackend, Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from gift.models import build_tiny_model
    from gift.rollout import HFBackend

    torch.set_num_threads(1)
    folder = build_tiny_model(workdir / "tiny-model")
    tok = AutoTokenizer.from_pretrained(folder)
    inner = None
    if kind == "tiny":
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        inner = HFBackend(model, tok, max_batch=256, kv_reuse=False)
    return LegalBackend(tok, inner, model_tokens), tok, torch


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (
        f"{'game':<10}{'games':>6}{'wall s':>8}{'gen s':>8}{'chain s':>8}{'crit s':>8}{'wall/crit':>10}"
        f"{'1-by-1 s':>10}{'wall/1by1':>10}{'in flight':>10}{'calls':>7}{'gen calls':>10}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['game']:<10}{r['games']:>6}{r['wall_s']:>8.2f}{r['generation_s']:>8.2f}"
            f"{r['longest_chain_s']:>8.2f}{r['critical_path_s']:>8.2f}{r['wall_over_critical']:>9.2f}x"
            f"{r['one_by_one_s']:>10.1f}{r['wall_over_one_by_one']:>9.3f}x{r['server_max_in_flight']:>10}"
            f"{r['opponent_calls']:>7}{r['generation_calls']:>10}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-ms", type=float, default=200.0, help="mean opponent latency")
    parser.add_argument("--jitter-ms", type=float, default=50.0, help="latency is uniform in mean ± jitter")
    parser.add_argument("--games", default="16,64", help="comma-separated numbers of games per rollout")
    parser.add_argument("--game", default="tictactoe,spy", help="comma-separated: tictactoe, spy")
    parser.add_argument("--backend", choices=("tiny", "scripted"), default="tiny", help="see the module doc")
    parser.add_argument("--model-tokens", type=int, default=8, help="tokens the tiny model generates a reply")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default bench/results/)")
    args = parser.parse_args()
    counts = [int(n) for n in args.games.split(",")]
    names = [g.strip() for g in args.game.split(",")]
    if unknown := [g for g in names if g not in GAMES]:
        parser.error(f"unknown game(s) {unknown}; choose from {sorted(GAMES)}")

    quiet_transformers()
    with tempfile.TemporaryDirectory() as workdir:
        backend, tok, torch = load_backend(args.backend, args.model_tokens, Path(workdir))
        mach, vers = machine(torch), versions(["torch", "transformers", "openai"])
        print_header(
            "opponent latency", f"{args.latency_ms:g} ± {args.jitter_ms:g} ms, {args.backend}", mach, vers
        )
        warm = argparse.Namespace(**{**vars(args), "latency_ms": 1.0, "jitter_ms": 0.0})
        for name in names:
            measure(name, 2, warm, backend, tok)  # warm-up: kernels, HTTP client, word list
        rows = [measure(name, count, args, backend, tok) for name in names for count in counts]
    print_table(rows)
    for r in rows:
        print(
            f"{r['game']} x{r['games']}: end reasons {r['end_reasons']}, focal turns {r['focal_turns']}, "
            f"driver max in flight {r['driver_max_in_flight']}, latency per call: server "
            f"{r['server_latency_mean_s'] * 1000:.0f} ms, seen by the driver {r['driver_latency_mean_s'] * 1000:.0f} ms, "
            f"calls overlapping within a game {r['calls_overlapping_within_a_game']}"
        )
    at_target = [r for r in rows if r["games"] == 64]
    for r in at_target:
        verdict = "ok" if r["wall_over_critical"] <= TARGET else "MISSED"
        print(f"target {r['game']} x64: wall/critical {r['wall_over_critical']:.2f}x <= {TARGET}x: {verdict}")
    payload = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "machine": mach,
        "versions": vers,
        "target_wall_over_critical": TARGET,
        "rows": rows,
    }
    if args.out is None:
        write_results("opponent_latency", False, payload)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"benchmark": "opponent_latency", **payload}, indent=2) + "\n")
        print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
