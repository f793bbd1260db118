"""Atomic file writes for everything in a run folder.

A file is written to a hidden sibling, flushed to disk, then renamed over the target: a kill at any moment leaves
either the old file or the new one, never a truncated mix. Hidden siblings are created with plain `open`, so the
umask applies (mkstemp would make files readable by their owner only).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

TEMP_PREFIX = "."


def hidden_sibling(path: str | os.PathLike) -> Path:
    """A fresh hidden name next to `path` (`.NAME-xxxxxxxxxxxx`)."""
    p = Path(path)
    return p.parent / f"{TEMP_PREFIX}{p.name}-{uuid.uuid4().hex[:12]}"


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename inside `folder` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Replace `path` by `data` atomically (temp file + fsync + rename + directory fsync)."""
    target = Path(path)
    tmp = hidden_sibling(target)
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """`write_bytes_atomic` of UTF-8 text."""
    write_bytes_atomic(path, text.encode("utf-8"))
