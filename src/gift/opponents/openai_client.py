"""An opponent (or judge) served by any OpenAI-compatible chat endpoint: vLLM, llama.cpp, OpenAI, OpenRouter…

The paper's fixed opponent is a local vLLM server (Qwen3-14B, non-thinking, temperature 0.5, 200 tokens), so the
defaults match that. Transport failures are retried here (`retries`, exponential backoff with jitter); what is
left becomes `OpponentError`, which `ask_with_retries` counts and, after its tries, turns into a forfeit — an
episode never silently scores an opponent that could not answer. The API key is read from the environment
variable named by `api_key_env` and is kept out of repr, messages, logs and pickles.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import openai

from gift.errors import ConfigError
from gift.opponents.base import Opponent, OpponentError, OpponentRequest

log = logging.getLogger(__name__)

PLACEHOLDER_KEY = "EMPTY"
"""Sent when the key variable is unset: local servers (vLLM, llama.cpp) accept any bearer token."""
MAX_BACKOFF_S = 30.0
RETRY_STATUSES = frozenset({408, 409, 425, 429})
"""4xx statuses worth retrying (timeouts, conflicts, rate limits); every 5xx is retried too."""
ROLES = frozenset({"system", "user", "assistant"})
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPTIONS = (
    "base_url, model, api_key_env, temperature, max_tokens, timeout, retries, backoff, concurrency, "
    "system_prompt, extra_body, name"
)


@dataclass
class ChatStats:
    """Transport counters, on top of the move-level `OpponentStats` that `ask_with_retries` keeps."""

    requests: int = 0
    """chat() calls (one per act())."""
    http_attempts: int = 0
    """HTTP requests sent, retries included."""
    http_retries: int = 0
    failures: int = 0
    """chat() calls that ended in OpponentError."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    """Token counts from the server's `usage` field, when it sends one."""

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _Retryable(Exception):
    """A failure another HTTP attempt may fix; `reason` is short and never holds server text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OpenAIChatOpponent(Opponent):
    """Chat-completions client with bounded concurrency, transport retries and key hygiene.

    `timeout` bounds each HTTP attempt as a whole (a server that trickles bytes is cut off too), so one request
    costs at most timeout × (retries + 1) plus backoff before `OpponentError`, and one move at most that times
    the game's `opponent_tries`. `extra_body` is merged into the
    request JSON, e.g. {"chat_template_kwargs": {"enable_thinking": False}} for Qwen3 on vLLM.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        temperature: float = 0.5,
        max_tokens: int = 200,
        timeout: float = 30.0,
        retries: int = 2,
        backoff: float = 0.5,
        concurrency: int = 8,
        system_prompt: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        name: str | None = None,
        **unknown: Any,
    ) -> None:
        super().__init__()
        _reject_unknown(unknown)
        self.base_url = _check_url(base_url)
        self.model = _check_text("model", model)
        self.api_key_env = _check_env_name(api_key_env)
        self.temperature = _check_number("temperature", temperature, 0.0, 2.0)
        self.max_tokens = _check_int("max_tokens", max_tokens, 1)
        self.timeout = _check_positive("timeout", timeout)
        self.retries = _check_int("retries", retries, 0)
        self.backoff = _check_number("backoff", backoff, 0.0, MAX_BACKOFF_S)
        self.concurrency = _check_int("concurrency", concurrency, 1)
        if system_prompt is not None and not isinstance(system_prompt, str):
            raise ConfigError(
                f"openai opponent: system_prompt must be a string or None, not {type(system_prompt).__name__}"
            )
        self.system_prompt = system_prompt or None
        self.extra_body = _check_extra_body(extra_body)
        self.name = _check_text("name", name) if name is not None else f"openai:{self.model}"
        self.chat_stats = ChatStats()
        self._init_runtime()

    def _init_runtime(self) -> None:
        """Per-process state: locks, the concurrency gate and the (lazily built) HTTP client."""
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.concurrency)
        self._jitter = random.Random()
        self._client: openai.OpenAI | None = None

    # ---- public API --------------------------------------------------------------------------------------------
    def act(self, request: OpponentRequest) -> str:
        """The reply to the game's prompt; on a retry the game's feedback follows it (unless already there)."""
        text = request.prompt
        if request.feedback and request.feedback not in text:
            text = f"{text}\n\n{request.feedback}"
        return self.chat([{"role": "user", "content": text}])

    def act_batch(self, requests: Sequence[OpponentRequest]) -> list[str | OpponentError]:
        """Answer many requests concurrently (at most `concurrency` in flight); results keep the input order."""
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(self._act_or_error, requests))

    def chat(self, messages: Sequence[Mapping[str, str]]) -> str:
        """Send arbitrary chat messages and return the assistant text, or raise `OpponentError`.

        The configured `system_prompt` is prepended unless the messages already start with a system message.
        """
        payload = self._messages(messages)
        attempts = self.retries + 1
        with self._lock:
            self.chat_stats.requests += 1
        reason = "no attempt made"
        for attempt in range(attempts):
            if attempt:
                self._sleep_before_retry(attempt, reason)
            try:
                return self._send_once(payload)
            except _Retryable as err:
                reason = err.reason
            except OpponentError:
                self._count_failure()
                raise
        self._count_failure()
        raise OpponentError(f"{self.name}: {reason} (after {attempts} HTTP attempt{'s' * (attempts > 1)})")

    def close(self) -> None:
        """Release the HTTP connection pool (a later call opens a new one)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={_redact_url(self.base_url)!r}, model={self.model!r})"

    __str__ = __repr__

    def __getstate__(self) -> dict[str, Any]:
        """Pickle options and counters only: no client (which holds the key), no locks."""
        state = dict(self.__dict__)
        for key in ("_lock", "_slots", "_jitter", "_client"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    # ---- internals -----------------------------------------------------------------------------------------------
    def _act_or_error(self, request: OpponentRequest) -> str | OpponentError:
        try:
            return self.act(request)
        except OpponentError as err:
            return err

    def _messages(self, messages: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
        if isinstance(messages, str | bytes) or not isinstance(messages, Sequence) or not messages:
            raise ConfigError("chat(messages) needs a non-empty list of {'role': ..., 'content': ...} dicts")
        out = []
        for i, message in enumerate(messages):
            role = message.get("role") if isinstance(message, Mapping) else None
            content = message.get("content") if isinstance(message, Mapping) else None
            if role not in ROLES or not isinstance(content, str):
                raise ConfigError(
                    f"chat message {i} must have role in {sorted(ROLES)} and string content, got role={role!r}"
                )
            out.append({"role": role, "content": content})
        if self.system_prompt and out[0]["role"] != "system":
            out.insert(0, {"role": "system", "content": self.system_prompt})
        return out

    def _get_client(self) -> openai.OpenAI:
        with self._lock:
            if self._client is None:
                key = os.environ.get(self.api_key_env) or PLACEHOLDER_KEY
                # max_retries=0: every HTTP attempt is ours, so it is counted and bounded by `retries`.
                self._client = openai.OpenAI(
                    api_key=key, base_url=self.base_url, timeout=self.timeout, max_retries=0
                )
            return self._client

    def _send_once(self, messages: list[dict[str, str]]) -> str:
        client = self._get_client()
        with self._slots:
            with self._lock:
                self.chat_stats.http_attempts += 1
            try:
                completion = self._create_within_timeout(client, messages)
            except openai.APITimeoutError:
                raise _Retryable(f"timed out (timeout={self.timeout:g}s)") from None
            except openai.APIConnectionError:
                raise _Retryable("could not connect to the server") from None
            except openai.APIStatusError as err:
                status = err.status_code
                if status >= 500 or status in RETRY_STATUSES:
                    raise _Retryable(f"HTTP {status}") from None
                raise OpponentError(f"{self.name}: HTTP {status} ({type(err).__name__})") from None
            except openai.APIResponseValidationError:
                raise _Retryable("malformed response") from None
            except openai.OpenAIError as err:
                raise OpponentError(f"{self.name}: request failed ({type(err).__name__})") from None
            except ValueError:  # an undecodable JSON body
                raise _Retryable("malformed JSON response") from None
        return self._reply_text(completion)

    def _create_within_timeout(self, client: openai.OpenAI, messages: list[dict[str, str]]) -> Any:
        """One completion request that must finish within `timeout` in all: the client's own timeout bounds
        each network phase only, so a server trickling bytes could stretch an attempt without end."""
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["reply"] = client.chat.completions.create(
                    model=self.model,
                    messages=messages,  # type: ignore[arg-type]
                    temperature=self.temperature,
                    max_tokens=self.max_tokens,
                    extra_body=dict(self.extra_body) if self.extra_body else None,
                    timeout=self.timeout,
                )
            except BaseException as err:  # noqa: BLE001 - handed back to the caller below
                box["error"] = err

        worker = threading.Thread(target=work, name="gift-openai-request", daemon=True)
        worker.start()
        worker.join(self.timeout)
        if worker.is_alive():  # left to end on its own; its reply, if any, is dropped
            raise _Retryable(f"timed out (no complete reply within timeout={self.timeout:g}s)")
        if "error" in box:
            raise box["error"]
        return box["reply"]

    def _reply_text(self, completion: object) -> str:
        """The first choice's content; a response without that shape is malformed, an empty one is an error."""
        try:
            message = completion.choices[0].message  # type: ignore[attr-defined]
            content = message.content
        except (AttributeError, IndexError, KeyError, TypeError):
            raise _Retryable("malformed response (no choices[0].message)") from None
        self._count_usage(getattr(completion, "usage", None))
        if content is not None and not isinstance(content, str):
            raise _Retryable("malformed response (content is not text)")
        if not content or not content.strip():
            raise OpponentError(f"{self.name}: empty reply")
        return content

    def _count_usage(self, usage: object) -> None:
        prompt = getattr(usage, "prompt_tokens", None)
        completion = getattr(usage, "completion_tokens", None)
        with self._lock:
            if isinstance(prompt, int):
                self.chat_stats.prompt_tokens += prompt
            if isinstance(completion, int):
                self.chat_stats.completion_tokens += completion

    def _sleep_before_retry(self, attempt: int, reason: str) -> None:
        base = min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF_S)
        delay = base * (1.0 + 0.5 * self._jitter.random())
        with self._lock:
            self.chat_stats.http_retries += 1
        log.debug("%s: %s; retry %d of %d in %.2fs", self.name, reason, attempt, self.retries, delay)
        time.sleep(delay)

    def _count_failure(self) -> None:
        with self._lock:
            self.chat_stats.failures += 1


