"""Radicale's Application with the domain's answers: status and message of refused writes.

Radicale turns any exception from storage into 500 (and ValueError into a bare
400). Domain errors (server.errors) carry their status and a message for a
person; this subclass answers with exactly those, after the request's
transaction was rolled back by `Storage.acquire_lock`. A write that the rights
refuse on a calendar the user may read (a team or customer view, or its alias
in a home) says that the calendar is read-only. A login the throttle refused
(plugins.radicale.auth) is answered 429 with Retry-After instead of 401.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import vobject
from radicale import httputils
from radicale import item as radicale_item
from radicale.app import Application as RadicaleApplication

from plugins.radicale import (
    addressbook,
    addresses,
    aliases,
    freebusy,
    propfind_fast,
    put_fast,
    query_fast,
    state,
    whole_get,
)
from plugins.radicale.rights import calendar_rights
from server.db import Database
from server.errors import FieldcalError, InvalidInput
from server.ical import check_characters, parse_object

Response = tuple[int, Any, Any, Any]
Handler = Callable[..., Response]
REQUEST_ID_HEADER = "HTTP_X_REQUEST_ID"
EXPAND = re.compile(rb"<(?:[A-Za-z0-9_-]+:)?expand\b[^>]*>")
EXPAND_BOUND = re.compile(rb"\b(start|end)=[\"']([0-9]{8}T[0-9]{6}Z)[\"']")
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
    except (vobject.base.VObjectError, ValueError, TypeError, RuntimeError, AttributeError) as error:
        return f"Malformed iCalendar: {error}"
    return "The calendar object could not be read."


def control_characters_reason(body: bytes) -> str | None:
    """Why the body cannot be stored as it was sent (control characters), if it cannot."""
    try:
        check_characters(body.decode("utf-8"))
    except UnicodeDecodeError:
        return None  # Radicale answers for the encoding
    except InvalidInput as error:
        return error.message
    return None


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


def write_refusal_reason(who: state.Principal, method: str, path: str) -> str | None:
    """Why Radicale refused a write `who` has no right to make, in words a person can act on."""
    reason = read_only_reason(who, path) or addressbook.refusal(who, path)
    if reason is not None:
        return reason
    segments = [s for s in path.strip("/").split("/") if s]
    own_home = f"/{who.login}/"
    if not segments:
        return "Nothing can be created or changed at the root; use a calendar in your home."
    if len(segments) == 1:
        if method == "MKCOL" or method == "MKCALENDAR":
            return ("Homes are created by dispatch (fieldcal technician add); create calendars "
                    f"inside your home, e.g. {own_home}<name>/.")
        return f"Homes cannot be changed over CalDAV; change a calendar in {own_home} instead."
    rights = calendar_rights(who, segments[0], segments[1])
    if method == "MKCOL" and "w" in rights:
        return ("A plain MKCOL makes a folder, and only calendars can be created here: use "
                "MKCALENDAR (or an extended MKCOL whose resourcetype is a calendar) at "
                f"/{segments[0]}/{segments[1]}/.")
    if "w" not in rights:
        if who.is_dispatcher:
            return f"/{'/'.join(segments[:2])}/ cannot be changed over CalDAV."
        return (f"{who.login!r} may create and change calendars only in their own home, "
                f"{own_home}; /{segments[0]}/ belongs to someone else or does not exist.")
    return None


def _path_and_user(args: Sequence[Any]) -> tuple[str, str]:
    """Radicale's handler arguments after environ: base_prefix, path, user, ..."""
    return (str(args[1]), str(args[2] or "")) if len(args) > 2 else ("", "")


