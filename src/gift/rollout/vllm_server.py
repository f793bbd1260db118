"""vLLM OpenAI-compatible server(s) behind the `GenerationBackend` interface (`rollout.backend=vllm-server`).

Rollout and training on separate devices, as verl, TRL (`trl vllm-serve`), SkyRL and prime-rl run them: gift
connects to running servers (`rollout.vllm_server_urls`) or starts its own (`ServerProcess`, one per URL it
picks), and speaks the subset of vLLM's API below over plain HTTP.

- Token in, token out: `POST /v1/completions` with the prompt as token ids, `logprobs: 0` and
  `return_tokens_as_token_ids` (and `return_token_ids`); the sampled ids and their log-probs come back as
  numbers, never re-tokenised text. One request per prompt, each with its own seed, so a sample does not
  depend on what else is in flight (`per_request_seeds`).
- Sticky by episode: the driver names each prompt's episode (`sessions`), and an episode's turns always go to
  the same server (round-robin over episode indices), whose prefix cache then holds the game's history (SkyRL and prime-rl route
  on a session id the same way).
- Weights after each update: `POST /collective_rpc` (vLLM's dev-mode endpoint, `VLLM_SERVER_DEV_MODE=1`)
  calls the `WeightLoader` worker extension of `gift.rollout.vllm_backend` with base64 chunks, then
  `/reset_prefix_cache`. That path is CPU-tested and slow for large models; between GPUs vLLM's native NCCL
  weight transfer (`--weight-transfer-config '{"backend": "nccl"}'`, the `init_weight_transfer_engine` /
  `update_weights` protocol) is the one to use, and is not wired here yet.
- A server that stops answering is restarted when gift started it (its `ServerProcess`), and the request
  is sent again; one given by URL is retried `retries` times.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from gift.errors import ConfigError
from gift.rollout.backends import GenerationBackend, Sample, check_sampling, merged_hf_weights
from gift.rollout.vllm_backend import SYNC_CHUNK_BYTES, WORKER_EXTENSION, _chunks, _to_wire

TOKEN_PREFIX = "token_id:"


class ServerError(RuntimeError):
    """A server answered with an error or not at all."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A server this process started: its command, URL and process, restartable after it dies."""

    def __init__(self, command: Sequence[str], port: int, env: dict[str, str] | None = None) -> None:
        self.command, self.port, self.env = list(command), port, env
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 600.0) -> None:
        """Launch it and wait until `GET /health` answers 200 (or the process exits)."""
        self.stop()
        self.process = subprocess.Popen(self.command, env={**os.environ, **(self.env or {})})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(
                    f"server {self.url} exited with code {self.process.returncode} while starting"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2.0) as reply:
                    if reply.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise ServerError(f"server {self.url} did not become healthy within {timeout:.0f} s")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def vllm_serve_command(
    model_path: str, port: int, dtype: str, max_model_len: int | None, gpu_memory: float
) -> list[str]:
    """`vllm serve` with what the backend relies on: processed log-probs, gift's weight loader, prefix cache."""
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_path,
        "--host", "127.0.0.1", "--port", str(port), "--dtype", dtype, "--served-model-name", "policy",
        "--logprobs-mode", "processed_logprobs", "--worker-extension-cls", WORKER_EXTENSION,
        "--enable-prefix-caching", "--gpu-memory-utilization", str(gpu_memory),
    ]  # fmt: skip
    if max_model_len:
        command += ["--max-model-len", str(max_model_len)]
    return command


