"""calendar-query REPORT answered from per-item fragments (issue 14).

Radicale answers a calendar-query by building an element tree per hit (path
sanitising, a copy of each property element, the whole item text as element
text), filtering again every item its storage could not decide, and
serialising the tree. For the queries clients send (plugins.radicale.query_shape:
one comp-filter, at most one time-range, `getetag` / `getcontenttype` /
`calendar-data`) this path takes the same hits from the same storage call
(`DbCollection.get_filtered`), decides the items the storage left open with
Radicale's own `test_filter` (its outcome kept per item version and query),
and writes each hit's `<response>` from a fragment cached per item version.

It takes a request only when Radicale would answer it the same way: a
signed-in user with read rights, no sharing, UTF-8, a `<home>/<calendar>`
path that is a database calendar. Anything else (and any item Radicale's
filter refuses to read, or more VEVENTs than Radicale serves) returns None and
Radicale answers. tests/test_query_fast.py compares both answers.
"""

from __future__ import annotations

import contextvars
import io
import threading
from collections import OrderedDict
from collections.abc import Hashable
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from http import client
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

import vobject
from radicale import xmlutils
from radicale.app.base import Access
from radicale.app.report import test_filter

from plugins.radicale import sync_report
from plugins.radicale.collection import DbCollection
from plugins.radicale.fast_paths import plain_utf8, switched_off
from plugins.radicale.query_shape import CALENDAR_DATA, GETCONTENTTYPE, GETETAG, Query, parse
from plugins.radicale.stored_item import StoredItem

Response = tuple[int, Any, Any, Any]
CALDAV_NAMESPACE = ' xmlns:C="urn:ietf:params:xml:ns:caldav"'
OK = "<status>HTTP/1.1 200 OK</status>"
DEFAULT_MAX_BYTES = 16 * 1024 * 1024  # ~15,000 hits of 1 KB
MAX_DECISIONS = 20_000  # filter outcomes of items the storage left open
FILTER_ERRORS = (ValueError, TypeError, AttributeError, KeyError, IndexError,
                 vobject.base.VObjectError)
_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("query_fast", default=True)


@dataclass
class Counts:
    """How many calendar-queries this process answered here (tests check the path was taken)."""

    answered: int = 0


COUNTS = Counts()


