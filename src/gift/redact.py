"""Secrets never reach a file or a log: credentials in URLs and secret-named keys are masked.

Applied to every config that is written next to a run or sent to a tracker (`gift.config.config_to_dict`). A
resumed run that would read a masked value back is refused with one line (`find_redacted`).
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***"
# `scheme://user:password@host`: the user-info part, up to the first '@' before any '/', whitespace or '@'.
_URL_USERINFO = re.compile(r"://[^/@\s]+@")
_SECRET_KEY = re.compile(r"(?i)(api_?key|password|passwd|secret|token)$")


def redact_text(text: str) -> str:
    """`text` with the user-info of every URL replaced by ***."""
    return _URL_USERINFO.sub(f"://{REDACTED}@", text)


def redact(value: Any) -> Any:
    """A copy of plain config data with URL credentials and values of secret-named keys masked."""
    if isinstance(value, dict):
        return {
            k: (REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) and v else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def find_redacted(value: Any, where: str = "") -> str | None:
    """The dotted key of the first masked value in `value`, or None."""
    if isinstance(value, dict):
        for k, v in value.items():
            found = find_redacted(v, f"{where}.{k}" if where else str(k))
            if found:
                return found
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = find_redacted(v, f"{where}[{i}]")
            if found:
                return found
    elif isinstance(value, str) and (value == REDACTED or f"://{REDACTED}@" in value):
        return where or "value"
    return None
