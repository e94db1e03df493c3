"""Where zfkit keeps files, and how it writes them so that no reader ever sees half a file.

The bottom layer of the package (it imports nothing of zfkit): checkpoints, the zoo, the
EfficientNet weights cache, the study records and the results JSON all write through
:func:`atomic_write_bytes`, and every cache lives under :func:`cache_dir`.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

__all__ = ["TMP_PREFIX", "cache_dir", "atomic_write_bytes", "write_durably", "fsync_dir"]

#: Prefix of the temporary files and folders a write goes through before its rename.
TMP_PREFIX = ".tmp-"


def cache_dir() -> Path:
    """``$ZFKIT_CACHE``, else ``~/.cache/zfkit``: trained models, converted weights."""
    return Path(os.environ.get("ZFKIT_CACHE") or "~/.cache/zfkit").expanduser()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write one file atomically: a temp file in the same folder, fsync, then ``os.replace``."""
    path = Path(path)
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}")
    try:
        write_durably(tmp, data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return path


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and flush it to disk before returning."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable, where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
