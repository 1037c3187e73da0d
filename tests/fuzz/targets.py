"""Fuzz targets for the paths that take untrusted bytes.

Each target takes one input and returns when it was accepted (and holds the
invariants below) or refused with the project's own 4xx error; it raises
`Finding` when an invariant breaks. Any other exception is a finding too (the
engine reports it with the input), as are a hang over 1 s and memory over the
bound the runner sets.

- ical: what a phone PUTs, through `server.ical.parse_object`; accepted objects
  must round-trip through icalendar and be read by the strict `ical` parser
  (alarms aside: clients write DISPLAY alarms without a DESCRIPTION).
- xml: CalDAV bodies through BodyLimit + XmlGuard; what passes must not carry a
  DOCTYPE or entity declaration to the XML parser behind it; refusals are 4xx.
- tokens: link tokens through `LinkSigner.loads` (raw strings, and payloads
  signed with the real key): only `InvalidLink`, or an (id, version) pair.
- forms: the booking and manage form parsers and the signed hidden fields.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import xml.parsers.expat
from collections.abc import Callable, Iterable
from typing import Any

import icalendar
from ical.calendar_stream import IcsCalendarStream
from ical.exceptions import CalendarParseError
from itsdangerous import URLSafeTimedSerializer

from server import ical
from server.errors import FieldcalError, InvalidInput
from server.links import InvalidLink, LinkSigner, Purpose
from server.scheduling.booking import Contact
from server.web.guards import XML_METHODS, BodyLimit, XmlGuard
from share import forms

KEYS = ("fuzzing-secret-key-for-the-signers-0123456789",)
SIGNER = LinkSigner(KEYS)
FORM_SIGNER = forms.FormSigner(KEYS)
MAX_BODY = 64 * 1024
METHODS = [*sorted(XML_METHODS), "PUT", "POST"]
FIELDS = ("name", "email", "phone", "address", "problem", "make", "model", "timezone")


class Finding(AssertionError):
    """An invariant of a target does not hold for this input."""


class Reader:
    """Splits one input into typed pieces (the same input always splits the same way)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def byte(self) -> int:
        if self.at >= len(self.data):
            return 0
        self.at += 1
        return self.data[self.at - 1]

    def text(self) -> str:
        """Up to the next 0xFF byte (or the end), as UTF-8 with replacement."""
        end = self.data.find(b"\xff", self.at)
        end = len(self.data) if end < 0 else end
        chunk, self.at = self.data[self.at:end], end + 1
        return chunk.decode("utf-8", "replace")

    def rest(self) -> bytes:
        chunk, self.at = self.data[self.at:], len(self.data)
        return chunk


# --------------------------------------------------------------------------- iCalendar


def _component_names(calendar: icalendar.cal.Component) -> list[str | None]:
    return [c.name for c in calendar.walk()]


def ical_target(data: bytes) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # refused before parsing: "The calendar object is not UTF-8 text." (400)
    try:
        parsed = ical.parse_object(text)
    except InvalidInput:
        return
    try:
        again = icalendar.Calendar.from_ical(parsed.calendar.to_ical())
    except ValueError as exc:
        raise Finding(f"accepted, but icalendar cannot read it back: {exc}") from exc
    if _component_names(again) != _component_names(parsed.calendar):
        raise Finding("accepted, but its components change on the way through icalendar")
    if str(ical.first_component(again).get("uid", "")) != parsed.uid:
        raise Finding("accepted, but the UID changes on the way through icalendar")
    try:
        strict = IcsCalendarStream.calendar_from_ics(ical.without_alarms(text))
    except CalendarParseError as exc:
        raise Finding(f"accepted and stored as sent, but the strict parser refuses it: {exc}") \
            from exc
    strict_uids = ({e.uid for e in strict.events} | {t.uid for t in strict.todos}
                   | {j.uid for j in strict.journal})
    if strict_uids and strict_uids != {parsed.uid}:
        raise Finding(f"the strict parser sees other objects ({sorted(strict_uids)!r}) "
                      f"than the store ({parsed.uid!r})")


# --------------------------------------------------------------------------- XML guard


