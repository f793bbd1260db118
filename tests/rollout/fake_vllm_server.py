"""A loopback stand-in for the subset of vLLM's OpenAI-compatible server that `VLLMServerBackend` uses.

Real HTTP on 127.0.0.1 (no mocks): `GET /health`, `POST /v1/completions` with token-id prompts,
`POST /collective_rpc` (gift's weight-loader methods, decoded with gift's own wire format) and
`POST /reset_prefix_cache`. Generation is a deterministic function of (prompt, seed, weights version)
(`expected`), so a test knows exactly which ids and log-probs must come back.

    with FakeVLLMServer() as server:  backend = VLLMServerBackend(urls=[server.url])
    python -m tests.rollout.fake_vllm_server --port 8123    # as a process, for restart tests
"""

from __future__ import annotations

import argparse
import json
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VOCAB = 300


def expected(prompt: list[int], seed: int, max_tokens: int, stop_ids: list[int], version: int = 0) -> dict:
    """The ids, log-probs and finish reason the fake samples for a request."""
    ids, logprobs = [], []
    for i in range(max_tokens):
        token = zlib.crc32(f"{prompt[-3:]}:{len(prompt)}:{seed}:{version}:{i}".encode()) % VOCAB
        ids.append(token)
        logprobs.append(-0.5 - (token % 13) / 8)
        if token in stop_ids:
            return {"ids": ids, "logprobs": logprobs, "finish": "stop"}
    return {"ids": ids, "logprobs": logprobs, "finish": "length"}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, payload: dict[str, Any], status: int = 200) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self._send({}) if self.path == "/health" else self._send({"error": "not found"}, 404)

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        fake = self.server
        with fake.lock:
            fake.requests.append((self.path, body))
        if self.path == "/v1/completions":
            return self._send(fake.complete(body))
        if self.path == "/collective_rpc":
            return self._send({"results": [fake.rpc(body["method"], body.get("args", []))]})
        if self.path == "/reset_prefix_cache":
            fake.resets += 1
            return self._send({})
        self._send({"error": "not found"}, 404)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def setup_fake(self, token_ids_field: bool) -> None:
        self.lock = threading.Lock()
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.version, self.resets, self.token_ids_field = 0, 0, token_ids_field
        self.staged: list[Any] = []
        self.weights: dict[str, Any] = {}

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = body["prompt"]
        assert isinstance(prompt, list) and all(isinstance(t, int) for t in prompt), "token-id prompts only"
        assert body.get("logprobs") == 0 and body.get("return_tokens_as_token_ids") is True
        out = expected(
            prompt, body.get("seed", 0), body["max_tokens"], body.get("stop_token_ids") or [], self.version
        )
        choice: dict[str, Any] = {
            "index": 0,
            "text": "",
            "finish_reason": out["finish"],
            "logprobs": {"tokens": [f"token_id:{t}" for t in out["ids"]], "token_logprobs": out["logprobs"]},
        }
        if self.token_ids_field and body.get("return_token_ids"):
            choice["token_ids"] = out["ids"]
        return {"id": "cmpl", "object": "text_completion", "model": body.get("model"), "choices": [choice]}

    def rpc(self, method: str, args: list[Any]) -> int:
        from gift.rollout.vllm_backend import _from_wire

        if method == "gift_stage_weights":
            self.staged.extend(_from_wire(item) for item in args[0])
            return len(self.staged)
        if method == "gift_commit_weights":
            self.weights = dict(self.staged)
            self.staged, self.version = [], self.version + 1
            return len(self.weights)
        raise ValueError(method)


class FakeVLLMServer:
    """Serve in a background thread while the `with` block runs."""

    def __init__(self, port: int = 0, token_ids_field: bool = True) -> None:
        self.httpd = _Server(("127.0.0.1", port), _Handler)
        self.httpd.setup_fake(token_ids_field)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    @property
    def state(self) -> _Server:
        return self.httpd

    def completions(self) -> list[dict[str, Any]]:
        return [body for path, body in self.httpd.requests if path == "/v1/completions"]

    def __enter__(self) -> FakeVLLMServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    httpd = _Server(("127.0.0.1", port), _Handler)
    httpd.setup_fake(token_ids_field=True)
    httpd.serve_forever()
