"""The timed CalDAV operations; each checks its answer before its time counts."""

from __future__ import annotations

import datetime as dt
import gzip
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.client import CALDAV, DAV, BenchError, Client, Reply
from bench.events import Event, dense_window, new_event, query_window

XML = {"Content-Type": 'application/xml; charset="utf-8"'}
ICS = {"Content-Type": "text/calendar; charset=utf-8"}
CALENDAR_PATH = "/tech/personal/"

PROPFIND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<D:propfind xmlns:D="DAV:"><D:prop>'
    b"<D:resourcetype/><D:getetag/><D:getcontenttype/>"
    b"</D:prop></D:propfind>"
)

SYNC_TOKEN_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>\n'
    b'<D:propfind xmlns:D="DAV:"><D:prop><D:sync-token/></D:prop></D:propfind>'
)


def query_body(window: tuple[dt.datetime, dt.datetime] | None = None) -> bytes:
    start, end = window or query_window()
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
        "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
        '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
        f'<C:time-range start="{start:%Y%m%dT%H%M%SZ}" end="{end:%Y%m%dT%H%M%SZ}"/>'
        "</C:comp-filter></C:comp-filter></C:filter>"
        "</C:calendar-query>"
    ).encode()


def sync_body(token: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<D:sync-collection xmlns:D="DAV:">'
        f"<D:sync-token>{token}</D:sync-token><D:sync-level>1</D:sync-level>"
        "<D:prop><D:getetag/></D:prop></D:sync-collection>"
    ).encode()


@dataclass
class Timing:
    operation: str
    server: str
    samples_ms: list[float] = field(default_factory=list)
    items: int = -1  # what the answer contained (responses or VEVENTs), checked across servers

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples_ms)


@dataclass
class Plan:
    warmups: int
    repeats: int


def _ok_responses(reply: Reply, what: str) -> int:
    responses = reply.responses()
    for response in responses:
        statuses = [s.text or "" for s in response.iter(f"{DAV}status")]
        if not statuses or not any(" 200 " in s for s in statuses):
            raise BenchError(f"{what}: a response without 200: {statuses}")
    return len(responses)


class Operations:
    """The five operations of the benchmark against one server."""

    def __init__(self, client: Client, events: list[Event]) -> None:
        self.client = client
        self.events = events
        self.changed = 0
        self.created = 0
        self._token = ""

    def _put(self, event: Event, *, new: bool) -> Reply:
        headers = {**ICS, "If-None-Match": "*"} if new else ICS
        return self.client.request("PUT", f"{CALENDAR_PATH}{event.href}", event.to_ics().encode(),
                                   headers, expect=(201,) if new else (201, 204))

    def put_new(self) -> tuple[Reply, int]:
        event = new_event(self.created)
        self.created += 1
        self._token = ""  # the next sync-after-one-change needs a token from after this
        return self._put(event, new=True), 1

    def calendar_query(self) -> tuple[Reply, int]:
        return self._query(query_body())

    def calendar_query_dense(self) -> tuple[Reply, int]:
        """A week holding some 400 events: the cost per item found."""
        return self._query(query_body(dense_window()))

    def _query(self, body: bytes) -> tuple[Reply, int]:
        reply = self.client.request("REPORT", CALENDAR_PATH, body,
                                    {**XML, "Depth": "1"}, expect=(207,))
        count = _ok_responses(reply, "calendar-query")
        for response in reply.responses():  # the content asked for, not only the right count
            data = response.findtext(f".//{CALDAV}calendar-data") or ""
            if "BEGIN:VEVENT" not in data or not response.findtext(f".//{DAV}getetag"):
                href = response.findtext(f"{DAV}href")
                raise BenchError(f"calendar-query: {href} came without calendar-data or getetag")
        return reply, count

    def propfind(self) -> tuple[Reply, int]:
        reply = self.client.request("PROPFIND", CALENDAR_PATH, PROPFIND_BODY,
                                    {**XML, "Depth": "1"}, expect=(207,))
        return reply, _ok_responses(reply, "PROPFIND")

    def get_all(self) -> tuple[Reply, int]:
        reply = self.client.request("GET", CALENDAR_PATH, expect=(200,))
        if "content-encoding" in reply.headers:
            raise BenchError(f"GET without Accept-Encoding came {reply.headers['content-encoding']}")
        return reply, reply.text().count("BEGIN:VEVENT")

    def get_all_gzip(self) -> tuple[Reply, int]:
        """The whole calendar as a client that accepts gzip asks for it (most do)."""
        reply = self.client.request("GET", CALENDAR_PATH, headers={"Accept-Encoding": "gzip"},
                                    expect=(200,))
        if reply.headers.get("content-encoding") != "gzip":
            raise BenchError("GET with Accept-Encoding: gzip came uncompressed")
        return reply, gzip.decompress(reply.body).decode("utf-8").count("BEGIN:VEVENT")

    def get_all_after_change(self) -> tuple[Reply, int]:
        """Change one event (untimed), then GET the whole calendar: the cache-miss figure.
        The answer must hold the change."""
        event = self.events[(self.changed * 7919) % len(self.events)]
        self.changed += 1
        revised = event.revised(self.changed)
        self._put(revised, new=False)
        self._token = ""
        reply, count = self.get_all()
        summary = next(line for line in revised.to_ics().splitlines() if line.startswith("SUMMARY:"))
        if summary not in reply.text().replace("\r\n ", "").replace("\n ", ""):
            raise BenchError(f"GET after a change: the changed event ({summary}) is not in the answer")
        return reply, count

    def current_token(self) -> str:
        reply = self.client.request("PROPFIND", CALENDAR_PATH, SYNC_TOKEN_BODY,
                                    {**XML, "Depth": "0"}, expect=(207,))
        return reply.sync_token()

    def initial_sync(self) -> tuple[Reply, int]:
        """A first sync (empty token): every item; cold caches on the first call."""
        reply = self.client.request("REPORT", CALENDAR_PATH, sync_body(""), XML, expect=(207,))
        self._token = reply.sync_token()
        return reply, _ok_responses(reply, "initial sync")

    def sync_after_change(self) -> tuple[Reply, int]:
        """Change one event (untimed), then sync with the token from before the change."""
        if not self._token:
            self._token = self.current_token()
        event = self.events[(self.changed * 7919) % len(self.events)]
        self.changed += 1
        self._put(event.revised(self.changed), new=False)
        reply = self.client.request("REPORT", CALENDAR_PATH, sync_body(self._token), XML,
                                    expect=(207,))
        count = _ok_responses(reply, "sync-collection")
        hrefs = [h.text or "" for h in reply.xml().iter(f"{DAV}href")]
        if count != 1 or not hrefs[0].endswith(event.href):
            raise BenchError(f"sync-collection after one change returned {hrefs[:5]}")
        self._token = reply.sync_token()
        return reply, count


def measure(name: str, steps: dict[str, Callable[[], tuple[Reply, int]]],
            plan: Plan) -> list[Timing]:
    """Warm up, then time `plan.repeats` rounds; each round calls every server once, in turn,
    so that background load falls on all of them alike. Item counts must not change."""
    timings = {server: Timing(name, server) for server in steps}
    for index in range(plan.warmups + plan.repeats):
        for server, step in steps.items():
            reply, items = step()
            if index < plan.warmups:
                continue
            timing = timings[server]
            timing.samples_ms.append(reply.ms)
            if timing.items not in (-1, items):
                raise BenchError(f"{name} on {server}: {items} items, before {timing.items}")
            timing.items = items
    return list(timings.values())
