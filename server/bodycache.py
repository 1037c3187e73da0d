"""Rendered bodies (feeds, whole calendars) by a key that names their content.

The key changes whenever the content can (an ETag, a collection's sync_seq), so a
process never serves stale data and no other process needs to see this cache.
Beside a body the cache keeps its gzip, made once on the first request that
accepts gzip. A body too big to hold in full is kept as its gzip alone (`Packed`)
and served to clients without gzip by inflating it as it is written out
(`Inflating`). A big answer made of many small pieces is held the same way until it is
sent (`Spool`). The bound is in bytes of memory (both forms counted, as Python
holds them); the least recently used entries go first.
"""

from __future__ import annotations

import gzip
import io
import sys
import threading
import zlib
from collections import OrderedDict
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

Body = TypeVar("Body", str, bytes)
GZIP_LEVEL = 6  # zlib's default: what Radicale's own compression makes
FAST_LEVEL = 1  # a body kept compressed for a client that did not ask for gzip
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

    def __init__(self, level: int = GZIP_LEVEL) -> None:
        # zlib's default memory level (8) for the gzip that is sent; the fast one, held only
        # until it is inflated, is quicker (both ways) and no bigger with the largest (9)
        memory_level = 8 if level == GZIP_LEVEL else 9
        self._deflate = zlib.compressobj(level, zlib.DEFLATED, GZIP_WBITS, memory_level)
        self._out: list[bytes] = []
        self.length = 0

    def write(self, data: bytes) -> None:
        self.length += len(data)
        packed = self._deflate.compress(data)
        if packed:
            self._out.append(packed)

    def finish(self) -> Packed:
        self._out.append(self._deflate.flush())
        joined = io.BytesIO()  # each chunk let go of once copied: the gzip is not held twice
        self._out.reverse()
        while self._out:
            joined.write(self._out.pop())
        return Packed(joined.getvalue(), self.length)  # (getvalue does not copy)

    def finish_in_chunks(self) -> GzipChunks:
        """The gzip as the chunks zlib made (never joined into one bytes object)."""
        self._out.append(self._deflate.flush())
        return GzipChunks(self._out, self.length)


@dataclass(frozen=True)
class Packed:
    """A body kept as its gzip alone, with its length once inflated."""

    gzipped: bytes
    length: int

    def inflating(self) -> Inflating:
        return Inflating(self)

    def inflated(self) -> bytes:
        """The plain body, made in one buffer of its size (no copy of it on the way)."""
        return zlib.decompress(self.gzipped, GZIP_WBITS, max(self.length, 1))


class Streamed:
    """A body written out chunk by chunk whose length is known first (its Content-Length)."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __iter__(self) -> Iterator[bytes]:
        raise NotImplementedError


class Spool:
    """An answer written in many small pieces and held compactly until it is sent: as plain
    bytes (joined INFLATE_OUTPUT at a time) up to `plain_limit`, beyond that as its gzip
    alone, so that a big answer takes a fraction of its size in memory. `finish` gives the
    plain answer (bytes, or `PlainChunks`: its groups, never joined), or `GzipChunks` (the
    same bytes as the gzip of the plain answer at `level`; at GZIP_LEVEL, what Radicale's
    compression of it makes)."""

    def __init__(self, plain_limit: int, level: int = GZIP_LEVEL) -> None:
        self._plain_limit = plain_limit
        self._level = level
        self._groups: list[bytes] = []  # joined pieces, while the answer is small
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._held = 0  # plain bytes in _groups
        self._writer: GzipWriter | None = None

    def write(self, piece: bytes) -> None:
        self._pending.append(piece)
        self._pending_size += len(piece)
        if self._pending_size >= INFLATE_OUTPUT:
            self._flush()

    def _flush(self) -> None:
        group = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        if self._writer is None:
            self._groups.append(group)
            self._held += len(group)
            if self._held <= self._plain_limit:
                return
            self._writer = GzipWriter(self._level)
            self._groups.reverse()
            while self._groups:  # each group let go of once compressed
                self._writer.write(self._groups.pop())
            return
        self._writer.write(group)

    def finish(self) -> bytes | PlainChunks | GzipChunks:
        if self._writer is None:  # not joined: the groups as they are
            groups = [*self._groups, b"".join(self._pending)]
            self._groups.clear()
            self._pending.clear()
            return groups[0] if len(groups) == 1 else PlainChunks(groups)
        if self._pending:
            self._flush()
        return self._writer.finish_in_chunks()


class PlainChunks(Streamed):
    """A body kept as the pieces it was written in, never joined: written out in chunks of
    about INFLATE_OUTPUT bytes."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self._length = sum(map(len, chunks))

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator[bytes]:
        group: list[bytes] = []
        size = 0
        for piece in self.chunks:
            group.append(piece)
            size += len(piece)
            if size >= INFLATE_OUTPUT:
                yield b"".join(group)
                group, size = [], 0
        if group:
            yield b"".join(group)


class GzipChunks(Streamed):
    """A body's gzip kept as the chunks zlib made, with its length once inflated: written out
    as they are (its len() is the gzip's length), or inflated (`inflating`)."""

    def __init__(self, chunks: list[bytes], length: int) -> None:
        self.chunks = chunks
        self.length = length
        self._gzip_length = sum(map(len, chunks))

    def __len__(self) -> int:
        return self._gzip_length

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def inflating(self) -> Inflating:
        return Inflating(self)


def _gzip_input(packed: Packed | GzipChunks) -> Iterator[bytes]:
    if isinstance(packed, GzipChunks):
        yield from packed.chunks
        return
    view = memoryview(packed.gzipped)
    for start in range(0, len(view), INFLATE_INPUT):
        yield view[start:start + INFLATE_INPUT].tobytes()


class Inflating(Streamed):
    """The plain body of a `Packed` (or `GzipChunks`), inflated chunk by chunk as it is
    written out; its len() is the plain length (the answer's Content-Length)."""

    def __init__(self, packed: Packed | GzipChunks) -> None:
        self._packed = packed

    def __len__(self) -> int:
        return self._packed.length

    def __iter__(self) -> Iterator[bytes]:
        inflater = zlib.decompressobj(GZIP_WBITS)
        for data in _gzip_input(self._packed):
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

    def put(self, key: Hashable, body: Body | Packed, gzipped: bytes | None = None) -> None:
        """Keep `body` (and its gzip, when it was made already)."""
        entry = _Entry(body, None if isinstance(body, Packed) else gzipped)
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
