"""The episode driver: other seats answered outside the games, concurrently, with results independent of timing."""

from __future__ import annotations

import random
import threading
import time

import pytest

from gift.games.registry import make
from gift.games.spy import WhosTheSpy
from gift.games.tictactoe import PerfectPlayer, TicTacToe
from gift.opponents.base import Opponent, OpponentRequest
from gift.opponents.openai_client import OpenAIChatOpponent
from gift.opponents.policy import PolicyOpponent
from gift.rollout import HFBackend, RolloutConfig, run_rollouts
from gift.rollout.backends import GenerationBackend, Sample
from gift.rollout.driver import DriverStats, Episode, TextSeat, drive
from gift.rollout.recorders import ChatSettings, EpisodeLog, FreshRecorder
from tests.opponents.chat_server import ChatServer, respond


class MoveSampler(GenerationBackend):
    """Reads the legal moves from each prompt and samples one with that prompt's own seed."""

    per_request_seeds = True

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def generate(self, prompts, max_new_tokens, temperature=1.0, top_p=1.0, seed=None, seeds=None):
        samples = []
        for prompt, row_seed in zip(prompts, seeds or [seed] * len(prompts), strict=True):
            text = self.tokenizer.decode(prompt)
            listed = text.rsplit("are: [", 1)[1].split("]", 1)[0]
            moves = [f"({m.strip('() ')})" for m in listed.split("), ")]
            reply = f"<think>x</think><answer>{random.Random(row_seed).choice(moves)}</answer>"
            ids = [*self.tokenizer(reply, add_special_tokens=False)["input_ids"], self.tokenizer.eos_token_id]
            samples.append(Sample(ids[:max_new_tokens], [-1.0] * min(len(ids), max_new_tokens), True))
        return samples


class DelayedPerfect(Opponent):
    """A perfect TicTacToe player behind a random delay, answered in worker threads like an endpoint."""

    name = "delayed-perfect"
    concurrency = 8

    def __init__(self, seed: int, max_delay: float = 0.01) -> None:
        super().__init__()
        self.delays = random.Random(seed)
        self.lock = threading.Lock()
        self.max_delay = max_delay
        self.inner = PerfectPlayer()
        self.in_flight = 0
        self.max_in_flight = 0

    def act(self, request: OpponentRequest) -> str:
        with self.lock:
            delay = self.delays.random() * self.max_delay
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        # The bot's choice is drawn before the wait: the game's generator is not shared with anything else.
        move = self.inner.act(request)
        time.sleep(delay)
        with self.lock:
            self.in_flight -= 1
        return move


def _tictactoe(opponent: Opponent, count: int) -> list[TicTacToe]:
    return [TicTacToe(opponent=opponent, parser="lenient") for _ in range(count)]


def test_trajectories_do_not_depend_on_how_latencies_fall(tiny_model) -> None:
    _, tok = tiny_model
    cfg = RolloutConfig(max_new_tokens=64, max_context=8192, temperature=1.0, seed=7, max_batch=3)
    runs = []
    for delay_seed in (1, 2, 3):
        opponent = DelayedPerfect(delay_seed)
        games = _tictactoe(opponent, 8)
        seeds = [11, 11, 11, 12, 12, 13, 14, 14]
        trajs = run_rollouts(games, seeds, seeds, MoveSampler(tok), tok, cfg)
        runs.append([(t.input_ids, t.turn_rewards, t.final_info["moves"]) for t in trajs])
        assert opponent.max_in_flight >= 2, "endpoint-like players must answer concurrently"
    assert runs[0] == runs[1] == runs[2]


def test_a_row_samples_the_same_tokens_alone_or_in_any_batch(tiny_model) -> None:
    model, tok = tiny_model
    backend = HFBackend(model, tok, max_batch=8, kv_reuse=False)
    prompts = [tok(f"game {i}", add_special_tokens=False)["input_ids"] for i in range(5)]
    alone = backend.generate([prompts[2]], 8, temperature=1.0, seeds=[99])[0]
    batch = backend.generate(prompts, 8, temperature=1.0, seeds=[5, 6, 99, 7, 8])
    shuffled = backend.generate([prompts[4], prompts[2]], 8, temperature=1.0, seeds=[8, 99])
    assert alone.token_ids == batch[2].token_ids == shuffled[1].token_ids
    assert batch[0].token_ids != batch[2].token_ids or batch[1].token_ids != batch[2].token_ids


