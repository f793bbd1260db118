"""A loopback OpenAI-compatible chat endpoint that answers after a fixed latency: a slow LLM opponent.

It plays tic-tac-toe legally without a model: the reply is the first empty cell of the last board drawn in the
last user message (`gift.games.tictactoe.format_board`), or "(1, 1)" when it finds none. Any other game gets
that same text, which its rules may reject (then the game's retry policy applies, as with a real model).

    with LatencyServer(latency_s=0.5) as server:
        options = {"opponent": {"kind": "openai", "base_url": server.base_url, "model": "bench"}}
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ROW = re.compile(r"^([123]) (\S) (\S) (\S)\s*$", re.MULTILINE)


def first_empty_cell(text: str) -> str:
    """(row, col) of the first cell that is neither X nor O in the last 3-row board of `text`."""
    rows = ROW.findall(text)[-3:]
    for row, *cells in rows:
        for col, cell in enumerate(cells, start=1):
            if cell.upper() not in ("X", "O"):
                return f"({row}, {col})"
    return "(1, 1)"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        time.sleep(self.server.latency_s)
        users = [m.get("content", "") for m in body.get("messages", []) if m.get("role") == "user"]
        text = f"<answer>{first_empty_cell(users[-1] if users else '')}</answer>"
        with self.server.lock:
            self.server.requests += 1
        payload = json.dumps(
            {
                "id": "bench",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "bench"),
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    latency_s = 0.0
    requests = 0
    lock = threading.Lock()


class LatencyServer:
    """Serve on 127.0.0.1 (a free port) in a background thread while the `with` block runs."""

    def __init__(self, latency_s: float) -> None:
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.latency_s = float(latency_s)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    @property
    def requests(self) -> int:
        return self.httpd.requests

    def __enter__(self) -> LatencyServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()
