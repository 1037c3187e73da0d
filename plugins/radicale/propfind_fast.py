"""PROPFIND Depth 1 on a calendar, answered from per-item fragments (issue 14).

Radicale answers a calendar listing by building an element tree per item
(path sanitising, a rights check per item, the properties one by one) and
serialising it. For the listings clients send (a `<prop>` list of item
properties, plugins.radicale.propfind_props) the items of one calendar share
everything but their row, so this path answers them from cached fragments
(plugins.radicale.propfind_cache) rendered from one narrow query, and leaves
the calendar's own `<response>` to Radicale's `xml_propfind_response`.

It takes a request only when Radicale would answer it the same way: Depth 1
exactly, a signed-in user, no `If` headers, no body encoding, UTF-8, no
sharing, a `<home>/<calendar>` path that is a database calendar (aliases
included) the user may read with plain r/w rights. Anything else returns None
and Radicale answers. tests/test_propfind_fast.py compares both answers.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import io
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from http import client
from typing import Any
from xml.etree import ElementTree as ET

from radicale import httputils, pathutils, xmlutils
from radicale.app import Application as RadicaleApplication
from radicale.app.base import Access
from radicale.app.propfind import xml_propfind_response
from sqlalchemy import String, cast, func, select, type_coerce
from sqlalchemy.types import LargeBinary

from plugins.radicale.collection import DbCollection
from plugins.radicale.fast_paths import (
    joined,
    plain_utf8,
    radicale_compresses,
    spool,
    spooled,
    switched_off,
)
from plugins.radicale.propfind_cache import FragmentCache, Row
from plugins.radicale.propfind_props import (
    ItemTemplate,
    Request,
    UnknownPrefix,
    declared_prefixes,
    wanted_props,
)
from plugins.radicale.state import current
from plugins.radicale.stored_item import http_date
from server.bodycache import PlainChunks, Streamed
from server.models import CalendarItem

Response = tuple[int, Any, Any, Any]
PLAIN_RIGHTS = frozenset("rw")
FRAGMENTS = FragmentCache()
ROW_BATCH = 1000
JOINED = (b"calendar-user-address-set", b"supported-address-data")  # rewritten after: bytes
_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("propfind_fast", default=True)


@dataclass
class Counts:
    """How many PROPFINDs this process answered here (tests check the path was taken)."""

    answered: int = 0


COUNTS = Counts()


def disabled() -> ContextManager[None]:
    """Radicale answers every PROPFIND in this context (the differential test's reference)."""
    return switched_off(_enabled)


def _body(environ: dict[str, Any]) -> bytes | None:
    """The request body, put back for Radicale; None when it is not plain UTF-8 XML."""
    if not plain_utf8(environ):
        return None
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def _taken(app: Any, environ: dict[str, Any], path: str, user: str) -> bool:
    """Whether the request is one this path may answer, before its body is read."""
    return (_enabled.get() and bool(user) and environ.get("HTTP_DEPTH") == "1"
            and not any(key.startswith("HTTP_IF") for key in environ)
            and not app._sharing._enabled and app._encoding.lower() == "utf-8"
            and len([s for s in path.split("/") if s]) == 2)


def _rows(collection: DbCollection, template: ItemTemplate) -> Iterator[Row]:
    """(href, etag, component[, modified][, length]) of every item, in Radicale's order."""
    session = current().session
    columns: list[Any] = [CalendarItem.href, CalendarItem.etag, CalendarItem.component]
    if template.needs_modified:
        columns.append(type_coerce(CalendarItem.updated_at, String))  # parsed only when rendered
    if template.needs_length:
        if session.get_bind().dialect.name == "postgresql":
            columns.append(func.octet_length(CalendarItem.text))
        else:
            columns.append(func.length(cast(CalendarItem.text, LargeBinary)))
    query = (select(*columns).where(CalendarItem.collection_id == int(collection.row.id))
             .order_by(CalendarItem.id))
    connection = session.connection()
    # The driver's own rows: SQLAlchemy's result rows cost more than the query for big
    # calendars. The one parameter is an integer id, written into the statement.
    sql = str(query.compile(connection, compile_kwargs={"literal_binds": True}))
    # On PostgreSQL a named (server-side) cursor: psycopg's own would hold every row.
    postgres = connection.dialect.name == "postgresql"
    cursor = connection.connection.cursor(name="fieldcal_listing") if postgres \
        else connection.connection.cursor()
    try:
        cursor.execute(sql)
        while batch := cursor.fetchmany(ROW_BATCH):  # not all rows held at once
            yield from batch
    finally:
        cursor.close()


def _count(collection: DbCollection) -> int:
    """How many items the calendar has (the fragment cache will not gather a listing too big
    to keep)."""
    query = select(func.count()).select_from(CalendarItem).where(
        CalendarItem.collection_id == int(collection.row.id))
    return int(current().session.execute(query).scalar_one())


def _modified(value: object) -> str:
    """A stored `updated_at` (text on SQLite, a datetime on PostgreSQL) as Radicale shows it."""
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return http_date(moment)


def _renderer(template: ItemTemplate) -> Any:
    def render(row: Row) -> bytes:
        href, etag, component = str(row[0]), str(row[1]), str(row[2] or "")
        modified = _modified(row[3]) if template.needs_modified else ""
        length = str(row[-1]) if template.needs_length else ""
        return template.render(href, etag, component, modified, length)
    return render


def _head(app: Any, base_prefix: str, path: str, collection: DbCollection, props: Sequence[str],
          user: str, write: bool, raw: str, request_info: dict[str, Any]) -> bytes:
    """The multistatus with the calendar's own response, as Radicale writes it."""
    multistatus = ET.Element(xmlutils.make_clark("D:multistatus"))
    multistatus.append(xml_propfind_response(
        app, base_prefix, path, collection, props, user, app._encoding,
        max_resource_size=app._max_resource_size, write=write, raw_permissions=raw))
    return bytes(app._xml_response(multistatus, request_info))


def answer(app: Any, environ: dict[str, Any], base_prefix: str, path: str, user: str,
           user_groups: set[str], request_info: dict[str, Any]) -> Response | None:
    """The 207 answer to a calendar listing, or None for Radicale to answer."""
    if not _taken(app, environ, path, user):
        return None
    body = _body(environ)
    wanted = None if body is None else wanted_props(body)
    if wanted is None:
        return None
    props, parsed = wanted
    access = Access(app._rights, user, user_groups, path)
    if not PLAIN_RIGHTS.issuperset(access.permissions) or "r" not in access.permissions:
        return None
    with app._storage.acquire_lock("r", user):
        found = next(iter(app._storage.discover(path, "0")), None)
        if not isinstance(found, DbCollection) or found.tag != "VCALENDAR":
            return None
        raw = app._rights.authorization(user, user_groups, pathutils.unstrip_path(found.path, True))
        if not PLAIN_RIGHTS.issuperset(raw) or "r" not in raw:
            return None
        write = "w" in raw
        head = _head(app, base_prefix, path, found, props, user, write, raw, request_info)
        request = Request(base_prefix, found.path, user, write, raw, app._encoding,
                          app._max_resource_size)
        try:
            template = ItemTemplate(props, request, declared_prefixes(head))
        except UnknownPrefix:
            return None
        shape = (request, props, head[:head.index(b">", head.index(b"?>") + 2)])
        # Written as the rows stream by, into a spool that holds a big answer as its gzip:
        # neither the rows, nor the fragments, nor the plain answer are held at once. The
        # fragments of a listing the cache keeps are only referenced (not copied) until
        # the end: the cache holds them anyway.
        close = head.rindex(b"</")
        edited = any(marker in head for marker in JOINED)  # Application.do_PROPFIND: bytes
        out = spool(environ)
        out.write(head[:close])
        shared: list[bytes] = []
        for fragment, kept in FRAGMENTS.stream(shape, _rows(found, template),
                                               _renderer(template), _count(found)):
            if kept:
                shared.append(fragment)
                continue
            for piece in shared:
                out.write(piece)
            shared.clear()
            out.write(fragment)
    headers = {"DAV": httputils.DAV_HEADERS, "Content-Type": f"text/xml; charset={app._encoding}"}
    answer_body: bytes | Streamed
    if shared and not edited and not radicale_compresses(environ):
        answer_body = PlainChunks([head[:close], *shared, head[close:]])
    else:
        for piece in shared:
            out.write(piece)
        out.write(head[close:])
        finished = out.finish()
        answer_body = joined(finished) if edited else spooled(environ, headers, finished)
        del finished
    del out, shared
    COUNTS.answered += 1
    request_info["status"] = client.MULTI_STATUS
    return client.MULTI_STATUS, headers, answer_body, xmlutils.pretty_xml(parsed)


def handle(app: Any, environ: dict[str, Any], *args: Any) -> Response:
    """Radicale's PROPFIND handler, with calendar listings answered here."""
    fast = answer(app, environ, *args)
    if fast is not None:
        return fast
    return RadicaleApplication.do_PROPFIND(app, environ, *args)
