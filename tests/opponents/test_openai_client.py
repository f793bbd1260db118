"""OpenAIChatOpponent against real HTTP servers on 127.0.0.1: replies, retries, failures, key hygiene, concurrency."""

from __future__ import annotations

import logging
import pickle
from concurrent.futures import ThreadPoolExecutor

import pytest

from gift.errors import ConfigError
from gift.opponents import OpponentError, OpponentRequest, ask_with_retries, resolve_opponent
from gift.opponents.openai_client import OpenAIChatOpponent
from tests.opponents.chat_server import (
    ChatServer,
    closed_port_url,
    echo,
    empty,
    http_error,
    malformed,
    reply,
    stall,
    trickle,
)

KEY_ENV = "GIFT_TEST_OPENAI_KEY"
SECRET = "sk-test-Zq7xSECRETvalue123"
FAST = {"backoff": 0.01, "timeout": 2.0}
"""Short backoff and timeout so every failure path finishes in well under a second."""


def make(server_or_url: ChatServer | str, **options) -> OpenAIChatOpponent:
    url = server_or_url if isinstance(server_or_url, str) else server_or_url.base_url
    return OpenAIChatOpponent(base_url=url, model="test-model", api_key_env=KEY_ENV, **{**FAST, **options})


def request(prompt: str = "Your move.", feedback: str = "") -> OpponentRequest:
    return OpponentRequest(game="test", seat=2, prompt=prompt, state={}, feedback=feedback)


@pytest.fixture()
def secret_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, SECRET)
    return SECRET


# ---- successful requests -------------------------------------------------------------------------------------------
def test_reply_text_and_request_fields(secret_env: str) -> None:
    extra = {"chat_template_kwargs": {"enable_thinking": False}}
    with ChatServer(reply("<answer>(1,1)</answer>")) as server:
        opponent = make(server, temperature=0.3, max_tokens=77, extra_body=extra)
        assert opponent.act(request("Board: ...")) == "<answer>(1,1)</answer>"
        (seen,) = server.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == f"Bearer {secret_env}"
    assert seen.body["model"] == "test-model"
    assert seen.body["temperature"] == 0.3
    assert seen.body["max_tokens"] == 77
    assert seen.body["chat_template_kwargs"] == {"enable_thinking": False}
    assert seen.body["messages"] == [{"role": "user", "content": "Board: ..."}]
    assert opponent.chat_stats.http_attempts == 1
    assert opponent.chat_stats.completion_tokens == 1  # the test server counts words as tokens


def test_placeholder_key_when_env_var_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with ChatServer(echo()) as server:
        assert make(server).act(request("ping")) == "ping"
        assert server.requests[0].headers["authorization"] == "Bearer EMPTY"


def test_feedback_is_appended_and_system_prompt_leads() -> None:
    with ChatServer(echo()) as server:
        opponent = make(server, system_prompt="Be brief.")
        answer = opponent.act(request("Pick a cell.", feedback="Your previous reply was not a legal move."))
        messages = server.requests[0].body["messages"]
    assert answer.startswith("Pick a cell.") and answer.endswith("Your previous reply was not a legal move.")
    assert messages[0] == {"role": "system", "content": "Be brief."}
    assert [m["role"] for m in messages] == ["system", "user"]


def test_chat_sends_arbitrary_messages_and_keeps_a_given_system_message() -> None:
    with ChatServer(reply("8")) as server:
        opponent = make(server, system_prompt="unused")
        msgs = [
            {"role": "system", "content": "You grade answers."},
            {"role": "user", "content": "Grade: 7"},
            {"role": "assistant", "content": "7/10"},
            {"role": "user", "content": "Again"},
        ]
        assert opponent.chat(msgs) == "8"
        assert server.requests[0].body["messages"] == msgs
    with pytest.raises(ConfigError, match="role"):
        opponent.chat([{"role": "robot", "content": "x"}])
    with pytest.raises(ConfigError):
        opponent.chat([])


def test_garbage_text_is_returned_as_text() -> None:
    with ChatServer(reply("banana ;DROP TABLE")) as server:
        assert make(server).act(request()) == "banana ;DROP TABLE"


# ---- transport failures --------------------------------------------------------------------------------------------
def test_http_500_is_retried_then_raises() -> None:
    with ChatServer(http_error(500)) as server:
        opponent = make(server, retries=2)
        with pytest.raises(OpponentError, match="HTTP 500"):
            opponent.act(request())
        assert len(server.requests) == 3
    assert opponent.chat_stats.http_attempts == 3
    assert opponent.chat_stats.http_retries == 2
    assert opponent.chat_stats.failures == 1


def test_client_errors_are_not_retried() -> None:
    with ChatServer(http_error(404)) as server:
        with pytest.raises(OpponentError, match="HTTP 404"):
            make(server, retries=3).act(request())
        assert len(server.requests) == 1


