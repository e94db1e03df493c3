"""Read files out of a compiled Qt resource (``.rcc``), the way Debian's ``gcompris-qt-data`` ships its images.

GCompris keeps its photographs inside ``/usr/share/gcompris-qt/rcc/*.rcc``; Python has no maintained
reader for the format, and it is small: a header (``qres``, version, and the offsets of the tree,
data and names sections), a tree of 14- or 22-byte nodes, UTF-16 names and length-prefixed data,
zlib-compressed where Qt found that smaller (``qCompress``: a 4-byte length, then the stream).
The layout follows Qt's ``rcc.cpp`` (``RCCResourceLibrary::writeDataStructure``).
"""

from __future__ import annotations

import os
import struct
import zlib
from functools import cached_property, lru_cache
from pathlib import Path

__all__ = ["members", "read_member"]

_COMPRESSED, _DIRECTORY, _ZSTD = 0x1, 0x2, 0x4


class _Resource:
    def __init__(self, raw: bytes, path: Path):
        if raw[:4] != b"qres":
            raise ValueError(f"{path} is not a compiled Qt resource (it does not start with 'qres')")
        self.raw, self.path = raw, path
        version, self.tree, self.data, self.names = struct.unpack(">iiii", raw[4:20])
        if version not in (1, 2, 3):
            raise ValueError(f"{path}: Qt resource format version {version} is not one this reader knows (1-3)")
        self.node_size = 14 if version == 1 else 22  # version 2 added an 8-byte modification time

    def _name(self, offset: int) -> str:
        at = self.names + offset
        (length,) = struct.unpack(">H", self.raw[at:at + 2])
        return self.raw[at + 6:at + 6 + 2 * length].decode("utf-16-be")  # skips the 4-byte name hash

    @cached_property
    def files(self) -> dict[str, tuple[int, int]]:
        """Every file's path (``a/b/c.webp``) with its node's flags and data offset (walked once)."""
        out: dict[str, tuple[int, int]] = {}
        pending = [(0, "")]
        while pending:
            index, prefix = pending.pop()
            at = self.tree + index * self.node_size
            name_offset, flags = struct.unpack(">iH", self.raw[at:at + 6])
            path = f"{prefix}{self._name(name_offset)}" if index else ""
            if flags & _DIRECTORY:
                count, first = struct.unpack(">ii", self.raw[at + 6:at + 14])
                pending += [(child, f"{path}/" if path else "") for child in range(first, first + count)]
            else:
                out[path] = (flags, struct.unpack(">i", self.raw[at + 10:at + 14])[0])
        return out

    def read(self, member: str) -> bytes:
        if member not in self.files:
            raise KeyError(f"{self.path} holds no file {member!r} ({len(self.files)} files in it)")
        flags, offset = self.files[member]
        at = self.data + offset
        (size,) = struct.unpack(">I", self.raw[at:at + 4])
        blob = self.raw[at + 4:at + 4 + size]
        if flags & _ZSTD:
            raise ValueError(f"{self.path}:{member} is zstd-compressed, which this reader does not decode")
        return zlib.decompress(blob[4:]) if flags & _COMPRESSED else blob


@lru_cache(maxsize=8)
def _open(path: str, mtime: float) -> _Resource:
    return _Resource(Path(path).read_bytes(), Path(path))


def _resource(path: str | os.PathLike) -> _Resource:
    path = os.fspath(path)
    return _open(path, os.stat(path).st_mtime)


def members(path: str | os.PathLike) -> list[str]:
    """The paths of the files inside the resource at ``path``, sorted."""
    return sorted(_resource(path).files)


def read_member(path: str | os.PathLike, member: str) -> bytes:
    """The bytes of the file ``member`` (as listed by :func:`members`) inside the resource at ``path``."""
    return _resource(path).read(member)
