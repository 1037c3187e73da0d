"""HTTP and WebDAV helpers: raw requests (exact request targets), DAV XML bodies and answers,
and the `caldav` library client."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import icalendar
import requests
from caldav.calendarobjectresource import CalendarObjectResource, Event
from caldav.collection import Calendar
from caldav.davclient import DAVClient
from live import HTTP_TIMEOUT_S, LiveServer
from seeding import Account

# --------------------------------------------------------------------------- raw HTTP


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def raw_request(server: LiveServer, method: str, target: str, *, auth: tuple[str, str] | None,
                body: bytes | None = None, headers: dict[str, str] | None = None,
                timeout: float = HTTP_TIMEOUT_S) -> RawResponse:
    """Send the request target exactly as given (no dot-segment or quoting clean-up)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        all_headers = dict(headers or {})
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            all_headers["Authorization"] = f"Basic {token}"
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in all_headers.items():
            connection.putheader(name, value)
        if body is not None and "Content-Length" not in all_headers:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders()
        if body is not None:
            connection.send(body)
        response = connection.getresponse()
        data = response.read()
        return RawResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        connection.close()


def dav_request(server: LiveServer, method: str, path: str, auth: tuple[str, str] | None, *,
                body: str | bytes | None = None, headers: dict[str, str] | None = None,
                timeout: float = HTTP_TIMEOUT_S) -> requests.Response:
    """A request through `requests` (path is quoted here; give it unquoted)."""
    data = body.encode("utf-8") if isinstance(body, str) else body
    return requests.request(method, server.url(urllib.parse.quote(path)), auth=auth, data=data,
                            headers=headers or {}, timeout=timeout, allow_redirects=False)


ICS = {"Content-Type": "text/calendar; charset=utf-8"}
XML = {"Content-Type": "application/xml; charset=utf-8"}
# The head of a test calendar, and a Europe/Berlin VTIMEZONE to put after it.
CALENDAR_HEAD = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//fieldcal tests//EN\r\n"
BERLIN_VTIMEZONE = "\r\n".join([
    "BEGIN:VTIMEZONE", "TZID:Europe/Berlin", "BEGIN:DAYLIGHT", "TZOFFSETFROM:+0100",
    "TZOFFSETTO:+0200", "TZNAME:CEST", "DTSTART:19700329T020000",
    "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU", "END:DAYLIGHT", "BEGIN:STANDARD",
    "TZOFFSETFROM:+0200", "TZOFFSETTO:+0100", "TZNAME:CET", "DTSTART:19701025T030000",
    "RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU", "END:STANDARD", "END:VTIMEZONE", ""])


def calendar_query(start: dt.datetime, end: dt.datetime, *, expand: bool = False) -> str:
    data = (
        f'<C:calendar-data><C:expand start="{start:%Y%m%dT%H%M%SZ}" '
        f'end="{end:%Y%m%dT%H%M%SZ}"/></C:calendar-data>'
        if expand else "<C:calendar-data/>"
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
        f"<D:prop><D:getetag/>{data}</D:prop>"
        '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
        f'<C:time-range start="{start:%Y%m%dT%H%M%SZ}" end="{end:%Y%m%dT%H%M%SZ}"/>'
        "</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>"
    )


def sync_collection(token: str = "") -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<D:sync-collection xmlns:D="DAV:">'
        f"<D:sync-token>{token}</D:sync-token><D:sync-level>1</D:sync-level>"
        "<D:prop><D:getetag/></D:prop></D:sync-collection>"
    )


PROPFIND_ALL = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getetag/><D:displayname/>'
    "</D:prop></D:propfind>"
)


DAV_NS = "{DAV:}"
CALDAV_NS = "{urn:ietf:params:xml:ns:caldav}"


@dataclass(frozen=True)
class DavResponse:
    href: str  # unquoted path
    status: int
    etag: str
    calendar_data: str


def parse_multistatus(body: bytes) -> list[DavResponse]:
    """The responses of a 207 multistatus (our own server's output, parsed for assertions)."""
    root = ET.fromstring(body)
    found: list[DavResponse] = []
    for response in root.iter(f"{DAV_NS}response"):
        href = urllib.parse.unquote(response.findtext(f"{DAV_NS}href", default=""))
        status_text = response.findtext(f"{DAV_NS}status") or ""
        etag = ""
        data = ""
        for propstat in response.iter(f"{DAV_NS}propstat"):
            ok = " 200 " in (propstat.findtext(f"{DAV_NS}status") or "")
            if ok:
                etag = propstat.findtext(f".//{DAV_NS}getetag") or etag
                data = propstat.findtext(f".//{CALDAV_NS}calendar-data") or data
                status_text = status_text or "HTTP/1.1 200 OK"
        status = int(status_text.split()[1]) if status_text else 0
        found.append(DavResponse(href, status, etag, data))
    return found


def sync_token_of(body: bytes) -> str:
    return ET.fromstring(body).findtext(f"{DAV_NS}sync-token") or ""


def dav_client(server: LiveServer, account: Account, url: str | None = None) -> DAVClient:
    """A `caldav` library client logged in as `account`."""
    return DAVClient(url=url or server.dav, username=account.login,
                     password=account.password, timeout=int(HTTP_TIMEOUT_S))


def basename(url: object) -> str:
    """The last path segment of a URL, unquoted."""
    path = urllib.parse.urlsplit(str(url)).path.rstrip("/")
    return urllib.parse.unquote(path.rsplit("/", 1)[-1])


# --------------------------------------------------------------------------- caldav library and iCalendar


def jobs_url(live: LiveServer, login: str) -> str:
    return live.url(f"/dav/{login}/jobs/")


def personal_url(live: LiveServer, login: str) -> str:
    return live.url(f"/dav/{login}/personal/")


T = TypeVar("T")


def synchronous(value: T | Coroutine[Any, Any, T]) -> T:
    """The result of a `caldav` library call: the library types each call as "result or coroutine"
    (it shares the code with its async client); `DAVClient` is the synchronous one."""
    assert not isinstance(value, Coroutine), "the synchronous caldav client returned a coroutine"
    return value


def open_calendar(live: LiveServer, account: Account, url: str) -> Calendar:
    return dav_client(live, account).calendar(url=url)


def load_event(calendar: Calendar, href: str) -> Event:
    event = calendar.event_by_url(urllib.parse.urljoin(str(calendar.url), urllib.parse.quote(href)))
    event.load()
    return event


def uids_of(objects: Iterable[CalendarObjectResource]) -> set[str]:
    return {str(obj.icalendar_component["UID"]) for obj in objects}


def get_item(live: LiveServer, account: Account, path: str) -> requests.Response:
    response = dav_request(live, "GET", path, account.auth)
    assert response.status_code == 200, (response.status_code, response.text)
    return response


def set_times(component: icalendar.cal.Component, start: dt.datetime, end: dt.datetime) -> None:
    for name, value in (("DTSTART", start), ("DTEND", end)):
        component.pop(name, None)
        component.add(name, value)


def moved(text: str, start: dt.datetime, end: dt.datetime) -> bytes:
    """The object with new DTSTART/DTEND, as a client that moves it would send it."""
    calendar = icalendar.Calendar.from_ical(text)
    set_times(next(iter(calendar.walk("VEVENT"))), start, end)
    return calendar.to_ical()


def vevent(text: str) -> icalendar.Event:
    calendar = icalendar.Calendar.from_ical(text)
    event = next(c for c in calendar.walk("VEVENT"))
    assert isinstance(event, icalendar.Event), type(event)
    return event
