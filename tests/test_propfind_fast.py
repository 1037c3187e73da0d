"""The PROPFIND fast path (plugins.radicale.propfind_fast) answers exactly as Radicale does.

A differential test: every PROPFIND body of tests/data/propfind/ (captured from
the `caldav` library and vdirsyncer, transcribed from iOS/macOS, DAVx5,
Thunderbird, Evolution and GNOME, and bodies Radicale must answer itself) is
sent to every kind of collection (jobs, personal, team and customer views,
aliases in a home, a home, the root, an item, a missing calendar) as the owner,
the dispatcher, a technician of the same team and one of another team, with
the fast path on and off (`propfind_fast.disabled()`). Status, headers and the
parsed multistatus (hrefs, statuses, property values; whitespace aside) must be
equal, and the fast path must have answered exactly the calendar listings it
is meant for.
"""

from __future__ import annotations

import datetime as dt
import gzip
import xml.etree.ElementTree as ET  # our own answers, parsed for comparison
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from seeding import Seed, at, domain, personal_event, put_personal
from test_radicale_plugin import Dav, load_wsgi, settings_for
from werkzeug.test import Client, TestResponse

from plugins.radicale import propfind_fast
from plugins.radicale.propfind_cache import FragmentCache
from server.db import get_database

CORPUS = Path(__file__).parent / "data" / "propfind"
BODIES = {path.stem: path.read_bytes() for path in sorted(CORPUS.glob("*.xml"))}
RADICALE_ANSWERS = {name for name in BODIES if name.startswith("fallback-")} | {"ios-home"}
ODD_HREF = "a b+c&d.ics"
Canonical = tuple[Any, ...]