class VLLMServerBackend(GenerationBackend):
    """Generation on vLLM OpenAI-compatible servers: by URL (`urls`) or started here (`processes`)."""

    per_request_seeds = True
    sticky_sessions = True

    def __init__(
        self,
        urls: Sequence[str] = (),
        processes: Sequence[ServerProcess] = (),
        model: str = "policy",
        stop_ids: Sequence[int] = (),
        timeout: float = 600.0,
        retries: int = 2,
        max_in_flight: int = 256,
    ) -> None:
        if not urls and not processes:
            raise ConfigError("vllm-server backend: give rollout.vllm_server_urls or let it start a server")
        self.processes = list(processes)
        for proc in self.processes:
            if not proc.alive():
                proc.start()
        self.urls = [u.rstrip("/").removesuffix("/v1") for u in urls] + [p.url for p in self.processes]
        self.model, self.stop_ids = model, [int(i) for i in stop_ids]
        self.timeout, self.retries = float(timeout), int(retries)
        self.pool = ThreadPoolExecutor(max_in_flight, thread_name_prefix="gift-vllm-client")
        self.restarts = 0

    # ------------------------------------------------------------------------------------------ routing
    def server_for(self, session: Any) -> int:
        """The server of an episode, the same every turn and every run: episode indices (what the driver sends)
        spread round-robin, other ids by a stable hash."""
        if isinstance(session, int):
            return session % len(self.urls)
        return zlib.crc32(str(session).encode()) % len(self.urls)

    def generate(
        self,
        prompts: list[list[int]],
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        seeds: Sequence[int | None] | None = None,
        sessions: Sequence[Any] | None = None,
    ) -> list[Sample]:
        check_sampling(max_new_tokens, temperature, top_p)
        if seeds is None:
            seeds = [None if seed is None else int(seed) + i for i in range(len(prompts))]
        if sessions is None:
            sessions = list(range(len(prompts)))
        futures = [
            self.pool.submit(
                self._complete, self.server_for(session), list(p), max_new_tokens, temperature, top_p, s
            )
            for p, s, session in zip(prompts, seeds, sessions, strict=True)
        ]
        return [f.result() for f in futures]

    # ------------------------------------------------------------------------------------------ requests
    def _complete(
        self, server: int, prompt: list[int], max_new: int, temperature: float, top_p: float, seed: Any
    ) -> Sample:
        body: dict[str, Any] = {
            "model": self.model, "prompt": prompt, "max_tokens": max_new, "temperature": float(temperature),
            "top_p": float(top_p), "top_k": -1, "logprobs": 0, "return_tokens_as_token_ids": True,
            "return_token_ids": True, "skip_special_tokens": False, "include_stop_str_in_output": True,
        }  # fmt: skip
        if seed is not None:
            body["seed"] = int(seed) % 2**63
        if self.stop_ids:
            body["stop_token_ids"] = self.stop_ids
        reply = self._post(server, "/v1/completions", body)
        return parse_completion(reply)

    def _post(self, server: int, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST with the retry policy: a dead server gift started is restarted, then the request is re-sent."""
        for attempt in range(self.retries + 1):
            try:
                return post_json(self.urls[server] + path, body, self.timeout)
            except (OSError, ServerError) as err:
                if attempt == self.retries:
                    raise ServerError(f"{self.urls[server]}{path}: {err}") from err
                self._revive(server)
        raise AssertionError("unreachable")

    def _revive(self, server: int) -> None:
        index = server - (len(self.urls) - len(self.processes))
        if 0 <= index < len(self.processes) and not self.processes[index].alive():
            self.processes[index].start()
            self.restarts += 1
        else:
            time.sleep(0.5)

    # ------------------------------------------------------------------------------------------ weights
    def sync_weights(self, model: Any) -> None:
        """Push `model`'s weights to every server through the worker extension, then drop their prefix caches."""
        import torch

        with torch.no_grad():
            weights = merged_hf_weights(model)
        for server in range(len(self.urls)):
            for chunk in _chunks(weights, SYNC_CHUNK_BYTES):
                wire = [encode_tensor(name, tensor) for name, tensor in chunk]
                self._post(server, "/collective_rpc", {"method": "gift_stage_weights", "args": [wire]})
            self._post(server, "/collective_rpc", {"method": "gift_commit_weights"})
            self._post(server, "/reset_prefix_cache", {})

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for proc in self.processes:
            proc.stop()


def encode_tensor(name: str, tensor: Any) -> list[Any]:
    """(name, dtype, shape, base64 bytes): JSON-safe; `WeightLoader` decodes it (`_from_wire`)."""
    name, dtype, shape, raw = _to_wire(name, tensor)
    return [name, dtype, shape, base64.b64encode(raw).decode("ascii")]


def post_json(url: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            text = reply.read()
    except urllib.error.HTTPError as err:
        raise ServerError(f"HTTP {err.code}: {err.read()[:300]!r}") from None
    return json.loads(text) if text else {}


def parse_completion(reply: dict[str, Any]) -> Sample:
    """The sampled ids and log-probs of a completions reply, as numbers (token in, token out)."""
    choice = reply["choices"][0]
    logprobs = choice.get("logprobs") or {}
    ids = choice.get("token_ids")
    if ids is None:
        tokens = logprobs.get("tokens") or []
        if any(not str(t).startswith(TOKEN_PREFIX) for t in tokens):
            raise ServerError("the server returned text tokens; it must support return_tokens_as_token_ids")
        ids = [int(str(t)[len(TOKEN_PREFIX) :]) for t in tokens]
    values = [float(v) for v in logprobs.get("token_logprobs") or []]
    if len(values) != len(ids):
        raise ServerError(f"{len(ids)} sampled ids but {len(values)} log-probs in the reply")
    return Sample(
        token_ids=[int(i) for i in ids], logprobs=values, finished=choice.get("finish_reason") == "stop"
    )
