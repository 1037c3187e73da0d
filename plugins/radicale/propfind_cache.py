"""Rendered `<response>` fragments of calendar items, kept per item version.

A fragment is named by the listing it belongs to (the "shape": prefix, path,
properties, user, rights) and by the item row it was rendered from (href, etag,
component and, when asked for, modification time and length): a changed item
is a new row, so a fragment is never stale. Each listing keeps only the
fragments of the items it had last time; whole listings are evicted, least
recently used first, beyond `max_bytes`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence

Row = Sequence[object]
DEFAULT_MAX_BYTES = 48 * 1024 * 1024


class FragmentCache:
    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._max_bytes = max_bytes
        self._listings: OrderedDict[Hashable, tuple[dict[Row, bytes], int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._size

    def fragments(self, shape: Hashable, rows: Iterable[Row],
                  render: Callable[[Row], bytes]) -> list[bytes]:
        """The fragment of each row, in order: cached ones reused, the others rendered."""
        with self._lock:
            old, old_size = self._listings.pop(shape, ({}, 0))
            self._size -= old_size
        rows = list(rows)
        found = old.get
        out = [found(row) or render(row) for row in rows]
        kept = dict(zip(rows, out, strict=True))
        size = sum(map(len, out)) + 64 * len(out)  # the keys and the dict, roughly
        if size > self._max_bytes:
            return out
        with self._lock:
            previous = self._listings.pop(shape, None)
            if previous is not None:
                self._size -= previous[1]
            self._listings[shape] = (kept, size)
            self._size += size
            while self._size > self._max_bytes and self._listings:
                _, (_, evicted) = self._listings.popitem(last=False)
                self._size -= evicted
        return out

    def clear(self) -> None:
        with self._lock:
            self._listings.clear()
            self._size = 0
