"""sync-collection REPORT answered from the index: hrefs and etags in one query, XML as text.

Radicale answers a sync-collection by sanitising every href twice, fetching whole
items and building an element tree per item: for a first sync (empty token) of a
big calendar that is most of the time. The common request (`getetag`, optionally
`getcontenttype`, sync-level 1, no limit) on one of our collections is answered
here from `calendar_item` (href, etag, component) in the request's read
transaction, with the same rights checks and the same XML Radicale writes.
Anything else (other properties, a limit, a bad token, shares, a collection of
another kind) goes to Radicale unchanged.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

from radicale import storage as radicale_storage
from radicale.app import Application as RadicaleApplication
from radicale.app.base import Access
from sqlalchemy import select
from sqlalchemy.orm import Session

from plugins.radicale import state
from plugins.radicale.collection import HREF_CHUNK, STREAM_ROWS, DbCollection
from plugins.radicale.fast_paths import SPOOL_PLAIN_LIMIT, plain, spool, spooled
from server.bodycache import FAST_LEVEL, Spool
from server.models import CalendarItem

Response = tuple[int, Any, Any, Any]
DAV = "{DAV:}"
GETETAG = f"{DAV}getetag"
GETCONTENTTYPE = f"{DAV}getcontenttype"
ANSWERED_PROPS = frozenset({GETETAG, GETCONTENTTYPE})
KNOWN_CHILDREN = frozenset({f"{DAV}sync-token", f"{DAV}sync-level", f"{DAV}prop"})
OK = "HTTP/1.1 200 OK"
NOT_FOUND = "HTTP/1.1 404 Not Found"
XML_TYPE = "text/xml; charset=utf-8"
Row = tuple[str, str, str]  # href, etag, component


def _wanted(body: bytes) -> tuple[str, list[str]] | None:
    """(old token, property tags) of a plain sync-collection request; None for anything else."""
    if b"sync-collection" not in body:
        return None
    try:
        root = ET.fromstring(body)  # depth and size are limited in front (server.web.guards)
    except ET.ParseError:
        return None
    if root.tag != f"{DAV}sync-collection" or any(c.tag not in KNOWN_CHILDREN for c in root):
        return None
    level = (root.findtext(f"{DAV}sync-level") or "1").strip()
    prop = root.find(f"{DAV}prop")
    if level != "1" or prop is None:
        return None
    tags = [p.tag for p in prop]
    if not tags or any(t not in ANSWERED_PROPS for t in tags) or len(set(tags)) != len(tags):
        return None
    return (root.findtext(f"{DAV}sync-token") or "").strip(), tags


def _rows(collection: DbCollection, session: Session, names: Iterable[str] | None
          ) -> Iterator[tuple[str, Row | None]]:
    """(href, row or None when gone) for the names, or every item (oldest first) for None."""
    query = select(CalendarItem.href, CalendarItem.etag, CalendarItem.component).where(
        CalendarItem.collection_id == collection.row.id)
    if names is None:  # streamed: a first sync of a big calendar holds no list of rows
        streamed = query.order_by(CalendarItem.id).execution_options(yield_per=STREAM_ROWS)
        for href, etag, component in session.execute(streamed):
            yield href, (href, etag, component)
        return
    wanted = list(dict.fromkeys(names))
    for offset in range(0, len(wanted), HREF_CHUNK):
        chunk = wanted[offset:offset + HREF_CHUNK]
        found = {row[0]: (row[0], row[1], row[2])
                 for row in session.execute(query.where(CalendarItem.href.in_(chunk)))}
        for href in chunk:
            yield href, found.get(href)


def _write(out: Spool, prefix: str, tags: list[str], href: str, row: Row | None) -> None:
    parts = [f"<response><href>{escape(quote(prefix + href))}</href>"]
    if row is None:
        parts.append(f"<status>{NOT_FOUND}</status></response>")
    else:
        parts.append("<propstat><prop>")
        for tag in tags:
            if tag == GETETAG:
                parts.append(f"<getetag>{escape(row[1])}</getetag>")
            else:
                parts.append("<getcontenttype>text/calendar;charset=utf-8;component="
                             f"{escape(row[2])}</getcontenttype>")
        parts.append(f"</prop><status>{OK}</status></propstat></response>")
    out.write("".join(parts).encode("utf-8"))


def answer(app: RadicaleApplication, environ: dict[str, Any], body: bytes, base_prefix: str,
           path: str, user: str, user_groups: set[str]) -> Response | None:
    """The multistatus for a plain sync-collection on one of our calendars, else None."""
    wanted = _wanted(body)
    if wanted is None or getattr(app, "_sharing")._enabled:  # noqa: B009  # Radicale's own attribute
        return None
    old_token, tags = wanted
    access = Access(getattr(app, "_rights"), user, user_groups, path, None)  # noqa: B009
    if not access.check("r"):
        return None
    storage: radicale_storage.BaseStorage = getattr(app, "_storage")  # noqa: B009
    with storage.acquire_lock("r", user):
        found = next(iter(storage.discover(path)), None)
        if (not isinstance(found, DbCollection) or found.tag != "VCALENDAR"
                or not access.check("r", found)):
            return None
        try:
            token, names = found.sync(old_token)
        except ValueError:
            return None  # Radicale answers with the valid-sync-token error
        # The answer is written as the rows stream by, into a spool that holds a big one
        # as its gzip: neither the rows nor the plain answer are held at once.
        out = spool(environ)
        out.write("<?xml version='1.0' encoding='utf-8'?>\n<multistatus xmlns=\"DAV:\">"
                  f"<sync-token>{escape(token)}</sync-token>".encode())
        prefix = f"{base_prefix}/{found.path}/"
        session = state.current().session
        # Radicale lists the gone hrefs first, then the present ones: a delta keeps those
        # apart (a first sync has none gone and writes straight into the answer).
        present = out if not old_token else Spool(SPOOL_PLAIN_LIMIT, FAST_LEVEL)
        for href, row in _rows(found, session, None if not old_token else names):
            _write(out if row is None else present, prefix, tags, href, row)
    if present is not out:
        for chunk in plain(present.finish()):
            out.write(chunk)
    out.write(b"</multistatus>")
    headers = {"Content-Type": XML_TYPE}
    return 207, headers, spooled(environ, headers, out.finish()), None


def do_REPORT(app: RadicaleApplication, environ: dict[str, Any], base_prefix: str, path: str,
              user: str, user_groups: set[str], request_info: dict[str, Any]) -> Response:
    """A plain sync-collection from the index; every other REPORT as Radicale answers it."""
    stream = environ.get("wsgi.input")
    if isinstance(stream, io.BytesIO):
        found = answer(app, environ, stream.getvalue(), base_prefix, path, user, user_groups)
        if found is not None:
            return found
    return RadicaleApplication.do_REPORT(app, environ, base_prefix, path, user, user_groups,
                                         request_info)
