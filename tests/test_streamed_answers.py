"""Big first syncs and calendar listings are written into a spool (held as their gzip) and
sent in chunks: the same bytes as the answer made in one piece, and Radicale's.

The spool's plain limit and the row batches are made small here, so that a calendar of
a thousand items shows what a calendar of fifty thousand does with the defaults: the
answer goes out in more than one chunk, byte for byte what it was, gzip included (the
gzip sent as it was made, the bytes Radicale's own compression gives), and the memory
the request takes at its peak stays well below the answer's size (the answer made in
one piece, as before, held all of it at once).
"""

from __future__ import annotations

import base64
import gc
import tracemalloc
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from davkit import parse_multistatus, sync_collection
from seeding import Seed, at, domain, fresh_technician, personal_event, put_personal
from test_radicale_plugin import load_wsgi, settings_for

from bench.memory import respond
from plugins.radicale import fast_paths, propfind_fast, sync_report
from plugins.radicale.propfind_cache import FragmentCache
from server import bodycache
from server.db import get_database

ITEMS = 2000
SMALL_LIMIT = 16 * 1024
SMALL_GROUP = 4 * 1024
LISTING = (b'<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:" '
           b'xmlns:cs="http://calendarserver.org/ns/"><d:prop><d:getetag/><d:getcontenttype/>'
           b"<d:resourcetype/><cs:getctag/></d:prop></d:propfind>")
XML = {"Content-Type": "application/xml; charset=utf-8", "Depth": "1"}
GZIP = {"Accept-Encoding": "gzip"}
Answer = tuple[int, dict[str, str], list[bytes]]


Calendar = tuple[Any, str, str]  # the composed app, the Authorization header, the path


def _calendar(app: Any, seed: Seed, database_url: str, items: int) -> Calendar:
    db = get_database(database_url)
    account = fresh_technician(db, seed, "st", []).account
    with domain(db) as ctx:
        for n in range(items):
            put_personal(ctx, account.login, f"event-{n:05d} & more.ics", personal_event(
                f"streamed-{n}@example.test", f"Visit {n}", at(2 + n % 20, 9), at(2 + n % 20, 10)))
    token = base64.b64encode(f"{account.login}:{account.password}".encode()).decode()
    return app, f"Basic {token}", f"/dav/{account.login}/personal/"


