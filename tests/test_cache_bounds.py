"""Every per-process cache stays within its bound in bytes, counted as Python holds it.

Each test fills a cache well past its bound with entries made while tracemalloc traces
(only the cache keeps them), then checks the cache's own count (`size`) against its
bound and the memory actually retained against the same bound.
"""

from __future__ import annotations

import datetime as dt
import gc
import os
import sys
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from plugins.radicale.propfind_cache import FragmentCache, listing_size
from server import timesql
from server.bodycache import BodyCache, GzipWriter
from server.busy import ExpansionCache
from server.db import SQLITE_PAGE_CACHE_KIB, Database
from server.freebusy import PlainCache

SLACK = 64 * 1024  # what tracemalloc sees besides the cache (frames, interned names)


@contextmanager
def retained() -> Iterator[Callable[[], int]]:
    """Bytes allocated inside the block and still held when read."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    try:
        def now() -> int:
            gc.collect()
            return tracemalloc.get_traced_memory()[0] - base
        yield now
    finally:
        tracemalloc.stop()


def test_body_cache_bodies_gzips_and_packed_bodies() -> None:
    bound = 600_000
    cache: BodyCache[bytes] = BodyCache(bound)
    with retained() as held:
        for n in range(60):
            body = (f"BEGIN:VEVENT\r\nUID:{n}-%d\r\nEND:VEVENT\r\n" * 2000).encode() % tuple(
                range(2000)) if n % 3 else os.urandom(30_000)
            cache.put(n, body)
            cache.gzipped(n)
            if n % 5 == 0:
                writer = GzipWriter()
                writer.write(os.urandom(40_000))
                cache.put(("packed", n), writer.finish())
            del body
            assert cache.size <= bound
        assert held() <= bound + SLACK
    assert len(cache) > 3


def _event(n: int) -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:single-{n}@example.test\r\nDTSTAMP:20300101T000000Z\r\n"
            f"DTSTART:20300101T{n % 24:02d}0000Z\r\nDTEND:20300101T{n % 24:02d}3000Z\r\n"
            f"SUMMARY:Visit number {n}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


def test_single_event_cache() -> None:
    bound = 60_000
    cache = PlainCache(max_bytes=bound)
    PlainCache().get("warm-up", _event(-1))  # the parser's own first-use tables, not the cache's
    with retained() as held:
        for n in range(600):
            assert cache.get(f"etag-{n:08d}-{'x' * 24}", _event(n))
            assert cache.size <= bound
        assert held() <= bound + SLACK
    assert cache.size > bound * 0.9  # it fills up to the bound


def _series(uid: str) -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTAMP:20300101T000000Z\r\nDTSTART:20300101T090000Z\r\n"
            "DTEND:20300101T100000Z\r\nSUMMARY:Daily stand-up\r\nRRULE:FREQ=DAILY\r\n"
            "END:VEVENT\r\nEND:VCALENDAR\r\n")


def test_expansion_cache() -> None:
    bound = 250_000
    cache = ExpansionCache(max_bytes=bound)
    ExpansionCache().get("warm-up", _series("w"), dt.date(2030, 3, 1))  # the parser's own tables
    with retained() as held:
        for n in range(7):
            assert cache.get(f"etag-{n}", _series(f"s-{n}"), dt.date(2030, 3, 1)).occurrences
            assert cache.size <= bound
        assert held() <= bound + SLACK


def _render(row: Sequence[object]) -> bytes:
    return (f"<D:response><D:href>/dav/tech/personal/{row[0]}</D:href><D:propstat><D:prop>"
            f"<D:getetag>{row[1]}</D:getetag></D:prop></D:propstat></D:response>").encode()


def _rows(listing: int, count: int) -> Iterator[tuple[object, ...]]:
    for n in range(count):
        yield (f"event-{listing}-{n:06d}.ics", f'"{n:032x}"', "VEVENT")


def test_fragment_cache_counts_what_it_holds() -> None:
    bound = 1_000_000
    cache = FragmentCache(max_bytes=bound)
    with retained() as held:
        for listing in range(12):
            cache.fragments(("listing", listing), _rows(listing, 1000), _render)
            assert cache.size <= bound
        assert held() <= bound + SLACK
        one = FragmentCache(max_bytes=bound)
        before = held()
        one.fragments("one", _rows(99, 1000), _render)
        kept = one._listings["one"][0]
        assert held() - before <= one.size + SLACK  # the count is not below the truth
        assert one.size == listing_size(kept)
    big = FragmentCache(max_bytes=50_000)  # a listing bigger than the bound is not kept
    assert len(big.fragments("big", _rows(0, 1000), _render)) == 1000 and big.size == 0


def test_time_zone_conversion_caches() -> None:
    timesql._cached_local.cache_clear()
    timesql._cached_utc.cache_clear()
    zone = "America/Argentina/ComodRivadavia"  # one of the longest IANA names
    base = dt.datetime(2020, 1, 1)
    with retained() as held:
        for n in range(timesql.CACHED_CALLS + 500):
            stamp = (base + dt.timedelta(minutes=n)).strftime(timesql.SQLITE_FORMAT)
            assert timesql.sqlite_local(stamp, zone) is not None
            assert timesql.sqlite_utc(stamp, zone + "-" * 31) is None  # 64 characters, unknown
        assert timesql._cached_local.cache_info().currsize == timesql.CACHED_CALLS
        assert held() <= 2 * timesql.CACHE_BYTES + SLACK
    long_zone = "Europe/" + "x" * 100
    assert timesql.sqlite_local("2020-01-01 00:00:00.000000", long_zone) is None
    assert timesql._known_zone.cache_info().currsize <= 256
    assert sys.getsizeof(long_zone) > timesql.MAX_ZONE  # (the long name was not cached)


def test_sqlite_page_cache_per_connection(tmp_path: Path) -> None:
    """Each SQLite connection of a worker (one per thread) caches at most this many KiB."""
    database = Database(f"sqlite:///{tmp_path / 'bounds.sqlite3'}")
    try:
        with database.read() as session:
            size = session.connection().exec_driver_sql("PRAGMA cache_size").scalar()
        assert size == -SQLITE_PAGE_CACHE_KIB and SQLITE_PAGE_CACHE_KIB <= 1024
    finally:
        database.dispose()