# ---- option checks (messages never echo values that could be secrets) ------------------------------------------
def _reject_unknown(unknown: Mapping[str, Any]) -> None:
    if "api_key" in unknown:
        raise ConfigError(
            "openai opponent: api_key is not an option; put the key in an environment variable and name it "
            "with api_key_env"
        )
    if unknown:
        raise ConfigError(
            f"openai opponent: unknown option {sorted(unknown)[0]!r}; allowed options: {_OPTIONS}"
        )


def _check_url(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            "openai opponent: base_url must be a non-empty http(s) URL, e.g. http://127.0.0.1:8000/v1"
        )
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"openai opponent: base_url={_redact_url(url)!r} must start with http:// or https:// and name a host"
        )
    return url


def _redact_url(url: str) -> str:
    """The URL without user:password@ and without a query string (either may carry a credential)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _check_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"openai opponent: {name}={value!r} must be a non-empty string")
    return value.strip()


def _check_env_name(value: object) -> str:
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        raise ConfigError(
            "openai opponent: api_key_env must be the NAME of an environment variable (letters, digits, "
            "underscore), e.g. OPENAI_API_KEY — never the key itself"
        )
    return value


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"openai opponent: {name}={value!r} must be an integer >= {low}")
    return value


def _check_number(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(
            f"openai opponent: {name}={value!r} is out of range; allowed: {low:g} <= {name} <= {high:g}"
        )
    return float(value)


def _check_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"openai opponent: {name}={value!r} must be a number of seconds > 0")
    return float(value)


def _check_extra_body(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ConfigError(
            "openai opponent: extra_body must be a dict with string keys (merged into the request JSON)"
        )
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise ConfigError(
            "openai opponent: extra_body must hold only JSON values (str, number, bool, None, list, dict)"
        ) from None
    return dict(value)