def test_fail_twice_then_succeed_uses_three_attempts() -> None:
    with ChatServer(reply("ok"), script=[http_error(503), malformed()]) as server:
        opponent = make(server, retries=2)
        assert opponent.act(request()) == "ok"
        assert [r.behaviour for r in server.requests] == ["status", "malformed", "text"]
    assert opponent.chat_stats.http_attempts == 3
    assert opponent.chat_stats.failures == 0


def test_retries_run_out_before_the_third_attempt() -> None:
    with ChatServer(reply("ok"), script=[http_error(500), http_error(500)]) as server:
        with pytest.raises(OpponentError):
            make(server, retries=1).act(request())
        assert len(server.requests) == 2


@pytest.mark.parametrize(
    "behaviour", [malformed(), empty(), empty(null=True)], ids=["malformed", "empty", "null"]
)
def test_unusable_responses_raise(behaviour) -> None:
    with ChatServer(behaviour) as server:
        with pytest.raises(OpponentError):
            make(server, retries=1).act(request())


def test_stalled_server_times_out() -> None:
    with ChatServer(stall(10.0)) as server:
        opponent = make(server, timeout=0.3, retries=1)
        with pytest.raises(OpponentError, match="timed out"):
            opponent.act(request())
        assert len(server.requests) == 2


def test_connection_refused_raises() -> None:
    opponent = make(closed_port_url(), retries=1)
    with pytest.raises(OpponentError, match="connect"):
        opponent.act(request())
    assert opponent.chat_stats.http_attempts == 2


# ---- the key stays secret ------------------------------------------------------------------------------------------
def test_key_never_in_repr_errors_logs_or_pickles(secret_env: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx", "httpcore", "httpx2", "httpcore2", "gift"):
        caplog.set_level(logging.DEBUG, logger=name)
    texts: list[str] = []
    with ChatServer(reply("ok"), script=[http_error(500), http_error(401)]) as server:
        opponent = make(server, retries=1)
        texts += [repr(opponent), str(opponent)]
        with pytest.raises(OpponentError) as failed:
            opponent.act(request())
        texts.append(str(failed.value))
        assert opponent.act(request()) == "ok"
        assert server.requests[-1].headers["authorization"] == f"Bearer {secret_env}"
    with pytest.raises(OpponentError) as refused:
        make(closed_port_url(), retries=0).act(request())
    texts.append(str(refused.value))
    texts.append(caplog.text)
    assert any(r.name.startswith("openai") for r in caplog.records), (
        "the client's debug logs were not captured"
    )
    for text in texts:
        assert secret_env not in text
    assert secret_env.encode() not in pickle.dumps(opponent)
    assert repr(opponent) == f"OpenAIChatOpponent(base_url={opponent.base_url!r}, model='test-model')"


def test_repr_hides_credentials_in_the_url() -> None:
    opponent = OpenAIChatOpponent(base_url="https://user:pw@example.invalid/v1?key=abc", model="m")
    assert "pw" not in repr(opponent) and "abc" not in repr(opponent)
    assert "example.invalid/v1" in repr(opponent)


def test_pickled_opponent_still_works() -> None:
    with ChatServer(echo()) as server:
        clone = pickle.loads(pickle.dumps(make(server)))
        assert clone.act(request("again")) == "again"


# ---- concurrency and batches ---------------------------------------------------------------------------------------
def test_concurrency_limit_holds_across_threads() -> None:
    with ChatServer(reply("ok", hold=0.1)) as server:
        opponent = make(server, concurrency=2)
        with ThreadPoolExecutor(max_workers=6) as pool:
            replies = list(pool.map(lambda _: opponent.act(request()), range(6)))
        assert replies == ["ok"] * 6
        assert server.max_in_flight <= 2
        assert len(server.requests) == 6


def test_act_batch_preserves_order_and_returns_errors() -> None:
    with ChatServer(echo(hold=0.02)) as server:
        opponent = make(server, concurrency=3)
        prompts = [f"prompt {i}" for i in range(8)]
        assert opponent.act_batch([request(p) for p in prompts]) == prompts
        assert 1 < server.max_in_flight <= 3
        server.set_behaviour(script=[http_error(400)])
        results = opponent.act_batch([request("only")])
    assert len(results) == 1 and isinstance(results[0], OpponentError)
    assert opponent.act_batch([]) == []


# ---- with the shared retry policy ----------------------------------------------------------------------------------
def _accept_digit(reply_text: str) -> int | None:
    text = reply_text.strip()
    return int(text) if text in {"1", "2", "3"} else None


def test_ask_with_retries_forfeits_on_garbage() -> None:
    with ChatServer(reply("I refuse to play")) as server:
        opponent = make(server, retries=0)
        action = ask_with_retries(
            opponent, lambda a, fb: request("Pick 1-3.", feedback=fb), _accept_digit, tries=3
        )
        users = [r.user_text for r in server.requests]
    assert action is None
    stats = opponent.stats
    assert (stats.calls, stats.invalid, stats.errors, stats.forfeits) == (3, 3, 0, 1)
    assert "not a legal move" not in users[0] and "not a legal move" in users[1]


def test_ask_with_retries_counts_transport_errors_then_recovers() -> None:
    with ChatServer(reply("2"), script=[http_error(500), http_error(500)]) as server:
        opponent = make(server, retries=0)
        action = ask_with_retries(
            opponent, lambda a, fb: request("Pick 1-3.", feedback=fb), _accept_digit, tries=3
        )
    assert action == 2
    assert (opponent.stats.calls, opponent.stats.errors, opponent.stats.forfeits) == (3, 2, 0)


# ---- options -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [
        {"base_url": ""},
        {"base_url": "127.0.0.1:8000/v1"},
        {"model": " "},
        {"timeout": 0},
        {"timeout": -1.0},
        {"temperature": 2.5},
        {"temperature": float("nan")},
        {"max_tokens": 0},
        {"retries": -1},
        {"concurrency": 0},
        {"backoff": -0.1},
        {"extra_body": ["not", "a", "dict"]},
        {"extra_body": {"x": object()}},
        {"system_prompt": 3},
        {"colour": "red"},
    ],
)
def test_bad_options_raise_config_error(options: dict) -> None:
    kwargs = {"base_url": "http://127.0.0.1:1/v1", "model": "m", **options}
    with pytest.raises(ConfigError):
        OpenAIChatOpponent(**kwargs)


