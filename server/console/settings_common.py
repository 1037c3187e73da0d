"""What the console's settings pages share: who may open them, the write context, form
reading (text into the domain's types) and the errors shown beside each field.

Every rule about what a value may be lives in the domain function the page calls; a form
only turns text into the types that function takes (a number, a moment, a list) and says
so beside the field when the text is not one.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, ParamSpec
from zoneinfo import ZoneInfo

from flask import redirect, request, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from server.actions import Action
from server.audit import trail
from server.console import session
from server.console.routes import refused, request_id, to_sign_in
from server.context import Context
from server.errors import Conflict, FieldcalError, InvalidInput
from server.staff import Member
from server.web.context import database, settings

P = ParamSpec("P")
FORM_ERROR = ""  # the key of a message about the whole form (shown at its top)


class Saved(enum.StrEnum):
    """What a redirect after a successful edit says (never text taken from the request)."""

    HOURS = "hours"
    SKILLS = "skills"
    TIME_OFF_ADDED = "time-off-added"
    TIME_OFF_REMOVED = "time-off-removed"
    AREA_ADDED = "area-added"
    AREA_REMOVED = "area-removed"
    SERVICE_ADDED = "service-added"
    SERVICE_SAVED = "service-saved"
    HOLIDAY_ADDED = "holiday-added"
    HOLIDAY_REMOVED = "holiday-removed"


SAVED_TEXT = {
    Saved.HOURS: "Working hours saved.",
    Saved.SKILLS: "Skills saved.",
    Saved.TIME_OFF_ADDED: "Time off added.",
    Saved.TIME_OFF_REMOVED: "Time off removed.",
    Saved.AREA_ADDED: "Service area added.",
    Saved.AREA_REMOVED: "Service area removed.",
    Saved.SERVICE_ADDED: "Service type added.",
    Saved.SERVICE_SAVED: "Service type saved.",
    Saved.HOLIDAY_ADDED: "Holiday added.",
    Saved.HOLIDAY_REMOVED: "Holiday removed.",
}


def saved_message() -> str:
    try:
        return SAVED_TEXT[Saved(request.args.get("saved", ""))]
    except ValueError:
        return ""


def back(endpoint: str, saved: Saved, **values: Any) -> Response:
    """After a successful POST: see the page again (303), with what was done."""
    return redirect(url_for(endpoint, saved=saved.value, **values), 303)


def staff_pages(view: Callable[P, Response]) -> Callable[P, Response]:
    """Signed out → sign-in; technicians → 403; read-only staff look (a POST → 403);
    dispatchers edit; a POST without the session's CSRF token → 403."""

    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        signed_in = session.member()
        if signed_in is None:
            return to_sign_in()
        if not signed_in.may_look:
            return refused(403, "Staff only",
                           "The console's settings are for dispatchers. Technicians find their "
                           "day through the link dispatch sends them.")
        if request.method not in session.SAFE_METHODS:
            if not signed_in.is_dispatcher:
                return refused(403, "Read-only access",
                               "Your account may look at the settings but not change them. "
                               "Ask a dispatcher to make the change.")
            if not session.csrf_ok():
                return refused(403, "Please reload the page",
                               "This form has expired. Reload the page and try again.")
        return view(*args, **kwargs)

    return wrapper


def signed_in() -> Member:
    found = session.member()
    if found is None:  # staff_pages let the request in: there is a member
        raise RuntimeError("a settings page ran without a signed-in member")
    return found


def reader_zone() -> ZoneInfo:
    """The signed-in person's zone (else the business's): where holidays are read and typed."""
    member = session.member()
    return ZoneInfo(member.timezone if member and member.timezone else settings().timezone)


@contextmanager
def acting() -> Iterator[Context]:
    """One write transaction as the signed-in dispatcher (channel console, audited)."""
    with database().write() as db_session:
        yield Context(db_session, signed_in().actor(request_id()), settings().organizer)


VERSION_FIELD = "version"


class StaleForm(Conflict):
    """The form was filled in from a state that has changed since: it is shown afresh."""


