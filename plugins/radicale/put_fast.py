"""PUT of a new calendar object answered without Radicale's look-ups (issue 14).

Radicale's `do_PUT` finds the item at the path, then the calendar (again), then
asks the calendar whether another item has the UID, then uploads; each is a
statement of its own, behind Radicale's path and rights machinery. For the
request clients send to create an event or a to-do (`If-None-Match: *` or no
precondition, a UTF-8 `text/calendar` body, a path `<home>/<calendar>/<href>`
in a database calendar of kind `calendar` that the user may write), this path
prepares the item with Radicale's own `prepare` (so the stored text, the ETag and
every refusal of the body are Radicale's), finds whether the href or the UID is
taken in one statement, and stores the object with `calendars.put_item` (the one
write path), passing on what it read. A UID taken by another item is answered
with Radicale's own `no-uid-conflict` error. Anything else (an item at the href,
If-Match, sharing, hooks, aliases, address books, views, a body Radicale refuses
or would read otherwise) goes to Radicale unchanged. tests/test_put_fast.py
compares both answers.
"""

from __future__ import annotations

import contextvars
import errno
import io
import re
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass
from http import client
from typing import Any

import vobject
from radicale import httputils
from radicale import item as radicale_item
from radicale import rights as radicale_rights
from radicale.app import Application as RadicaleApplication
from radicale.app.base import Access
from radicale.app.put import prepare

from plugins.radicale import aliases, state
from plugins.radicale.collection import DbCollection
from plugins.radicale.fast_paths import plain_utf8, switched_off
from server import calendars
from server.models import CollectionKind

Response = tuple[int, Any, Any, Any]
CALENDAR_TYPE = "text/calendar"
ERRNO = re.compile(r"\[Errno ([0-9]+)\]")
READ_ERRORS = (vobject.base.VObjectError, ValueError, TypeError, AttributeError, LookupError,
               RuntimeError, ArithmeticError)  # what vobject's reader raises (UnicodeError too)
_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("put_fast", default=True)


@dataclass
class Counts:
    """How many PUTs this process answered here, refusals by `put_item` included (tests
    check the path was taken)."""

    answered: int = 0


COUNTS = Counts()


def disabled() -> ContextManager[None]:
    """Radicale answers every PUT in this context (the differential test's reference)."""
    return switched_off(_enabled)


def _text(app: Any, environ: dict[str, Any]) -> str | None:
    """The buffered body (application.do_PUT) as Radicale decodes it; None unless it is
    plain UTF-8 text/calendar whose length is the one announced."""
    content_type = str(environ.get("CONTENT_TYPE") or "")
    if not plain_utf8(environ) or content_type.split(";", maxsplit=1)[0] != CALENDAR_TYPE:
        return None
    if "charset=" in content_type:  # the charset Radicale decodes with, read as it reads it
        charset = content_type.split("charset=")[1].split(";")[0].strip()
        if charset.lower() not in ("utf-8", "utf8"):
            return None
    if str(app.configuration.get("encoding", "request")).lower() not in ("utf-8", "utf8"):
        return None
    stream = environ.get("wsgi.input")
    if not isinstance(stream, io.BytesIO):
        return None
    body = stream.getvalue()
    try:
        if int(environ.get("CONTENT_LENGTH") or 0) != len(body) or not body:
            return None
        return body.decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


def _prepared(app: Any, text: str, path: str) -> radicale_item.Item | None:
    """The item exactly as Radicale's do_PUT prepares it for a calendar; None if Radicale
    would refuse the body or read it otherwise."""
    try:
        components = radicale_item.read_components(text)
    except READ_ERRORS:
        return None
    items, tag, whole, _, failed = prepare(
        components, path, CALENDAR_TYPE, False, True, app._max_resource_size,
        app._max_vevent_rrule_occurrence)
    if failed is not None or tag != "VCALENDAR" or whole is not False:
        return None
    prepared = list(items)
    if len(prepared) != 1 or not prepared[0].uid:
        return None
    return prepared[0]


def _taken(collection: DbCollection, href: str, uid: str) -> tuple[bool, bool]:
    """(an item is at href, another item has the UID): put_item's own look-up."""
    rows = state.current().session.connection().execute(calendars.HREF_OR_UID, {
        "b_collection": collection.row.id, "b_href": href, "b_uid": uid}).all()
    return any(row.href == href for row in rows), any(row.href != href for row in rows)


def answer(app: Any, environ: dict[str, Any], base_prefix: str, path: str, user: str,
           user_groups: set[str], request_info: dict[str, Any]) -> Response | None:
    """201 with the stored object's ETag (or Radicale's 409 for a UID in use), or None."""
    segments = path.strip("/").split("/")
    if (not _enabled.get() or not user or app._sharing._enabled or app._hook.enabled
            or path.endswith("/") or len(segments) != 3 or not all(segments)
            or aliases.target_of(segments[1]) is not None
            or environ.get("HTTP_IF_MATCH") or environ.get("HTTP_IF_NONE_MATCH", "") not in ("", "*")):
        return None
    access = Access(app._rights, user, user_groups, path, None)
    if (radicale_rights.intersect(access.permissions, "Ww")
            or "w" not in access.parent_permissions):
        return None
    text = _text(app, environ)
    item = None if text is None else _prepared(app, text, path)
    if item is None:
        return None
    storage = app._storage
    with storage.acquire_lock("w", user, path=path, request="PUT", actor=user):
        txn = state.current()
        collection = storage.calendar_at(txn.session, segments[0], segments[1])
        if (not isinstance(collection, DbCollection) or collection.kind != CollectionKind.CALENDAR
                or collection.tag != "VCALENDAR"):
            return None
        href = segments[2]
        at_href, uid_taken = _taken(collection, href, item.uid)
        if at_href:
            return None  # a replacement: Radicale reads what it replaces
        COUNTS.answered += 1  # from here on this path answers (a refusal of put_item too)
        if uid_taken:
            request_info["status"] = client.CONFLICT
            return app._webdav_error_response(
                client.CONFLICT, "C:no-uid-conflict", request_info)
        ctx = storage.context()
        txn.forget_items()
        try:
            stored, _ = calendars.put_item(ctx, collection.row, href, item.serialize(),
                                           known=calendars.Known(item.uid, None))
        except ValueError as error:  # as Radicale's do_PUT answers a ValueError of upload
            return _upload_failed(error)
    return client.CREATED, {"ETag": stored.etag}, None, None


def _upload_failed(error: ValueError) -> Response:
    """Radicale's answer to a ValueError raised by the storage's upload."""
    errno_match = ERRNO.search(str(error))
    if errno_match is None:
        return httputils.BAD_REQUEST
    number = int(errno_match.group(1))
    if number == errno.ENOSPC:
        return httputils.INSUFFICIENT_STORAGE
    if number in (errno.EPERM, errno.EACCES):
        return httputils.FORBIDDEN
    return httputils.INTERNAL_SERVER_ERROR


def do_PUT(app: Any, environ: dict[str, Any], base_prefix: str, path: str, user: str,
           user_groups: set[str], request_info: dict[str, Any]) -> Response:
    """A new calendar object stored here; every other PUT by Radicale."""
    found = answer(app, environ, base_prefix, path, user, user_groups, request_info)
    if found is not None:
        return found
    return RadicaleApplication.do_PUT(
        app, environ, base_prefix, path, user, user_groups, request_info)
