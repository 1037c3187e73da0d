"""Rendered bodies (feeds, whole calendars) by a key that names their content.

The key changes whenever the content can (an ETag, a collection's sync_seq), so a
process never serves stale data and no other process needs to see this cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

Body = TypeVar("Body", str, bytes)


class BodyCache(Generic[Body]):
    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._max_bytes = max_bytes
        self._bodies: OrderedDict[Hashable, Body] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Body | None:
        with self._lock:
            body = self._bodies.get(key)
            if body is not None:
                self._bodies.move_to_end(key)
            return body

    def put(self, key: Hashable, body: Body) -> None:
        if len(body) > self._max_bytes:
            return
        with self._lock:
            if key in self._bodies:
                return
            self._bodies[key] = body
            self._size += len(body)
            while self._size > self._max_bytes:
                _, evicted = self._bodies.popitem(last=False)
                self._size -= len(evicted)
