"""Opponents: the shared interface, the retry policy, and turning an option value into an opponent."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gift.errors import ConfigError
from gift.opponents.base import (
    DEFAULT_TRIES,
    Opponent,
    OpponentError,
    OpponentRequest,
    OpponentStats,
    ask_with_retries,
)

__all__ = [
    "DEFAULT_TRIES",
    "Opponent",
    "OpponentError",
    "OpponentRequest",
    "OpponentStats",
    "ask_with_retries",
    "resolve_opponent",
]


def resolve_opponent(
    value: Opponent | str | Mapping[str, Any], bots: Mapping[str, Callable[..., Opponent]], where: str
) -> Opponent:
    """An `Opponent` from a game option: an instance, a bot name, or {"kind": name, **kwargs}.

    The kind "openai" builds an OpenAI-compatible chat client (see `gift.opponents.openai_client`) from the
    remaining keys; any other kind must be one of the game's scripted `bots`.
    """
    if isinstance(value, Opponent):
        return value
    if isinstance(value, str):
        kind, kwargs = value, {}
    elif isinstance(value, Mapping) and "kind" in value:
        kind, kwargs = value["kind"], {k: v for k, v in value.items() if k != "kind"}
    else:
        raise ConfigError(f"{where}: opponent={value!r} must be a bot name, an Opponent or {{'kind': ...}}")
    if kind == "openai":
        from gift.opponents.openai_client import OpenAIChatOpponent

        return OpenAIChatOpponent(**kwargs)
    if kind not in bots:
        allowed = ", ".join([*bots, "openai"])
        raise ConfigError(f"{where}: unknown opponent {kind!r}; allowed: {allowed}")
    try:
        return bots[kind](**kwargs)
    except TypeError as err:
        raise ConfigError(f"{where}: bad options for opponent {kind!r}: {err}") from None