def test_key_like_options_are_refused_without_echoing_them() -> None:
    with pytest.raises(ConfigError) as as_option:
        OpenAIChatOpponent(base_url="http://127.0.0.1:1/v1", model="m", api_key=SECRET)
    with pytest.raises(ConfigError) as as_env_name:
        OpenAIChatOpponent(base_url="http://127.0.0.1:1/v1", model="m", api_key_env=SECRET)
    assert "api_key_env" in str(as_option.value)
    assert SECRET not in str(as_option.value) and SECRET not in str(as_env_name.value)


def test_resolve_opponent_builds_the_client() -> None:
    opponent = resolve_opponent(
        {"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "m"}, {}, "test"
    )
    assert isinstance(opponent, OpenAIChatOpponent)
    assert (opponent.temperature, opponent.max_tokens, opponent.retries, opponent.concurrency) == (
        0.5,
        200,
        2,
        8,
    )
    with pytest.raises(ConfigError, match="unknown option"):
        resolve_opponent({"kind": "openai", "base_url": "http://x/v1", "model": "m", "temp": 1}, {}, "test")


def test_feedback_already_in_the_prompt_is_not_repeated() -> None:
    with ChatServer(echo()) as server:
        sent = make(server).act(request("Not legal: (9, 9).\n\nPick a cell.", feedback="Not legal: (9, 9)."))
    assert sent.count("Not legal") == 1


# ---- a whole game against a failing endpoint ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "behaviour", [reply("I would rather not play."), http_error(500)], ids=["garbage", "500"]
)
def test_tictactoe_episode_is_called_off_when_the_llm_opponent_fails(behaviour) -> None:
    tictactoe = pytest.importorskip("gift.games.tictactoe")
    import gift

    with ChatServer(behaviour) as server:
        options = {"kind": "openai", "base_url": server.base_url, "model": "m", "retries": 0, "timeout": 0.5}
        game = gift.make("tictactoe-v0", opponent=options, start="empty")
        assert isinstance(game, tictactoe.TicTacToe)
        game.reset(seed=3)
        terminated = truncated = False
        info: dict = {}
        while not (terminated or truncated):
            move = game.legal_actions()[0]
            _, reward, terminated, truncated, info = game.step(
                f"<think>first free cell</think><answer>{move}</answer>"
            )
        asked = len(server.requests)
    assert info["opponent_failed"] is True
    assert info["end_reason"] == "opponent_failed"
    assert info["success"] is False and reward == 0.0
    assert asked == game.opponent_tries
    assert game.opponent.stats.forfeits == 1


def test_a_trickling_server_cannot_stretch_a_move_past_timeout_times_tries() -> None:
    import time

    from gift.games.tictactoe import TicTacToe
    from gift.opponents.base import answer_seat

    with ChatServer(trickle(seconds=30.0)) as server:
        opponent = make(server, timeout=0.4, retries=0)
        game = TicTacToe(opponent=opponent, opponent_tries=2, seat=2, start="empty")
        game.begin(seed=1)  # the opponent (Player 1) moves first
        start = time.perf_counter()
        assert answer_seat(game, 1, opponent, tries=2) is False  # each try cut off at the timeout
        elapsed = time.perf_counter() - start
    assert elapsed < 0.4 * 2 + 1.0, f"a move took {elapsed:.2f}s"
    assert opponent.stats.errors == 2 and opponent.stats.forfeits == 1
    assert game.to_move() is None and game.collect_step()[4]["opponent_failed"]
