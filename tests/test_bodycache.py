"""The per-process caches: bounded in bytes of memory (bodies and their gzip; recurrence
expansions), gzip made once."""

from __future__ import annotations

import datetime as dt
import gzip
import os

from server.bodycache import BodyCache, Packed, memory_size
from server.busy import EXPANSIONS, ExpansionCache
from server.busy import memory_size as expansion_size


def test_bound_in_bytes_holds_with_gzip_beside() -> None:
    cache: BodyCache[str] = BodyCache(max_bytes=200_000)
    for n in range(40):
        body = f"BEGIN:VEVENT {n}\r\n" * 1500  # ~25 KB of text each
        cache.put(("calendar", n), body)
        assert cache.gzipped(("calendar", n)) is not None
        assert cache.size <= cache.max_bytes
    assert 0 < len(cache) < 40

    def held_body(n: int) -> str:
        body = cache.get(("calendar", n))
        assert not isinstance(body, Packed), "only plain bodies were put"
        return body or ""

    held = sum(memory_size(held_body(n)) for n in range(40))
    assert held <= cache.max_bytes


def test_gzip_is_made_once_and_decompresses_to_the_body() -> None:
    cache: BodyCache[str] = BodyCache(max_bytes=1_000_000)
    cache.put("k", "abc é\r\n" * 100)
    first = cache.gzipped("k")
    assert first is not None and gzip.decompress(first).decode() == "abc é\r\n" * 100
    assert cache.gzipped("k") is first
    assert cache.gzipped("missing") is None


def test_body_larger_than_the_bound_is_not_kept() -> None:
    cache: BodyCache[bytes] = BodyCache(max_bytes=10_000)
    cache.put("big", os.urandom(20_000))
    assert cache.get("big") is None and cache.size == 0


def test_least_recently_used_goes_first() -> None:
    cache: BodyCache[bytes] = BodyCache(max_bytes=3 * memory_size(b"x" * 1000) + 10)
    for key in "abc":
        cache.put(key, key.encode() * 1000)
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("d", b"d" * 1000)
    assert cache.get("b") is None and cache.get("a") is not None


def _series(uid: str) -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTAMP:20300101T000000Z\r\nDTSTART:20300101T090000Z\r\n"
            "DTEND:20300101T100000Z\r\nSUMMARY:Daily stand-up\r\nRRULE:FREQ=DAILY\r\n"
            "END:VEVENT\r\nEND:VCALENDAR\r\n")


def test_expansion_cache_is_bounded_in_bytes() -> None:
    cache = ExpansionCache(max_bytes=400_000)
    day = dt.date(2030, 3, 1)
    first = cache.get("etag-0", _series("s-0"), day)
    one = expansion_size(first)
    assert len(first.occurrences) > 300 and one > 50_000  # a year of a daily series
    for n in range(12):
        found = cache.get(f"etag-{n}", _series(f"s-{n}"), day)
        assert found.occurrences and cache.size <= 400_000
    assert cache.size > 400_000 - one  # it fills up to the bound, and no further
    again = cache.between("etag-11", _series("s-11"), EXPANSIONS.first_moment(day),
                          EXPANSIONS.first_moment(day) + dt.timedelta(days=7))
    assert [o.starts_at.date() for o in again.occurrences][:7] == [
        day + dt.timedelta(days=i) for i in range(7)]
    small = ExpansionCache(max_bytes=one // 2)  # an expansion bigger than the bound is not kept
    assert small.get("e", _series("x"), day).occurrences and small.size == 0
