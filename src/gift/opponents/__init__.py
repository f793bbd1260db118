"""Opponents: the shared interface, the retry policy, and turning an option value into an opponent."""

from __future__ import annotations

import inspect
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
    allowed = ", ".join([*bots, "openai"])
    if not isinstance(kind, str):
        raise ConfigError(f"{where}: opponent kind={kind!r} must be a name; allowed: {allowed}")
    if kind == "self" and kwargs:
        raise ConfigError(f"{where}: opponent 'self' (self-play) takes no options; got {', '.join(kwargs)}")
    if kind == "openai":
        from gift.opponents.openai_client import OpenAIChatOpponent

        check_options(where, kind, OpenAIChatOpponent, kwargs, strict=True)
        return OpenAIChatOpponent(**kwargs)
    if kind not in bots:
        raise ConfigError(f"{where}: unknown opponent {kind!r}; allowed: {allowed}")
    check_options(where, kind, bots[kind], kwargs)
    try:
        return bots[kind](**kwargs)
    except TypeError as err:
        raise ConfigError(f"{where}: bad options for opponent {kind!r}: {err}") from None


def check_options(
    where: str, kind: str, factory: Callable[..., Any], options: Mapping[str, Any], strict: bool = False
) -> None:
    """Unknown and missing options of an opponent are one line naming them and what is allowed, not the
    TypeError of its constructor. A factory taking **kwargs accepts any name unless `strict`."""
    params = list(inspect.signature(factory).parameters.values())
    named = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
    unknown = [k for k in options if k not in named]
    if unknown and (strict or not takes_any):
        raise ConfigError(
            f"{where}: unknown option {unknown[0]!r} for opponent {kind!r}; "
            f"allowed options: {', '.join(named) or '(none)'}"
        )
    missing = [p.name for p in params if p.name in named and p.default is p.empty and p.name not in options]
    if missing:
        example = ", ".join(f"{name}: ..." for name in missing)
        raise ConfigError(
            f"{where}: opponent {kind!r} needs {' and '.join(missing)}, e.g. {{kind: {kind}, {example}}}"
        )
