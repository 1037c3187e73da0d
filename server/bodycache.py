"""Rendered bodies (feeds, whole calendars) by a key that names their content.

The key changes whenever the content can (an ETag, a collection's sync_seq), so a
process never serves stale data and no other process needs to see this cache.
Beside a body the cache keeps its gzip, made once on the first request that
accepts gzip. The bound is in bytes of memory (both forms counted, as Python
holds them); the least recently used entries go first.
"""

from __future__ import annotations

import gzip
import sys
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

Body = TypeVar("Body", str, bytes)
GZIP_LEVEL = 6


def memory_size(value: str | bytes) -> int:
    """Bytes of memory the object takes (header included): what the bound counts."""
    return sys.getsizeof(value)


def gzip_body(body: str | bytes) -> bytes:
    data = body.encode("utf-8") if isinstance(body, str) else body
    return gzip.compress(data, compresslevel=GZIP_LEVEL, mtime=0)


@dataclass
class _Entry(Generic[Body]):
    body: Body
    gzipped: bytes | None = None

    @property
    def size(self) -> int:
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

    def get(self, key: Hashable) -> Body | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry.body

    def put(self, key: Hashable, body: Body) -> None:
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