class Fragments:
    """`<response>` fragments (and their VEVENT counts) per (shape, href, etag), bounded in
    bytes, least recently used evicted first. A changed item has a new etag: never stale."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._max_bytes = max_bytes
        self._items: OrderedDict[Hashable, tuple[bytes, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self._decisions: dict[Hashable, bool] = {}  # Radicale's filter outcome, per (etag, query)

    @property
    def size(self) -> int:
        return self._size

    def get(self, key: Hashable) -> tuple[bytes, int] | None:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
            return found

    def put(self, key: Hashable, value: tuple[bytes, int]) -> None:
        cost = len(value[0]) + 200  # the key and the entry, roughly
        if cost > self._max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._size -= len(old[0]) + 200
            self._items[key] = value
            self._size += cost
            while self._size > self._max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._size -= len(evicted[0]) + 200

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._decisions.clear()
            self._size = 0

    def decision(self, key: Hashable) -> bool | None:
        return self._decisions.get(key)

    def decide(self, key: Hashable, value: bool) -> None:
        if len(self._decisions) >= MAX_DECISIONS:
            self._decisions.clear()
        self._decisions[key] = value


FRAGMENTS = Fragments()


def disabled() -> ContextManager[None]:
    """Radicale answers every calendar-query in this context (the differential test's reference)."""
    return switched_off(_enabled)


def _body(environ: dict[str, Any]) -> bytes | None:
    """The buffered request body (application.do_REPORT); None unless plain UTF-8."""
    if not plain_utf8(environ):
        return None
    stream = environ.get("wsgi.input")
    if not isinstance(stream, io.BytesIO):
        return None
    return stream.getvalue()


def _render(query: Query, href: str, item: StoredItem, encoding: str) -> tuple[bytes, int]:
    """One hit's `<response>`, as Radicale's xml_item_response writes it, and how many
    VEVENTs its calendar-data holds (Radicale's limit counts them)."""
    parts = [f"<response><href>{escape(href)}</href><propstat><prop>"]
    text = item.serialize()
    vevents = 0
    for prop in query.props:
        if prop == GETETAG:
            value, tag = item.etag, "getetag"
        elif prop == GETCONTENTTYPE:
            value, tag = xmlutils.get_content_type(item, encoding), "getcontenttype"
        else:
            value, tag = text, "C:calendar-data"
            vevents += sum(1 for line in text.splitlines() if line.upper() == "BEGIN:VEVENT")
        parts.append(f"<{tag}>{escape(value)}</{tag}>" if value else f"<{tag} />")
    parts.append(f"</prop>{OK}</propstat></response>")
    return "".join(parts).encode("utf-8"), vevents


def _matches(collection: DbCollection, query: Query, item: StoredItem) -> bool:
    """Radicale's own filter on an item its storage left open, kept per (etag, query)."""
    key = (item.etag, query.key)
    found = FRAGMENTS.decision(key)
    if found is None:
        found = bool(test_filter(collection.tag, item, query.filter))
        FRAGMENTS.decide(key, found)
    return found


def _multistatus(app: Any, base_prefix: str, query: Query, collection: DbCollection
                 ) -> bytes | None:
    """The answer's bytes; None when Radicale must answer (a filter error, too many VEVENTs)."""
    encoding = app._encoding
    prefix = f"{base_prefix}/{collection.path}/"
    shape = (prefix, query.props, encoding)
    out: list[bytes] = []
    vevents = 0
    limit = int(app.configuration.get("reporting", "max_expand_occurrence") or 0)
    for item, matched in collection.get_filtered((query.filter,)):
        assert isinstance(item, StoredItem) and item.href
        try:
            if not matched and not _matches(collection, query, item):
                continue
        except FILTER_ERRORS:
            return None  # Radicale answers 400 for it, with its own message
        key = (shape, item.href, item.etag)
        fragment = FRAGMENTS.get(key)
        if fragment is None:
            fragment = _render(query, quote(prefix + item.href), item, encoding)
            FRAGMENTS.put(key, fragment)
        out.append(fragment[0])
        vevents += fragment[1]
    if limit and vevents > limit:
        return None
    namespaces = CALDAV_NAMESPACE if out and CALENDAR_DATA in query.props else ""
    head = f"<?xml version='1.0' encoding='{encoding}'?>\n<multistatus xmlns=\"DAV:\"{namespaces}"
    if not out:
        return f"{head} />".encode()
    return b"".join((f"{head}>".encode(), *out, b"</multistatus>"))


def answer(app: Any, environ: dict[str, Any], base_prefix: str, path: str, user: str,
           user_groups: set[str], request_info: dict[str, Any]) -> Response | None:
    """The 207 answer to a plain calendar-query on one of our calendars, or None."""
    if (not _enabled.get() or not user or app._sharing._enabled
            or app._encoding.lower() != "utf-8" or len([s for s in path.split("/") if s]) != 2):
        return None
    body = _body(environ)
    query = None if body is None else parse(body)
    if query is None:
        return None
    access = Access(app._rights, user, user_groups, path, None)
    if not access.check("r"):
        return None
    with app._storage.acquire_lock("r", user):
        found = next(iter(app._storage.discover(path)), None)
        if (not isinstance(found, DbCollection) or found.tag != "VCALENDAR"
                or not access.check("r", found)):
            return None
        answer_body = _multistatus(app, base_prefix, query, found)
    if answer_body is None:
        return None
    COUNTS.answered += 1
    request_info["status"] = client.MULTI_STATUS
    headers = {"Content-Type": f"text/xml; charset={app._encoding}"}
    return client.MULTI_STATUS, headers, answer_body, xmlutils.pretty_xml(query.root)


def do_REPORT(app: Any, environ: dict[str, Any], base_prefix: str, path: str, user: str,
              user_groups: set[str], request_info: dict[str, Any]) -> Response:
    """A plain calendar-query from fragments; every other REPORT as before."""
    found = answer(app, environ, base_prefix, path, user, user_groups, request_info)
    if found is not None:
        return found
    return sync_report.do_REPORT(app, environ, base_prefix, path, user, user_groups, request_info)
