"""Rendered bodies (feeds, whole calendars) by a key that names their content.

The key changes whenever the content can (an ETag, a collection's sync_seq), so a
process never serves stale data and no other process needs to see this cache.
Beside a body the cache keeps its gzip, made once on the first request that
accepts gzip. A body too big to hold in full is kept as its gzip alone (`Packed`)
and served to clients without gzip by inflating it as it is written out
(`Inflating`). The bound is in bytes of memory (both forms counted, as Python
holds them); the least recently used entries go first.
"""

from __future__ import annotations

import gzip
import sys
import threading
import zlib
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

Body = TypeVar("Body", str, bytes)
GZIP_LEVEL = 6
GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header with no time: what gzip.compress(mtime=0) writes
INFLATE_INPUT = 16 * 1024  # compressed bytes read at a time
INFLATE_OUTPUT = 64 * 1024  # at most this much plain text per chunk written out


def memory_size(value: str | bytes) -> int:
    """Bytes of memory the object takes (header included): what the bound counts."""
    return sys.getsizeof(value)


def gzip_body(body: str | bytes) -> bytes:
    data = body.encode("utf-8") if isinstance(body, str) else body
    return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)  # zlib with GZIP_WBITS


class GzipWriter:
    """gzip made piece by piece: the same bytes as `gzip_body` of the pieces joined."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, GZIP_WBITS)
        self._out: list[bytes] = []
        self.length = 0

    def write(self, data: bytes) -> None:
        self.length += len(data)
        packed = self._deflate.compress(data)
        if packed:
            self._out.append(packed)

    def finish(self) -> Packed:
        self._out.append(self._deflate.flush())
        return Packed(b"".join(self._out), self.length)


@dataclass(frozen=True)
class Packed:
    """A body kept as its gzip alone, with its length once inflated."""

    gzipped: bytes
    length: int

    def inflating(self) -> Inflating:
        return Inflating(self)


class Streamed:
    """A body written out chunk by chunk whose length is known first (its Content-Length)."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __iter__(self) -> Iterator[bytes]:
        raise NotImplementedError


class Pieces(Streamed):
    """Many small pieces written out in chunks of about INFLATE_OUTPUT bytes, never joined
    into one body."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = pieces
        self._length = sum(map(len, pieces))

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        group: list[bytes] = []
        size = 0
        for piece in self._pieces:
            group.append(piece)
            size += len(piece)
            if size >= INFLATE_OUTPUT:
                yield b"".join(group)
                group, size = [], 0
        if group:
            yield b"".join(group)


class Inflating(Streamed):
    """The plain body of a `Packed`, inflated chunk by chunk as it is written out; its len()
    is the plain length (the answer's Content-Length)."""

    def __init__(self, packed: Packed) -> None:
        self._packed = packed

    def __len__(self) -> int:
        return self._packed.length

    def __iter__(self) -> Iterator[bytes]:
        inflater = zlib.decompressobj(GZIP_WBITS)
        view = memoryview(self._packed.gzipped)
        for start in range(0, len(view), INFLATE_INPUT):
            data: bytes = view[start:start + INFLATE_INPUT].tobytes()
            while data:
                out = inflater.decompress(data, INFLATE_OUTPUT)
                if out:
                    yield out
                data = inflater.unconsumed_tail
        rest = inflater.flush()
        if rest:
            yield rest


@dataclass
class _Entry(Generic[Body]):
    body: Body | Packed
    gzipped: bytes | None = None

    @property
    def size(self) -> int:
        if isinstance(self.body, Packed):
            return memory_size(self.body.gzipped) + sys.getsizeof(self.body)
        return memory_size(self.body) + (0 if self.gzipped is None else memory_size(self.gzipped))


class BodyCache(Generic[Body]):
    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, _Entry[Body]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def size(self) -> int:
        """Bytes held now (bodies and their gzip)."""
        return self._size

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> Body | Packed | None:
        """The body under `key` (a `Packed` when it was kept as gzip alone)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry.body

    def put(self, key: Hashable, body: Body | Packed) -> None:
        entry = _Entry(body)
        if entry.size > self._max_bytes:
            return
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = entry
            self._size += entry.size
            self._evict()

    def gzipped(self, key: Hashable) -> bytes | None:
        """The gzip of the body under `key`, made once and kept beside it; None if not cached."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            if isinstance(entry.body, Packed):
                return entry.body.gzipped
            if entry.gzipped is not None:
                return entry.gzipped
            body = entry.body
        packed = gzip_body(body)  # outside the lock: other requests go on meanwhile
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.gzipped is None:
                entry.gzipped = packed
                self._size += memory_size(packed)
                self._evict(keep=key)
        return packed

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._size = 0

    def _evict(self, keep: Hashable | None = None) -> None:
        while self._size > self._max_bytes and self._entries:
            oldest = next(iter(self._entries))
            if oldest == keep and len(self._entries) == 1:
                dropped = self._entries.pop(oldest)
            else:
                if oldest == keep:
                    self._entries.move_to_end(oldest)
                    oldest = next(iter(self._entries))
                dropped = self._entries.pop(oldest)
            self._size -= dropped.size