def version(state: object) -> str:
    """What a form sends back to say which state it was edited from (as If-Match does)."""
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_version(session: Session, state: object, entity: str, entity_id: object,
                  action: Action, what: str) -> None:
    """Refuse an edit made from a page loaded before someone else changed the same thing."""
    if request.form.get(VERSION_FIELD, "") == version(state):
        return
    entries = [e for e in trail(session, entity, entity_id) if e.action == action.value]
    who = f"{entries[-1].actor} (via {entries[-1].channel})" if entries else "someone"
    raise StaleForm(f"{what} changed since you loaded this page (last by {who}); the page now "
                   "shows them as they are. Make your change again.")


@dataclass
class Problems:
    """Messages to show beside fields (by form field name), and the page's status."""

    messages: dict[str, str] = field(default_factory=dict)
    status: int = 200

    def add(self, error: FieldcalError, fields: Mapping[str, str] | None = None) -> Problems:
        """The domain's error, beside the form field its `field` maps to (else the form's top)."""
        name = error.field if isinstance(error, InvalidInput) else ""
        where = (fields or {}).get(name, FORM_ERROR)
        self.messages.setdefault(where, error.message)
        self.status = max(self.status, error.status)
        return self

    def __bool__(self) -> bool:
        return bool(self.messages)


def text(name: str, limit: int = 2000) -> str:
    given = request.form.get(name, "").strip()
    if len(given) > limit:
        raise InvalidInput(f"At most {limit} characters here (this has {len(given)}).", name)
    return given


def listed(name: str) -> list[str]:
    """A comma-separated field as a list (empty pieces dropped)."""
    return [piece.strip() for piece in text(name, 5000).split(",") if piece.strip()]


def whole(name: str, what: str) -> int:
    given = text(name, 40)
    try:
        return int(given)
    except ValueError:
        raise InvalidInput(f"{what} must be a whole number{f', not {given!r}' if given else ''}.",
                           name) from None


def number(name: str, what: str) -> float:
    given = text(name, 40).replace(",", ".")
    try:
        return float(given)
    except ValueError:
        raise InvalidInput(f"{what} must be a number, e.g. 25{f', not {given!r}' if given else ''}.",
                           name) from None


def day(name: str) -> dt.date:
    given = text(name, 40)
    try:
        return dt.date.fromisoformat(given)
    except ValueError:
        raise InvalidInput("Give a date as YYYY-MM-DD, e.g. 2026-12-24"
                           f"{f' (not {given!r})' if given else ''}.", name) from None


def clock(name: str) -> dt.time | None:
    given = text(name, 40)
    if not given:
        return None
    try:
        return dt.time.fromisoformat(given)
    except ValueError:
        raise InvalidInput(f"Give a time as HH:MM, e.g. 08:30 (not {given!r}), or leave it "
                           "empty for the whole day.", name) from None


def span(first: str, start: str, last: str, until: str, zone: ZoneInfo
         ) -> tuple[dt.datetime, dt.datetime]:
    """From a first day (and time) to a last day (and time) in `zone`, as UTC; without a time
    the first day starts at midnight and the last day is included whole."""
    begin_day, begin_time, end_day, end_time = day(first), clock(start), day(last), clock(until)
    begin = dt.datetime.combine(begin_day, begin_time or dt.time(), zone)
    if end_time is None:
        end = dt.datetime.combine(end_day + dt.timedelta(days=1), dt.time(), zone)
    else:
        end = dt.datetime.combine(end_day, end_time, zone)
    return begin.astimezone(dt.UTC), end.astimezone(dt.UTC)


def local_span(starts_at: dt.datetime, ends_at: dt.datetime, zone: ZoneInfo) -> str:
    """Like "Thu 24 Dec 2026 - Sat 26 Dec 2026" for whole days, else with the times."""
    a, b = starts_at.astimezone(zone), ends_at.astimezone(zone)
    if a.time() == dt.time() and b.time() == dt.time():
        last = b - dt.timedelta(days=1)
        if last.date() == a.date():
            return f"{a:%a %d %b %Y}"
        return f"{a:%a %d %b %Y} – {last:%a %d %b %Y}"
    return f"{a:%a %d %b %Y %H:%M} – {b:%a %d %b %Y %H:%M}"
