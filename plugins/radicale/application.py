"""Radicale's Application with the domain's answers: status and message of refused writes.

Radicale turns any exception from storage into 500 (and ValueError into a bare
400). Domain errors (server.errors) carry their status and a message for a
person; this subclass answers with exactly those, after the request's
transaction was rolled back by `Storage.acquire_lock`. A write that the rights
refuse on a calendar the user may read (a team or customer view, or its alias
in a home) says that the calendar is read-only.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import vobject
from radicale import httputils
from radicale import item as radicale_item
from radicale.app import Application as RadicaleApplication

from plugins.radicale import aliases, state
from plugins.radicale.rights import calendar_rights
from server.errors import FieldcalError, InvalidInput
from server.ical import parse_object

Response = tuple[int, Any, Any, Any]
Handler = Callable[..., Response]
REQUEST_ID_HEADER = "HTTP_X_REQUEST_ID"
WRITE_METHODS = frozenset({"PUT", "DELETE", "MKCALENDAR", "MKCOL", "MOVE", "PROPPATCH"})


def text_response(status: int, message: str) -> Response:
    return status, {"Content-Type": "text/plain"}, message.rstrip("\n") + "\n", None


def _without_etag(headers: Mapping[str, str] | Sequence[tuple[str, str]]) -> dict[str, str]:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    return {k: v for k, v in pairs if k.lower() != "etag"}


def bad_calendar_reason(body: bytes, max_occurrences: int) -> str:
    """Why Radicale could not take this calendar object, in words a person can act on."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "The calendar object is not UTF-8 text."
    if not text.strip():
        return "The request has no calendar object."
    try:
        parse_object(text)
    except InvalidInput as error:
        return error.message
    try:
        components = radicale_item.read_components(text)
        radicale_item.check_and_sanitize_items(
            components, max_vevent_rrule_occurrence=max_occurrences, tag="VCALENDAR")
    except (vobject.base.VObjectError, ValueError, RuntimeError, AttributeError) as error:
        return f"Malformed iCalendar: {error}"
    return "The calendar object could not be read."


def read_only_reason(who: state.Principal, path: str) -> str | None:
    """Why a write to `path` is refused, when it is a read-only view `who` may read."""
    segments = path.strip("/").split("/")
    if len(segments) < 2:
        return None
    home, name = segments[:2]
    if "r" not in calendar_rights(who, home, name):
        return None
    target = aliases.target_of(name)
    if not aliases.is_view_home((target or home).split("/", 1)[0]):
        return None
    shown = f"{home}/{name}"
    if target is not None:
        return (f"{shown!r} shows {target!r}, a read-only view of the schedule; "
                "changes are made by dispatch.")
    return f"{shown!r} is a read-only view of the schedule; changes are made by dispatch."


def _path_and_user(args: Sequence[Any]) -> tuple[str, str]:
    """Radicale's handler arguments after environ: base_prefix, path, user, ..."""
    return (str(args[1]), str(args[2] or "")) if len(args) > 2 else ("", "")


class Application(RadicaleApplication):
    def _serve(self, handler: Handler, environ: dict[str, Any], *args: Any) -> Response:
        request_id = str(environ.get(REQUEST_ID_HEADER) or uuid.uuid4().hex)[:64]
        notes, token = state.begin_request(request_id)
        try:
            response = handler(self, environ, *args)
        except FieldcalError as error:
            return text_response(error.status, error.message)
        finally:
            state.end_request(token)
        if notes.altered and response[0] in (200, 201, 204):
            response = (response[0], _without_etag(response[1]), response[2], response[3])
        if response == httputils.NOT_ALLOWED and environ.get("REQUEST_METHOD") in WRITE_METHODS:
            path, user = _path_and_user(args)
            who = state.remembered(user) if user else None
            reason = read_only_reason(who, path) if who is not None else None
            if reason is not None:
                return text_response(403, reason)
        return response

    def _reserved_name(self, args: Sequence[Any]) -> Response | None:
        """MKCALENDAR/MKCOL of an alias name: refused before Radicale answers 409 for it."""
        path, user = _path_and_user(args)
        segments = path.strip("/").split("/")
        if user and len(segments) == 2 and aliases.SEPARATOR in segments[1]:
            return text_response(403, aliases.RESERVED_NAME_MESSAGE)
        return None

    def do_PUT(self, environ: dict[str, Any], *args: Any) -> Response:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(body)
        response = self._serve(RadicaleApplication.do_PUT, environ, *args)
        if response[0] == 400 and response[2] == httputils.BAD_REQUEST[2]:
            reason = bad_calendar_reason(body, self._max_vevent_rrule_occurrence)
            return text_response(400, reason)
        return response

    def do_DELETE(self, environ: dict[str, Any], *args: Any) -> Response:
        return self._serve(RadicaleApplication.do_DELETE, environ, *args)

    def do_GET(self, environ: dict[str, Any], *args: Any) -> Response:
        return self._serve(RadicaleApplication.do_GET, environ, *args)

    def do_MKCALENDAR(self, environ: dict[str, Any], *args: Any) -> Response:
        return self._reserved_name(args) or self._serve(
            RadicaleApplication.do_MKCALENDAR, environ, *args)

    def do_MKCOL(self, environ: dict[str, Any], *args: Any) -> Response:
        return self._reserved_name(args) or self._serve(RadicaleApplication.do_MKCOL, environ, *args)

    def do_MOVE(self, environ: dict[str, Any], *args: Any) -> Response:
        return self._serve(RadicaleApplication.do_MOVE, environ, *args)

    def do_PROPFIND(self, environ: dict[str, Any], *args: Any) -> Response:
        return self._serve(RadicaleApplication.do_PROPFIND, environ, *args)

    def do_PROPPATCH(self, environ: dict[str, Any], *args: Any) -> Response:
        return self._serve(RadicaleApplication.do_PROPPATCH, environ, *args)

    def do_REPORT(self, environ: dict[str, Any], *args: Any) -> Response:
        return self._serve(RadicaleApplication.do_REPORT, environ, *args)
