"""Rendered `<response>` fragments of calendar items, kept per item version.

A fragment is named by the listing it belongs to (the "shape": prefix, path,
properties, user, rights) and by the item row it was rendered from (href, etag,
component and, when asked for, modification time and length), joined into one
string: a changed item is a new row, so a fragment is never stale. Each listing
keeps only the fragments of the items it had last time; whole listings are
evicted, least recently used first, beyond `max_bytes`. A listing's size is
what Python holds for it (`listing_size`: the dict, its keys and fragments), and
a listing bigger than the bound is rendered but not kept. `stream` gives the
fragments one at a time, so that an answer written as they come holds none of them.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence

Row = Sequence[object]
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
SEPARATOR = "\x00"  # in no href, etag or date


def row_key(row: Row) -> str:
    return SEPARATOR.join(map(str, row))


def listing_size(kept: dict[str, bytes]) -> int:
    """Bytes of memory a listing's fragments take (the dict, its keys and values)."""
    return sys.getsizeof(kept) + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in kept.items())


class FragmentCache:
    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._max_bytes = max_bytes
        self._listings: OrderedDict[Hashable, tuple[dict[str, bytes], int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._size

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    def fragments(self, shape: Hashable, rows: Iterable[Row],
                  render: Callable[[Row], bytes]) -> list[bytes]:
        """The fragment of each row, in order: cached ones reused, the others rendered."""
        return [fragment for fragment, _ in self.stream(shape, rows, render)]

    def stream(self, shape: Hashable, rows: Iterable[Row], render: Callable[[Row], bytes],
               expected: int | None = None) -> Iterator[tuple[bytes, bool]]:
        """The fragments one by one, as `fragments`, each with whether the listing is still
        gathered to be kept (it is kept once they all went: who holds on to its fragments
        meanwhile holds no more than the cache will). With `expected` (the number of rows),
        a listing that will not fit is not gathered at all: only the fragments of the
        listing kept last time are held meanwhile."""
        with self._lock:
            old, old_size = self._listings.pop(shape, ({}, 0))
            self._size -= old_size
        kept: dict[str, bytes] | None = {}
        size = sys.getsizeof(kept)
        for row in rows:
            key = row_key(row)
            fragment = old.pop(key, None) or render(row)
            if kept is not None:
                kept[key] = fragment
                size += sys.getsizeof(key) + sys.getsizeof(fragment)
                if size > self._max_bytes or (
                        expected is not None and len(kept) == 1 and size * expected > self._max_bytes):
                    kept = None  # too big to keep: rendered for this answer alone
            yield fragment, kept is not None
        del old
        if kept is not None:
            self._keep(shape, kept, size + sys.getsizeof(kept) - sys.getsizeof({}))

    def _keep(self, shape: Hashable, kept: dict[str, bytes], size: int) -> None:
        """A listing's fragments kept (`size`: the table grown with the listing counted)."""
        if size > self._max_bytes:
            return
        with self._lock:
            previous = self._listings.pop(shape, None)
            if previous is not None:
                self._size -= previous[1]
            self._listings[shape] = (kept, size)
            self._size += size
            while self._size > self._max_bytes and self._listings:
                _, (_, evicted) = self._listings.popitem(last=False)
                self._size -= evicted

    def clear(self) -> None:
        with self._lock:
            self._listings.clear()
            self._size = 0