def expand_range(body: bytes) -> tuple[dt.datetime, dt.datetime] | None:
    """The <C:expand> range a REPORT body asks for, if any."""
    element = EXPAND.search(body)
    if element is None:
        return None
    bounds = dict(EXPAND_BOUND.findall(element.group()))
    try:
        start, end = (dt.datetime.strptime(bounds[k].decode(), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
                      for k in (b"start", b"end"))
    except (KeyError, ValueError):
        return None
    return start, end


def _buffered_body(environ: dict[str, Any]) -> bytes:
    """The request body, read once and put back for Radicale (its size is limited in front)."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def too_many_attempts(retry_after: int) -> tuple[str, list[tuple[str, str]], list[bytes]]:
    body = (f"Too many failed sign-ins from this address or for this login. "
            f"Try again in {retry_after} seconds.\n").encode()
    return ("429 Too Many Requests",
            [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
             ("Retry-After", str(retry_after))], [body])


class Application(RadicaleApplication):
    answer_freebusy = True  # free-busy-query from the database (False: Radicale's own path)

    def _handle_request(self, environ: dict[str, Any]) -> tuple[str, Any, Any]:  # type: ignore[override]  # Radicale's arguments, passed on as they come
        """Radicale's request handling; a login the throttle refused is 429, not 401."""
        token = state.begin_login()
        database = self._database()
        try:
            with state.signing_in_with_the_request(database):
                status, headers, answers = super()._handle_request(environ)
            refused_for = state.login_refused_for()
        finally:
            state.end_login(token)
        if refused_for is not None and status.startswith("401"):
            return too_many_attempts(refused_for)
        return status, headers, whole_get.chunks(answers)

    def _database(self) -> Database:
        handle = self.__dict__.get("_database_handle")
        if handle is None:
            handle = self.__dict__["_database_handle"] = state.DatabaseHandle(self.configuration)
        return handle()

    def _serve(self, handler: Handler, environ: dict[str, Any], *args: Any,
               expand: tuple[dt.datetime, dt.datetime] | None = None,
               finish: Callable[[dict[str, Any], Response, state.RequestNotes], Response] | None = None,
               ) -> Response:
        request_id = str(environ.get(REQUEST_ID_HEADER) or uuid.uuid4().hex)[:64]
        notes, token = state.begin_request(request_id)
        notes.expand = expand
        notes.vcard_version = addressbook.requested_version(environ)
        if finish is not None:  # a GET: a whole calendar its If-None-Match names is not rendered
            notes.if_none_match = str(environ.get("HTTP_IF_NONE_MATCH") or "")
            notes.serving_get = True
        try:
            addressbook.keep_current(self.configuration, *_path_and_user(args))
            response = handler(self, environ, *args)
            if finish is not None:
                response = finish(environ, response, notes)
        except FieldcalError as error:
            return text_response(error.status, error.message)
        finally:
            state.end_request(token)
        if notes.altered and response[0] in (200, 201, 204):
            response = (response[0], _without_etag(response[1]), response[2], response[3])
        if response == httputils.NOT_ALLOWED and environ.get("REQUEST_METHOD") in WRITE_METHODS:
            path, user = _path_and_user(args)
            who = state.remembered(user) if user else None
            method = str(environ.get("REQUEST_METHOD"))
            reason = write_refusal_reason(who, method, path) if who is not None else None
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

    def do_PUT(self, environ: dict[str, Any], *args: Any) -> Response:  # type: ignore[override]  # Radicale's arguments, passed on as they come
        body = _buffered_body(environ)
        refused = control_characters_reason(body)
        if refused is not None:  # Radicale's reader would drop some and keep a lone CR
            return text_response(400, refused)
        response = self._serve(put_fast.do_PUT, environ, *args)
        if response[0] == 400 and response[2] == httputils.BAD_REQUEST[2]:
            reason = bad_calendar_reason(body, self._max_vevent_rrule_occurrence)
            return text_response(400, reason)
        return response

    def do_DELETE(self, environ: dict[str, Any], *args: Any) -> Response:  # type: ignore[override]  # Radicale's arguments, passed on as they come
        return self._serve(RadicaleApplication.do_DELETE, environ, *args)

    def do_GET(self, environ: dict[str, Any], *args: Any) -> Response:  # type: ignore[override]  # Radicale's arguments, passed on as they come
        answered = freebusy.view(self, environ, args) if self.answer_freebusy else None
        if answered is not None:
            return answered
        return freebusy.one_charset(
            self._serve(RadicaleApplication.do_GET, environ, *args, finish=whole_get.finish))

    def do_MKCALENDAR(self, environ: dict[str, Any], *args: Any) -> Response:  # type: ignore[override]  # Radicale's arguments, passed on as they come
        return self._reserved_name(args) or self._serve(
            RadicaleApplication.do_MKCALENDAR, environ, *args)

    def do_MKCOL(self, environ: dict[str, Any], *args: Any) -> Response:  # type: ignore[override]  # Radicale's arguments, passed on as they come
        return self._reserved_name(args) or self._serve(RadicaleApplication.do_MKCOL, environ, *args)

    def do_MOVE(self, environ: dict[str, Any], *args: Any) -> Response:  # type: ignore[override]  # Radicale's arguments, passed on as they come
        return self._serve(RadicaleApplication.do_MOVE, environ, *args)

    def do_PROPFIND(self, environ: dict[str, Any], *args: Any) -> Response:  # type: ignore[override]  # Radicale's arguments, passed on as they come
        response = self._serve(propfind_fast.handle, environ, *args)
        if response[0] == 207 and isinstance(response[2], bytes) \
                and b"calendar-user-address-set" in response[2]:
            database = state.DatabaseHandle(self.configuration)()
            response = (response[0], response[1], addresses.with_mailto(response[2], database),
                        response[3])
        if response[0] == 207 and isinstance(response[2], bytes) \
                and b"supported-address-data" in response[2]:
            response = (response[0], response[1], addressbook.with_vcard4(response[2]), response[3])
        return response

    def do_PROPPATCH(self, environ: dict[str, Any], *args: Any) -> Response:  # type: ignore[override]  # Radicale's arguments, passed on as they come
        return self._serve(RadicaleApplication.do_PROPPATCH, environ, *args)

    def do_REPORT(self, environ: dict[str, Any], *args: Any) -> Response:  # type: ignore[override]  # Radicale's arguments, passed on as they come
        body = _buffered_body(environ)
        answered = freebusy.report(self, body, args) if self.answer_freebusy else None
        if answered is not None:
            return answered
        expand = expand_range(body)
        return freebusy.one_charset(
            self._serve(query_fast.do_REPORT, environ, *args, expand=expand))