class _Downstream:
    """Stands in for Radicale: parses the XML body the guard let through."""

    def __init__(self) -> None:
        self.called = False

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        self.called = True
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        parser = xml.parsers.expat.ParserCreate()

        def declared(*_args: object) -> None:
            raise Finding("a DOCTYPE or entity declaration reached the XML parser")

        parser.StartDoctypeDeclHandler = declared
        parser.EntityDeclHandler = declared
        parser.UnparsedEntityDeclHandler = declared
        try:
            parser.Parse(body, True)
        except xml.parsers.expat.ExpatError:
            pass  # malformed XML: Radicale answers 400
        start_response("207 Multi-Status", [])
        return [b""]


def xml_target(data: bytes) -> None:
    reader = Reader(data)
    method = METHODS[reader.byte() % len(METHODS)]
    content_type = ("application/xml", "text/xml; charset=utf-8", "text/calendar",
                    "")[reader.byte() % 4]
    chunked = reader.byte() % 5 == 0
    body = reader.rest()
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "CONTENT_TYPE": content_type,
                               "wsgi.input": io.BytesIO(body), "PATH_INFO": "/dav/ann/"}
    if chunked:
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    else:
        environ["CONTENT_LENGTH"] = str(len(body))
    downstream = _Downstream()
    statuses: list[str] = []

    def start_response(status: str, _headers: list[tuple[str, str]], *_exc: object) -> None:
        statuses.append(status)

    b"".join(BodyLimit(XmlGuard(downstream), MAX_BODY)(environ, start_response))
    if len(statuses) != 1:
        raise Finding(f"start_response called {len(statuses)} times")
    if not downstream.called and not statuses[0].startswith("4"):
        raise Finding(f"refused with {statuses[0]!r}, not a 4xx")


# --------------------------------------------------------------------------- link tokens


def _check_link(token: str) -> None:
    for purpose in Purpose:
        try:
            link_id, version = SIGNER.loads(token, purpose)
        except InvalidLink:
            continue
        if not all(type(v) is int for v in (link_id, version)):
            raise Finding(f"accepted a token with payload {(link_id, version)!r}")


def tokens_target(data: bytes) -> None:
    reader = Reader(data)
    mode = reader.byte() % 3
    text = reader.text()
    if mode == 0:
        _check_link(text)
        return
    try:
        payload = json.loads(text)
    except (ValueError, RecursionError):
        return
    purpose = list(Purpose)[reader.byte() % len(Purpose)]
    serializer = URLSafeTimedSerializer(list(reversed(KEYS)), salt=f"fieldcal.link.{purpose.value}")
    token = serializer.dumps(payload)
    _check_link(token + reader.text() if mode == 2 else token)


# --------------------------------------------------------------------------- forms


def _signed(payload: Any) -> Iterable[str]:
    for serializer in (FORM_SIGNER._booking, FORM_SIGNER._csrf):
        yield serializer.dumps(payload)


def forms_target(data: bytes) -> None:
    reader = Reader(data)
    form = {name: reader.text() for name in FIELDS}
    details, errors = forms.parse_details(form, "Europe/Berlin")
    if not errors:
        contact: Contact = details.contact()
        try:
            contact.validate()
        except InvalidInput:
            pass
        if FORM_SIGNER.load_details(FORM_SIGNER.details_token(details)) != details:
            raise Finding("accepted details do not survive their signed hidden field")
    value = reader.text()
    try:  # a readable time outside the supported years is refused with a 400 (OutOfRange)
        slot = forms.parse_slot(value)
        forms.parse_week(value)
    except InvalidInput:
        slot = None
    if slot is not None and (slot.tzinfo is None or slot.utcoffset() != dt.timedelta(0)):
        raise Finding(f"parse_slot({value!r}) gave {slot!r}, not a UTC time")
    forms.valid_key(value)
    token = reader.text()
    FORM_SIGNER.load_details(token)
    FORM_SIGNER.load_hold(token)
    FORM_SIGNER.csrf_matches(token, 1, 2)
    try:
        payload = json.loads(reader.text())
    except (ValueError, RecursionError):
        return
    for signed in _signed(payload):
        try:
            FORM_SIGNER.load_details(signed)
            FORM_SIGNER.load_hold(signed)
            FORM_SIGNER.csrf_matches(signed, 1, 2)
        except FieldcalError as exc:
            if not 400 <= exc.status < 500:
                raise Finding(f"refused with status {exc.status}") from exc


TARGETS: dict[str, Callable[[bytes], None]] = {
    "ical": ical_target,
    "xml": xml_target,
    "tokens": tokens_target,
    "forms": forms_target,
}