@pytest.fixture(scope="module")
def app(seed: Seed, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    db = get_database(database_url)
    with domain(db) as ctx:  # more items: an href that needs quoting and escaping, a to-do
        put_personal(ctx, "alice", ODD_HREF, personal_event(
            "odd-href@example.test", "Odd href", at(1, 7), at(1, 8)))
        put_personal(ctx, "alice", "todo.ics", "\r\n".join([
            "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//fieldcal tests//EN", "BEGIN:VTODO",
            "UID:todo@example.test", "DTSTAMP:20310101T000000Z", "SUMMARY:Order filters",
            "END:VTODO", "END:VCALENDAR", ""]))
    return load_wsgi().create_wsgi_app(settings_for(database_url, tmp_path_factory.mktemp("inst")))


@pytest.fixture(scope="module")
def client(app: Any) -> Client:
    return Client(app)


def canonical(element: ET.Element) -> Canonical:
    return (element.tag, tuple(sorted(element.attrib.items())), (element.text or "").strip(),
            tuple(canonical(child) for child in element))


def answer(response: TestResponse) -> tuple[Any, ...]:
    headers = (response.headers.get("Content-Type"), response.headers.get("DAV"))
    if response.status_code != 207:
        return response.status_code, headers, response.data
    return response.status_code, headers, canonical(ET.fromstring(response.data))


def lines(value: Any, depth: int = 0) -> list[str]:
    if isinstance(value, tuple) and len(value) == 4 and isinstance(value[0], str) \
            and value[0].startswith("{"):
        tag, attributes, text, children = value
        return [f"{'  ' * depth}{tag} {attributes} {text!r}"] + [
            line for child in children for line in lines(child, depth + 1)]
    if isinstance(value, tuple):
        return [line for part in value for line in lines(part, depth)]
    return [f"{'  ' * depth}{value!r}"]


def first_difference(fast: Any, reference: Any) -> str:
    ours, theirs = lines(fast), lines(reference)
    for number, (mine, radicales) in enumerate(zip(ours, theirs, strict=False)):
        if mine != radicales:
            return f"line {number}: fast {mine.strip()} != Radicale {radicales.strip()}"
    return f"{len(ours)} lines != {len(theirs)} lines"


def both(dav: Dav, path: str, body: bytes | None, **headers: str) -> tuple[Any, Any, int]:
    """(fast path's answer, Radicale's answer, how many the fast path answered)."""
    before = propfind_fast.COUNTS.answered
    fast = answer(dav("PROPFIND", path, body, **headers))
    taken = propfind_fast.COUNTS.answered - before
    with propfind_fast.disabled():
        reference = answer(dav("PROPFIND", path, body, **headers))
    assert propfind_fast.COUNTS.answered - before == taken
    return fast, reference, taken


def paths(seed: Seed) -> dict[str, bool]:
    """Path -> whether it is a calendar (a listing the fast path may answer)."""
    customer = seed.customer_ids[0]
    return {
        "/dav/alice/jobs/": True, "/dav/alice/personal/": True, "/dav/bob/jobs/": True,
        "/dav/carol/personal/": True,
        "/dav/team-north/schedule/": True, f"/dav/customer-{customer}/appointments/": True,
        "/dav/alice/team-north~schedule/": True, "/dav/dispatch/alice~jobs/": True,
        "/dav/dispatch/alice~personal/": True, "/dav/dispatch/team-north~schedule/": True,
        "/dav/alice/": False, "/dav/dispatch/": False, "/dav/": False,
        "/dav/alice/personal/dentist.ics": False, "/dav/alice/nothing-here/": False,
    }


@pytest.mark.parametrize("login", ["alice", "dispatch", "bob", "carol"])
def test_every_client_body_on_every_collection_answers_as_radicale(
        client: Client, seed: Seed, login: str) -> None:
    account = seed.dispatcher if login == "dispatch" else seed.technicians[login]
    dav = Dav(client, account)
    differences: list[str] = []
    answered = 0
    for path, is_calendar in paths(seed).items():
        for name, body in BODIES.items():
            fast, reference, taken = both(dav, path, body, Depth="1")
            if fast != reference:
                differences.append(f"{name} on {path}: {first_difference(fast, reference)}")
            expected = is_calendar and name not in RADICALE_ANSWERS and reference[0] == 207
            if taken != int(expected):
                differences.append(f"{name} on {path}: fast path answered {taken}, expected {expected}")
            answered += taken
    assert not differences, "\n".join(differences[:5])
    assert answered > 0  # every account may list at least one calendar


def test_listings_hold_what_radicale_lists(client: Client, seed: Seed) -> None:
    dav = Dav(client, seed.technicians["alice"])
    response = dav("PROPFIND", "/dav/alice/personal/", BODIES["evolution-list"], Depth="1")
    root = ET.fromstring(response.data)
    hrefs = [e.text for e in root.iter("{DAV:}href")]
    assert "/dav/alice/personal/a%20b%2Bc%26d.ics" in hrefs
    types = {e.text for e in root.iter("{DAV:}getcontenttype")}
    assert {"text/calendar;charset=utf-8;component=VTODO",
            "text/calendar;charset=utf-8;component=VEVENT"} <= types


@pytest.mark.parametrize("headers", [
    {"Depth": "0"}, {"Depth": "infinity"}, {}, {"Depth": "1", "If_Match": '"x"'},
    {"Depth": "1", "If": '(["x"])'}, {"Depth": "1", "Content_Type": "text/xml; charset=latin-1"},
], ids=["depth-0", "depth-infinity", "no-depth", "if-match", "if", "latin-1"])
def test_other_requests_are_radicales(client: Client, seed: Seed, headers: dict[str, str]) -> None:
    dav = Dav(client, seed.technicians["alice"])
    for path in ("/dav/alice/personal/", "/dav/alice/jobs/", "/dav/alice/team-north~schedule/"):
        for name in ("ios-list", "davx5-list", "thunderbird-ctag"):
            fast, reference, taken = both(dav, path, BODIES[name], **headers)
            assert fast == reference, (name, path)
            assert taken == 0


def test_empty_and_malformed_bodies_are_radicales(client: Client, seed: Seed) -> None:
    dav = Dav(client, seed.dispatcher)
    for body in (None, b"", b"<D:propfind xmlns:D='DAV:'><D:prop>", b"<propfind/>",
                 b"<D:propfind xmlns:D='DAV:'><D:prop/></D:propfind>"):
        fast, reference, taken = both(dav, "/dav/alice/personal/", body, Depth="1")
        assert fast == reference, body
        assert taken == 0


def listing(dav: Dav, path: str) -> dict[str, str]:
    response = dav("PROPFIND", path, BODIES["ios-list"], Depth="1")
    assert response.status_code == 207
    root = ET.fromstring(response.data)
    return {r.findtext("{DAV:}href") or "": r.findtext(".//{DAV:}getetag") or ""
            for r in root.iter("{DAV:}response")}


def test_a_change_is_listed_at_once(client: Client, seed: Seed) -> None:
    """Fragments are per item version: a changed, added or deleted item is never listed stale."""
    bob = Dav(client, seed.technicians["bob"])
    path = "/dav/bob/personal/"
    start = at(20, 9)
    for n in range(3):
        assert bob("PUT", f"{path}e{n}.ics", personal_event(
            f"e{n}@example.test", f"Event {n}", start, start + dt.timedelta(hours=1)),
            Content_Type="text/calendar").status_code == 201
    first = listing(bob, path)
    assert set(first) == {f"/dav/bob/personal/e{n}.ics" for n in range(3)} | {path}
    assert bob("PUT", f"{path}e1.ics", personal_event(
        "e1@example.test", "Moved", start, start + dt.timedelta(hours=2)),
        Content_Type="text/calendar").status_code in (201, 204)
    assert bob("DELETE", f"{path}e2.ics").status_code in (200, 204)
    second = listing(bob, path)
    with propfind_fast.disabled():
        assert second == listing(bob, path)
    assert "/dav/bob/personal/e2.ics" not in second
    assert second["/dav/bob/personal/e1.ics"] != first["/dav/bob/personal/e1.ics"]
    assert second["/dav/bob/personal/e0.ics"] == first["/dav/bob/personal/e0.ics"]


def test_the_fast_path_can_be_switched_off() -> None:
    def state() -> Iterator[bool]:
        yield propfind_fast._enabled.get()
        with propfind_fast.disabled():
            yield propfind_fast._enabled.get()
        yield propfind_fast._enabled.get()
    assert list(state()) == [True, False, True]


def test_fragments_are_rendered_once_per_item_version_and_bounded() -> None:
    cache = FragmentCache(max_bytes=4000)
    rendered: list[tuple[object, ...]] = []

    def render(row: Sequence[object]) -> bytes:
        rendered.append(tuple(row))
        return f"<response>{row[0]}:{row[1]}</response>".encode()

    assert cache.fragments("listing", [("a", "1"), ("b", "1")], render) == [
        b"<response>a:1</response>", b"<response>b:1</response>"]
    assert cache.fragments("listing", [("a", "1"), ("b", "2")], render)[1] == b"<response>b:2</response>"
    assert rendered == [("a", "1"), ("b", "1"), ("b", "2")]  # "a" was reused
    cache.fragments("listing", [("a", "1")], render)
    cache.fragments("listing", [("a", "1"), ("b", "1")], render)
    assert rendered[-1] == ("b", "1")  # a listing keeps only the items it had last time
    for shape in range(50):
        cache.fragments(shape, [(str(n), "1") for n in range(10)], render)
    assert 0 < cache.size <= 4000


@pytest.mark.parametrize("accept", ["gzip, deflate", "deflate,gzip"])
def test_a_listing_for_a_client_that_takes_gzip_is_radicales_answer_gzipped(
        client: Client, seed: Seed, accept: str) -> None:
    dav = Dav(client, seed.technicians["alice"])
    for name in ("vdirsyncer-1", "davx5-list", "thunderbird-list"):
        before = propfind_fast.COUNTS.answered
        fast = dav("PROPFIND", "/dav/alice/personal/", BODIES[name], Depth="1",
                   **{"Accept-Encoding": accept})
        assert propfind_fast.COUNTS.answered == before + 1, name
        assert fast.status_code == 207 and fast.headers["Content-Encoding"] == "gzip", name
        assert int(fast.headers["Content-Length"]) == len(fast.data)
        with propfind_fast.disabled():
            reference = dav("PROPFIND", "/dav/alice/personal/", BODIES[name], Depth="1",
                            **{"Accept-Encoding": accept})
        assert canonical(ET.fromstring(gzip.decompress(fast.data))) == \
            canonical(ET.fromstring(gzip.decompress(reference.data))), name
