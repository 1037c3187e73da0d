"""The CalDAV free-busy-query REPORT (RFC 4791 §7.10) answered from the database.

Radicale would expand every item of the calendar (its cost growing with the calendar
and with any dense rule), show visits without their buffers and travel, and label
its answer `text/calendar; charset=utf-8; charset=utf-8`. Here a free-busy-query on
a person's home, jobs calendar or a calendar of theirs (aliases included) is answered
by `server.freebusy`; anything else (team and customer views) is left to Radicale.

Rights: whoever may read the calendar (or has Radicale's free-busy right on it) may
ask; the check is Radicale's own (`Access`), so shares and aliases behave as for any
other REPORT.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from radicale import httputils
from radicale.app.base import Access
from radicale.app.base import ApplicationBase as RadicaleBase

from plugins.radicale import aliases, state
from server import freebusy
from server.errors import InvalidInput
from server.models import utcnow

Response = tuple[int, Any, Any, Any]
CALDAV = "{urn:ietf:params:xml:ns:caldav}"
QUERY_TAG = f"{CALDAV}free-busy-query"
CONTENT_TYPE = "text/calendar; charset=utf-8"
DTSTAMP = re.compile(rb"DTSTAMP:[0-9TZ]+\r\n")


def _text(status: int, message: str) -> Response:
    return status, {"Content-Type": "text/plain; charset=utf-8"}, (message + "\n").encode(), None


def query_of(body: bytes) -> ET.Element | None:
    """The request's free-busy-query element, if that is what the body is."""
    if b"free-busy-query" not in body:
        return None
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None  # Radicale answers a malformed body
    return root if root.tag == QUERY_TAG else None


def window_of(query: ET.Element) -> tuple[Any, Any]:
    """The query's time-range (start, end), checked; InvalidInput says what is wrong."""
    element = query.find(f"{CALDAV}time-range")
    if element is None:
        raise InvalidInput("A free-busy-query needs a CALDAV:time-range with start and end "
                           '(UTC), e.g. <C:time-range start="20260101T000000Z" '
                           'end="20260108T000000Z"/>.')
    start = freebusy.parse_utc(element.get("start"), "start")
    end = freebusy.parse_utc(element.get("end"), "end")
    freebusy.check_window(start, end)
    return start, end


def target(path: str) -> str:
    """The stored calendar a path shows: an alias `<home>/<login>~<name>` is `<login>/<name>`."""
    segments = [s for s in path.strip("/").split("/") if s]
    if len(segments) == 2:
        shown = aliases.target_of(segments[1])
        if shown is not None:
            return shown
    return "/".join(segments)


def view_window(environ: dict[str, Any], app: RadicaleBase) -> tuple[Any, Any]:
    """The range of Radicale's `GET <calendar>?view=freebusy[&start=..&end=..]`, checked."""
    query = urllib.parse.parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
    starts, ends = query.get("start", []), query.get("end", [])
    if not starts and not ends:
        today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
        past = int(app.configuration.get("reporting", "freebusy_view_past_days"))
        future = int(app.configuration.get("reporting", "freebusy_view_future_days"))
        end = today + dt.timedelta(days=future)  # the future matters most: the past gives way
        return max(today - dt.timedelta(days=past), end - freebusy.MAX_WINDOW), end
    if len(starts) > 1 or len(ends) > 1:
        raise InvalidInput("Give start and end once each.")
    start = freebusy.parse_utc(starts[0] if starts else None, "start")
    end = freebusy.parse_utc(ends[0] if ends else None, "end")
    freebusy.check_window(start, end)
    return start, end


def is_view(environ: dict[str, Any]) -> bool:
    """A GET for Radicale's free/busy view of a calendar (`?view=freebusy`)."""
    query = urllib.parse.parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
    return query.get("view") == ["freebusy"]


def answer(app: RadicaleBase, args: tuple[Any, ...],
           window: Callable[[], tuple[Any, Any]]) -> Response | None:
    """Our free/busy answer over `window()`, or None for Radicale to answer it.

    `args` are Radicale's handler arguments after environ: base_prefix, path, user,
    user_groups, request_info.
    """
    path, user, user_groups = str(args[1]), str(args[2] or ""), set(args[3] or ())
    if app._sharing._enabled:
        return None  # a share maps paths and rights of its own: Radicale's path knows them
    access = Access(app._rights, user, user_groups, path)
    if not (access.check("r") or access.allows_freebusy()):
        return httputils.NOT_ALLOWED
    try:
        start, end = window()  # checked for Radicale's path too: it fails with 500
    except InvalidInput as error:
        return _text(400, error.message)
    database = state.DatabaseHandle(app.configuration)()
    with database.read() as session:
        scope = freebusy.scope_for(session, target(path))
        if scope is None:
            return None
        periods = freebusy.busy_periods(session, scope, start, end)
    now = utcnow().replace(microsecond=0)
    body = freebusy.render(periods, start, end, uid_seed=path, stamp=now)
    return 200, {"Content-Type": CONTENT_TYPE}, body, None


def report(app: RadicaleBase, body: bytes, args: tuple[Any, ...]) -> Response | None:
    """A REPORT: ours when it is a free-busy-query on a person's calendar or home."""
    query = query_of(body)
    return None if query is None else answer(app, args, lambda: window_of(query))


def view(app: RadicaleBase, environ: dict[str, Any], args: tuple[Any, ...]) -> Response | None:
    """A GET `?view=freebusy`: the same answer, as a file to save."""
    if not is_view(environ):
        return None
    found = answer(app, args, lambda: view_window(environ, app))
    if found is None or found[0] != 200:
        return found
    name = "-".join(s for s in str(args[1]).strip("/").split("/") if s) or "calendar"
    content = DTSTAMP.sub(b"", found[2])  # the periods and the range, not the moment asked
    headers = {**found[1], "ETag": '"' + hashlib.sha256(content).hexdigest()[:32] + '"',
               "Content-Disposition": f'attachment; filename="{quote(name)}-freebusy.ics"'}
    return found[0], headers, found[2], found[3]


def one_charset(response: Response) -> Response:
    """Radicale adds `; charset=` to a text answer whose type already names one: send bytes."""
    status, headers, body, xml = response
    if isinstance(body, str) and isinstance(headers, dict) \
            and "charset=" in str(headers.get("Content-Type", "")):
        return status, headers, body.encode("utf-8"), xml
    return response
