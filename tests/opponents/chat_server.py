"""A real OpenAI-compatible chat endpoint on 127.0.0.1 for tests: scripted replies, failures and stalls.

Tests that need an LLM opponent (or judge) talk to this server over a real socket instead of mocking the HTTP
client, so the whole path — request building, headers, timeouts, retries, parsing — is exercised. A server
answers `POST /v1/chat/completions` with its next scripted `Behaviour` (then its default one), records every
request, and counts how many were in flight at once.

    with ChatServer(reply("<answer>(1,1)</answer>")) as server:
        opponent = OpenAIChatOpponent(base_url=server.base_url, model="m")

Import it as `from tests.opponents.chat_server import ChatServer, reply, ...` (run pytest as `python -m pytest`
from the repository root, as the Makefile does).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[dict[str, Any]], str]
"""Computes the reply text from the decoded request body (e.g. pick a legal move from the prompt)."""


@dataclass(frozen=True)
class Behaviour:
    """How the server answers one request; build these with the helper functions below."""

    kind: str
    """One of: text, echo, respond, status, malformed, empty, stall, trickle."""
    text: str | None = ""
    status: int = 500
    seconds: float = 0.0
    """For `stall`: how long to keep the connection silent before closing it."""
    hold: float = 0.0
    """Seconds to keep a successful request open before answering (lets concurrency tests overlap requests)."""
    responder: Responder | None = None


def reply(text: str, hold: float = 0.0) -> Behaviour:
    """Answer 200 with this fixed assistant text (garbage included: the game decides what is legal)."""
    return Behaviour("text", text=text, hold=hold)


def echo(hold: float = 0.0) -> Behaviour:
    """Answer with the content of the last user message."""
    return Behaviour("echo", hold=hold)


def respond(responder: Responder, hold: float = 0.0) -> Behaviour:
    """Answer with `responder(body)`, computed from the decoded request body."""
    return Behaviour("respond", responder=responder, hold=hold)


def http_error(status: int = 500) -> Behaviour:
    """Answer with this HTTP status and a small JSON error body."""
    return Behaviour("status", status=status)


def malformed() -> Behaviour:
    """Answer 200 with a JSON content type but a truncated, undecodable body."""
    return Behaviour("malformed")


def empty(null: bool = False) -> Behaviour:
    """Answer 200 with an empty (or, with `null`, a JSON null) message content."""
    return Behaviour("empty", text=None if null else "")


def trickle(seconds: float = 5.0) -> Behaviour:
    """Answer 200 and a JSON body, one byte every 0.1 s for `seconds` (never finishing within a short timeout)."""
    return Behaviour("trickle", seconds=seconds)


def stall(seconds: float = 5.0) -> Behaviour:
    """Accept the request, say nothing for `seconds` (or until the server closes), then drop the connection."""
    return Behaviour("stall", seconds=seconds)


@dataclass
class RecordedRequest:
    """One request as the server saw it; header names are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    behaviour: str
    received_at: float = field(default_factory=time.monotonic)

    @property
    def user_text(self) -> str:
        """Content of the last user message ('' when there is none)."""
        return last_user_text(self.body or {})


def last_user_text(body: dict[str, Any]) -> str:
    """Content of the last user message of a chat request body ('' when there is none)."""
    messages = body.get("messages") or []
    users = [m.get("content", "") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return str(users[-1]) if users else ""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    """Listen backlog (the stdlib's is 5): with more simultaneous connects the kernel drops SYNs and each
    dropped client waits a 1 s retransmission, which reads as opponent latency."""
    chat: ChatServer


class ChatServer:
    """Threaded loopback server; use as a context manager (it binds a free port on entry)."""

    def __init__(self, default: Behaviour | None = None, script: Iterable[Behaviour] = ()) -> None:
        self._default = default if default is not None else reply("ok")
        self._script = list(script)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._requests: list[RecordedRequest] = []
        self._in_flight = 0
        self.max_in_flight = 0
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle -------------------------------------------------------------------------------------------
    def start(self) -> ChatServer:
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.chat = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- what tests read and change ----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("ChatServer is not running; use it as a context manager")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL (ends in /v1)."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Chat requests received so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    def set_behaviour(self, default: Behaviour | None = None, script: Iterable[Behaviour] = ()) -> None:
        """Replace the scripted behaviours (and the default when given) for the requests still to come."""
        with self._lock:
            if default is not None:
                self._default = default
            self._script = list(script)

    # ---- used by the handler -------------------------------------------------------------------------------------
    def _next(self) -> Behaviour:
        with self._lock:
            return self._script.pop(0) if self._script else self._default

    def _enter(self, record: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(record)
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Stay quiet: tests read `ChatServer.requests` instead of stderr."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        if self.path.rstrip("/").endswith("/models"):
            self._send_json(200, {"object": "list", "data": [{"id": "test-model", "object": "model"}]})
        else:
            self._send_json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send_json(404, {"error": {"message": "not found"}})
            return
        chat = self.server.chat
        behaviour = chat._next()
        headers = {name.lower(): value for name, value in self.headers.items()}
        chat._enter(RecordedRequest("POST", self.path, headers, body, behaviour.kind))
        try:
            self._answer(behaviour, body if isinstance(body, dict) else {})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout) before we answered
        finally:
            chat._leave()

    def _answer(self, behaviour: Behaviour, body: dict[str, Any]) -> None:
        chat = self.server.chat
        if behaviour.kind == "stall":
            chat._closing.wait(behaviour.seconds)
            self.close_connection = True
            return
        if behaviour.kind == "trickle":
            data = json.dumps(_completion(body, "(1, 1)")).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            for index in range(min(len(data), int(behaviour.seconds * 10))):
                if chat._closing.wait(0.1):
                    break
                self.wfile.write(data[index : index + 1])
                self.wfile.flush()
            self.close_connection = True
            return
        if behaviour.kind == "status":
            self._send_json(
                behaviour.status, {"error": {"message": "scripted failure", "code": behaviour.status}}
            )
            return
        if behaviour.kind == "malformed":
            self._send_raw(
                200, b'{"id": "chatcmpl-x", "choices": [{"message": {"content": "trunc', "application/json"
            )
            return
        if behaviour.hold:
            chat._closing.wait(behaviour.hold)
        if behaviour.kind == "echo":
            text: str | None = last_user_text(body)
        elif behaviour.kind == "respond" and behaviour.responder is not None:
            text = behaviour.responder(body)
        else:
            text = behaviour.text
        self._send_json(200, _completion(body, text))

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        self._send_raw(status, json.dumps(payload).encode(), "application/json")

    def _send_raw(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _completion(body: dict[str, Any], text: str | None) -> dict[str, Any]:
    """A chat.completion object in the shape vLLM and OpenAI return."""
    prompt_words = sum(
        len(str(m.get("content", "")).split()) for m in body.get("messages") or [] if isinstance(m, dict)
    )
    completion_words = len(text.split()) if text else 0
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(body.get("model", "test-model")),
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"},
        ],
        "usage": {
            "prompt_tokens": prompt_words,
            "completion_tokens": completion_words,
            "total_tokens": prompt_words + completion_words,
        },
    }


def closed_port_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens (the port was just bound and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"