@pytest.fixture(scope="module")
def app(seed: Seed, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_wsgi().create_wsgi_app(settings_for(database_url, tmp_path_factory.mktemp("inst")))


@pytest.fixture(scope="module")
def calendar(app: Any, seed: Seed, database_url: str) -> Calendar:
    """A calendar of ITEMS events."""
    return _calendar(app, seed, database_url, ITEMS)


@pytest.fixture(scope="module")
def short_calendar(app: Any, seed: Seed, database_url: str) -> Calendar:
    """A calendar of a quarter as many (its answers also bigger than a spool's group)."""
    return _calendar(app, seed, database_url, ITEMS // 4)


def call(app: Any, auth: str, method: str, path: str, body: bytes,
         headers: dict[str, str]) -> Answer:
    """Status, headers and the body's chunks."""
    chunks: list[bytes] = []
    status, answer_headers = respond(app, method, path, body, {"Authorization": auth, **headers},
                                     chunks.append)
    return status, answer_headers, chunks


def drained(app: Any, auth: str, method: str, path: str, body: bytes,
            headers: dict[str, str]) -> int:
    """The length of the answer, its chunks read and dropped."""
    length = 0

    def take(chunk: bytes) -> None:
        nonlocal length
        length += len(chunk)

    status, _ = respond(app, method, path, body, {"Authorization": auth, **headers}, take)
    assert status == 207
    return length


@pytest.fixture
def small_spool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fast_paths, "SPOOL_PLAIN_LIMIT", SMALL_LIMIT)


def _radicale_gzip(plain: bytes) -> bytes:
    """What Radicale's own compression of an answer makes."""
    deflate = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    return deflate.compress(plain) + deflate.flush()


def _whole(answer: Answer) -> bytes:
    status, headers, chunks = answer
    body = b"".join(chunks)
    assert status == 207 and int(headers["Content-Length"]) == len(body)
    return body


def test_a_big_first_sync_is_sent_in_chunks_with_radicales_bytes(
        calendar: Calendar, monkeypatch: pytest.MonkeyPatch) -> None:
    app, auth, path = calendar
    body = sync_collection("").encode()
    whole = call(app, auth, "REPORT", path, body, XML)  # below the default limit: one piece
    monkeypatch.setattr(fast_paths, "SPOOL_PLAIN_LIMIT", SMALL_LIMIT)
    streamed = call(app, auth, "REPORT", path, body, XML)
    packed = call(app, auth, "REPORT", path, body, {**XML, **GZIP})
    monkeypatch.setattr(sync_report, "answer", lambda *args: None)
    radicales = call(app, auth, "REPORT", path, body, XML)
    radicales_gzip = call(app, auth, "REPORT", path, body, {**XML, **GZIP})
    assert len(streamed[2]) > 3 and len(packed[2]) > 1
    assert _whole(streamed) == _whole(whole) == _whole(radicales)
    assert len(parse_multistatus(_whole(streamed))) == ITEMS
    assert packed[1]["Content-Encoding"] == radicales_gzip[1]["Content-Encoding"] == "gzip"
    assert _whole(packed) == _whole(radicales_gzip) == _radicale_gzip(_whole(radicales))


def test_a_big_listing_is_sent_in_chunks_with_the_same_bytes(
        calendar: Calendar, monkeypatch: pytest.MonkeyPatch) -> None:
    app, auth, path = calendar
    whole = call(app, auth, "PROPFIND", path, LISTING, XML)
    monkeypatch.setattr(fast_paths, "SPOOL_PLAIN_LIMIT", SMALL_LIMIT)
    before = propfind_fast.COUNTS.answered
    streamed = call(app, auth, "PROPFIND", path, LISTING, XML)  # fragments from the cache
    monkeypatch.setattr(propfind_fast, "FRAGMENTS", FragmentCache(max_bytes=SMALL_LIMIT))
    rendered = call(app, auth, "PROPFIND", path, LISTING, XML)  # too big to keep: rendered
    packed = call(app, auth, "PROPFIND", path, LISTING, {**XML, **GZIP})
    assert propfind_fast.COUNTS.answered == before + 3
    assert propfind_fast.FRAGMENTS.size == 0
    with propfind_fast.disabled():
        radicales = call(app, auth, "PROPFIND", path, LISTING, XML)
    assert len(streamed[2]) > 3 and len(packed[2]) > 1
    assert _whole(streamed) == _whole(rendered) == _whole(whole)
    assert parse_multistatus(_whole(streamed)) == parse_multistatus(_whole(radicales))
    assert len(parse_multistatus(_whole(streamed))) == ITEMS + 1
    assert packed[1]["Content-Encoding"] == "gzip"
    assert _whole(packed) == _radicale_gzip(_whole(whole))


def _peak(calendar: Calendar, method: str, headers: dict[str, str]) -> tuple[int, int]:
    """(bytes of the answer, peak bytes Python held while it was made and read): the lower
    of two runs, so that a one-off allocation that falls in one of them (a cache's or the
    connection's first use of something) is not counted as the answer's."""
    app, auth, path = calendar
    body = sync_collection("").encode() if method == "REPORT" else LISTING
    drained(app, auth, method, path, body, headers)  # first use of every query: compiled
    peaks: list[int] = []
    for _ in range(2):
        gc.collect()
        tracemalloc.start()
        try:
            length = drained(app, auth, method, path, body, headers)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    return length, min(peaks)


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Batches of rows and the spool's plain part (its limit, and the groups it joins its
    pieces into before compressing them) as small against this calendar as the defaults
    are against a big one; listings not kept. With 64 KiB groups against answers of a few
    hundred KB, whether a group's join falls on the peak changed the peak by up to a group."""
    monkeypatch.setattr(fast_paths, "SPOOL_PLAIN_LIMIT", SMALL_LIMIT)
    monkeypatch.setattr(bodycache, "INFLATE_OUTPUT", SMALL_GROUP)
    monkeypatch.setattr(sync_report, "STREAM_ROWS", 100)
    monkeypatch.setattr(propfind_fast, "ROW_BATCH", 100)
    monkeypatch.setattr(propfind_fast, "FRAGMENTS", FragmentCache(max_bytes=SMALL_LIMIT))
    yield


@pytest.mark.parametrize("gzip", [False, True])
@pytest.mark.parametrize("method", ["REPORT", "PROPFIND"])
def test_memory_does_not_grow_with_the_answer(calendar: Calendar, short_calendar: Calendar,
                                              small_batches: None, method: str, gzip: bool) -> None:
    """Four times the items: the answer grows by three times its size, the memory it takes
    by a fraction of that (its gzip). Made in one piece, it grew by at least as much as the
    answer (all of it was held at once, and its gzip beside it for a client taking gzip)."""
    headers = {**XML, **GZIP} if gzip else XML
    length, peak = _peak(calendar, method, headers)
    short_length, short_peak = _peak(short_calendar, method, headers)
    plain_growth = (length - short_length) * (5 if gzip else 1)  # the gzip: a fifth at most
    assert peak - short_peak < plain_growth / 2, (length, short_length, peak, short_peak)


def test_a_delta_is_spooled_with_radicales_bytes(
        calendar: Calendar, small_spool: None,
        monkeypatch: pytest.MonkeyPatch) -> None:
    app, auth, path = calendar
    first = _whole(call(app, auth, "REPORT", path, sync_collection("").encode(), XML))
    token = first.split(b"<sync-token>")[1].split(b"</sync-token>")[0].decode()
    status, _, _ = call(app, auth, "DELETE", f"{path}event-00007 & more.ics", b"", {})
    assert status in (200, 204)
    body = sync_collection(token).encode()
    monkeypatch.setattr(fast_paths, "SPOOL_PLAIN_LIMIT", 0)  # even a short delta: spooled
    streamed = call(app, auth, "REPORT", path, body, XML)
    monkeypatch.setattr(sync_report, "answer", lambda *args: None)
    assert _whole(streamed) == _whole(call(app, auth, "REPORT", path, body, XML))
    assert [r.status for r in parse_multistatus(_whole(streamed))] == [404]