def test_row_sampling_draws_from_softmax_at_the_temperature() -> None:
    torch = pytest.importorskip("torch")
    from gift.rollout.backends import RowSampler

    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    sampler = RowSampler([3], temperature=1.0, top_p=1.0, device="cpu")
    counts = torch.zeros(3)
    for _ in range(4000):
        counts[int(sampler(None, logits).argmax())] += 1
    assert torch.allclose(counts / 4000, torch.tensor([0.7, 0.2, 0.1]), atol=0.03)
    nucleus = RowSampler([3], temperature=1.0, top_p=0.75, device="cpu")
    picks = {int(nucleus(None, logits).argmax()) for _ in range(500)}
    assert picks == {0, 1}  # 0.7 < 0.75, so the second token is in the nucleus and the third never is


def test_endpoint_calls_of_many_games_overlap_on_a_real_socket(tiny_model) -> None:
    _, tok = tiny_model

    with ChatServer(respond(_first_legal, hold=0.05)) as server:
        opponent = OpenAIChatOpponent(base_url=server.base_url, model="m", concurrency=8, retries=0)
        games = _tictactoe(opponent, 8)
        stats = DriverStats()
        cfg = RolloutConfig(max_new_tokens=64, max_context=8192, seed=1)
        trajs = run_rollouts(games, list(range(8)), list(range(8)), MoveSampler(tok), tok, cfg, stats=stats)
        assert server.max_in_flight >= 4
    assert stats.max_in_flight >= 4 and stats.per_game["tictactoe-v0"].calls >= 8
    assert not any(t.opponent_failed for t in trajs)
    assert all(t.final_info["end_reason"] in ("win", "loss", "draw", "out_of_turns") for t in trajs)


def _first_legal(body: dict) -> str:
    """The first legal move listed in the opponent's prompt, in an answer block."""
    text = body["messages"][-1]["content"]
    listed = text.split("Legal moves (row, col): [", 1)[1].split("]", 1)[0]
    return f"<answer>{listed.split(')')[0]})</answer>"


class Garbage(Opponent):
    name = "garbage"

    def act(self, request: OpponentRequest) -> str:
        return "   "  # an empty description and no vote: never legal


class CountingBackend(GenerationBackend):
    def __init__(self) -> None:
        self.prompts = 0

    def generate(self, prompts, max_new_tokens, temperature=1.0, top_p=1.0, seed=None):
        self.prompts += len(prompts)
        return [Sample([5], [0.0], True) for _ in prompts]


def test_a_forfeit_before_the_first_turn_ends_the_episode_before_any_reply_is_generated(tiny_model) -> None:
    _, tok = tiny_model
    # Pick seeds where some opponent speaks before the trained player.
    seeds = [s for s in range(40) if _spy_seat(s) > 1][:3]
    games = [WhosTheSpy(opponent=Garbage(), opponent_tries=2) for _ in seeds]
    backend = CountingBackend()
    trajs = run_rollouts(games, seeds, seeds, backend, tok, RolloutConfig(max_new_tokens=4))
    assert backend.prompts == 0
    assert all(t.opponent_failed and t.num_turns == 0 and t.reply_spans == [] for t in trajs)
    assert all(t.final_info["end_reason"] == "opponent_failed" for t in trajs)


def _spy_seat(seed: int) -> int:
    game = WhosTheSpy()
    game.begin(seed)
    return game.trained_seat


def test_self_play_moves_of_all_waiting_games_go_out_together(tiny_model) -> None:
    model, tok = tiny_model
    snapshot = PolicyOpponent.from_model(model, tok, max_new_tokens=8)
    calls = []
    original = snapshot.generate_replies

    def counted(requests):
        calls.append(len(requests))
        return original(requests)

    snapshot.generate_replies = counted
    games = _tictactoe(snapshot, 6)
    cfg = RolloutConfig(max_new_tokens=64, max_context=8192, seed=3)
    run_rollouts(games, list(range(6)), list(range(6)), MoveSampler(tok), tok, cfg)
    assert calls and max(calls) >= 2 and sum(calls) == snapshot.stats.calls


def test_a_person_or_bot_can_hold_the_focal_seat() -> None:
    game = make("tictactoe-v0", opponent="random", start="empty", parser="raw")
    log = EpisodeLog(5)
    seen = []

    def answer(g, observation: str) -> str:
        seen.append(observation)
        return g.legal_actions()[0]

    settings = ChatSettings(system_prompt=None, instruction="")
    drive([Episode(game, 5, FreshRecorder(None, settings, log), 0)], TextSeat(answer))
    assert log.terminated or log.truncated
    assert log.replies and len(log.replies) == len(seen)
    assert log.final_info["end_reason"] in ("win", "loss", "draw", "out_of_turns")
