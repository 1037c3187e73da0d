"""Free/busy time of a technician, answered from the database (RFC 4791 §7.10, RFC 5545 VFREEBUSY).

What is busy is what the business counts as taken, the same things booking checks:

- visits (not cancelled, holds not expired) over their blocked range: the buffers
  before and after and the travel are time the technician is taken (BUSY, or
  BUSY-TENTATIVE for a tentative visit);
- opaque, not cancelled personal items, recurring ones expanded (BUSY, or
  BUSY-TENTATIVE for STATUS:TENTATIVE); TRANSP:TRANSPARENT items are free;
- the technician's time off and the holidays (BUSY-UNAVAILABLE).

Every period is cut to the queried window, and the window is bounded (MAX_WINDOW):
the cost depends on the window, never on how dense a rule is or when it began
(`server.busy` expands by chunks from the window and flattens rules that repeat
within the hour).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import icalendar
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from server.busy import (
    EXPANSIONS,
    MAX_OCCURRENCES,
    Occurrence,
    expand,
    occurrence_of,
    occurrences_size,
)
from server.errors import InvalidInput
from server.ical import PRODID
from server.models import (
    Appointment,
    AppointmentStatus,
    CalendarItem,
    Collection,
    CollectionKind,
    TimeOff,
    User,
    utcnow,
)

BUSY, TENTATIVE, UNAVAILABLE = "BUSY", "BUSY-TENTATIVE", "BUSY-UNAVAILABLE"
MAX_WINDOW = dt.timedelta(days=366)
MAX_ROUNDS = 20  # capped expansions of one item; the rest of the window then counts as busy
UTC_FORMAT = "%Y%m%dT%H%M%SZ"
RECURRENCE_WORDS = ("RRULE", "RDATE", "EXRULE", "RECURRENCE-ID")
ENTRY_OVERHEAD = 100  # an OrderedDict slot: its hash table entry and its link


@dataclass(frozen=True, order=True)
class Period:
    starts_at: dt.datetime
    ends_at: dt.datetime
    fbtype: str


@dataclass(frozen=True)
class Scope:
    """Whose time, and what of it a query covers."""

    owner_id: int
    visits: bool  # the owner's visits with buffers and travel
    absences: bool  # the owner's time off and the holidays
    calendar_ids: tuple[int, ...]  # calendars of free-form items whose busy items count


def parse_utc(value: str | None, name: str) -> dt.datetime:
    """A CalDAV time-range bound: a UTC date-time like 20260101T000000Z."""
    if not value:
        raise InvalidInput(f"The time-range needs a {name} (UTC, like 20260101T000000Z).")
    try:
        return dt.datetime.strptime(value.strip(), UTC_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        raise InvalidInput(f"The time-range {name} {value[:40]!r} is not a UTC date-time "
                           "like 20260101T000000Z.") from None


def check_window(start: dt.datetime, end: dt.datetime) -> None:
    if end <= start:
        raise InvalidInput("The time-range must end after it starts.")
    if end - start > MAX_WINDOW:
        raise InvalidInput(f"The time-range spans {(end - start).days} days; free/busy is "
                           f"answered for at most {MAX_WINDOW.days} days at a time.")


def scope_for(session: Session, path: str) -> Scope | None:
    """What a free-busy query on `<login>/`, `<login>/<calendar>/` covers (None: not a person's)."""
    segments = [s for s in path.strip("/").split("/") if s]
    if not segments or len(segments) > 2:
        return None
    owner_id = session.scalar(select(User.id).where(User.login == segments[0]))
    if owner_id is None:
        return None
    if len(segments) == 1:
        ids = session.scalars(select(Collection.id).where(
            Collection.owner_id == owner_id, Collection.kind == CollectionKind.CALENDAR)
            .order_by(Collection.id))
        return Scope(owner_id, True, True, tuple(ids))
    row = session.execute(select(Collection.id, Collection.kind, Collection.owner_id)
                          .where(Collection.path == "/".join(segments))).first()
    if row is None or row.owner_id != owner_id:
        return None
    if row.kind == CollectionKind.JOBS:
        return Scope(owner_id, True, True, ())
    if row.kind == CollectionKind.CALENDAR:
        return Scope(owner_id, False, False, (row.id,))
    return None


def technician_scope(technician_id: int, session: Session) -> Scope:
    """Everything of one technician: visits, absences and every calendar of theirs."""
    ids = session.scalars(select(Collection.id).where(
        Collection.owner_id == technician_id, Collection.kind == CollectionKind.CALENDAR)
        .order_by(Collection.id))
    return Scope(technician_id, True, True, tuple(ids))


def _visits(session: Session, owner_id: int, start: dt.datetime, end: dt.datetime,
            now: dt.datetime) -> Iterator[Period]:
    rows = session.execute(
        select(Appointment.blocked_from, Appointment.blocked_until, Appointment.status)
        .where(Appointment.technician_id == owner_id,
               Appointment.status != AppointmentStatus.CANCELLED,
               or_(Appointment.hold_expires_at.is_(None), Appointment.hold_expires_at > now),
               Appointment.blocked_from < end, Appointment.blocked_until > start))
    for begin, finish, status in rows:
        yield Period(begin, finish, TENTATIVE if status == AppointmentStatus.TENTATIVE else BUSY)


def _absences(session: Session, owner_id: int, start: dt.datetime,
              end: dt.datetime) -> Iterator[Period]:
    rows = session.execute(
        select(TimeOff.starts_at, TimeOff.ends_at)
        .where(or_(TimeOff.technician_id == owner_id, TimeOff.technician_id.is_(None)),
               TimeOff.starts_at < end, TimeOff.ends_at > start))
    for begin, finish in rows:
        yield Period(begin, finish, UNAVAILABLE)


class PlainCache:
    """Single events by etag (a hash of their text): their one occurrence, or None if they recur.

    Most stored objects are single events: they need no recurrence expansion, only
    their own times (a word of a recurrence anywhere in the text takes the long way).
    Bounded in bytes of memory (`entry_size`); the least recently used go first.
    """

    def __init__(self, max_bytes: int = 4 * 1024 * 1024) -> None:
        self._entries: OrderedDict[str, tuple[tuple[Occurrence, ...] | None, int]] = OrderedDict()
        self._max_bytes = max_bytes
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """Bytes held now."""
        return self._bytes

    @staticmethod
    def entry_size(etag: str, found: tuple[Occurrence, ...] | None) -> int:
        """The key, the value and the cache's own entry (a dict slot and a tuple)."""
        held = 0 if found is None else occurrences_size(found)
        return sys.getsizeof(etag) + held + sys.getsizeof((found, 0)) + ENTRY_OVERHEAD

    @staticmethod
    def read(text: str) -> tuple[Occurrence, ...] | None:
        if any(word in text for word in RECURRENCE_WORDS):
            return None
        events = [c for c in icalendar.Calendar.from_ical(text).subcomponents if c.name == "VEVENT"]
        if len(events) != 1:
            return None
        found = occurrence_of(events[0])
        return () if found is None else (found,)

    def get(self, etag: str, text: str) -> tuple[Occurrence, ...] | None:
        with self._lock:
            held = self._entries.get(etag)
            if held is not None:
                self._entries.move_to_end(etag)
                return held[0]
        found = self.read(text)
        size = self.entry_size(etag, found)
        with self._lock:
            if etag not in self._entries and size <= self._max_bytes:
                self._entries[etag] = (found, size)
                self._bytes += size
            while self._bytes > self._max_bytes:
                _, (_, old_size) = self._entries.popitem(last=False)
                self._bytes -= old_size
        return found


PLAIN = PlainCache()


def occurrences(etag: str, text: str, start: dt.datetime, end: dt.datetime) -> Iterator[Occurrence]:
    """Every occurrence of one stored object that meets [start, end), past the expansion cap.

    A capped expansion goes on from its last occurrence; after MAX_ROUNDS of them the
    rest of the window counts as busy (more than a window can usefully show).
    """
    plain = PLAIN.get(etag, text)
    if plain is not None:
        yield from plain
        return
    found = EXPANSIONS.between(etag, text, start, end).occurrences
    yield from found
    rounds = 0
    while len(found) >= MAX_OCCURRENCES and found[-1].starts_at < end:
        cursor = found[-1].starts_at
        rounds += 1
        if rounds > MAX_ROUNDS:
            yield Occurrence(cursor, end, found[-1].uid, busy=True)
            return
        found = expand(text, cursor, end).occurrences
        if not found or found[-1].starts_at <= cursor:
            yield from found
            return
        yield from found


def _items(session: Session, calendar_ids: tuple[int, ...], start: dt.datetime,
           end: dt.datetime) -> Iterator[Period]:
    if not calendar_ids:
        return
    rows = session.execute(
        select(CalendarItem.etag, CalendarItem.text)
        .where(CalendarItem.collection_id.in_(calendar_ids), CalendarItem.component == "VEVENT",
               CalendarItem.transparent.is_(False),
               or_(CalendarItem.dtstart.is_(None), CalendarItem.dtstart < end),
               or_(CalendarItem.dtend.is_(None), CalendarItem.dtend > start))
        .order_by(CalendarItem.id))
    for etag, text in rows:
        for occurrence in occurrences(etag, text, start, end):
            if occurrence.busy:
                yield Period(occurrence.starts_at, occurrence.ends_at,
                             TENTATIVE if occurrence.tentative else BUSY)


def _as_utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands back naive UTC; PostgreSQL aware."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def merged(periods: Iterable[Period], start: dt.datetime, end: dt.datetime) -> list[Period]:
    """Periods cut to [start, end), overlapping and touching ones of one type joined, in order."""
    by_type: dict[str, list[tuple[dt.datetime, dt.datetime]]] = {}
    for period in periods:
        begin, finish = max(_as_utc(period.starts_at), start), min(_as_utc(period.ends_at), end)
        if finish > begin:
            by_type.setdefault(period.fbtype, []).append((begin, finish))
    joined: list[Period] = []
    for fbtype, spans in by_type.items():
        spans.sort()
        current_start, current_end = spans[0]
        for begin, finish in spans[1:]:
            if begin <= current_end:
                current_end = max(current_end, finish)
            else:
                joined.append(Period(current_start, current_end, fbtype))
                current_start, current_end = begin, finish
        joined.append(Period(current_start, current_end, fbtype))
    return sorted(joined)


def busy_periods(session: Session, scope: Scope, start: dt.datetime, end: dt.datetime,
                 now: dt.datetime | None = None) -> list[Period]:
    """The merged busy periods of `scope` within [start, end) (a checked window)."""
    check_window(start, end)
    found: list[Period] = []
    if scope.visits:
        found.extend(_visits(session, scope.owner_id, start, end, now or utcnow()))
    if scope.absences:
        found.extend(_absences(session, scope.owner_id, start, end))
    found.extend(_items(session, scope.calendar_ids, start, end))
    return merged(found, start, end)


def _folded(line: str) -> str:
    """RFC 5545 §3.1: lines of at most 75 octets, never splitting a UTF-8 character."""
    data = line.encode("utf-8")
    parts: list[bytes] = []
    limit = 75
    while len(data) > limit:
        cut = limit
        while data[cut] & 0xC0 == 0x80:
            cut -= 1
        parts.append(data[:cut])
        data = data[cut:]
        limit = 74  # a continuation line starts with a space
    parts.append(data)
    return "\r\n ".join(p.decode("utf-8") for p in parts)


def render(periods: Iterable[Period], start: dt.datetime, end: dt.datetime, *, uid_seed: str,
           stamp: dt.datetime, extra: Iterable[str] = ()) -> bytes:
    """A VCALENDAR with one VFREEBUSY: one FREEBUSY line per period (deterministic)."""
    uid = hashlib.sha256(f"{uid_seed}|{start:{UTC_FORMAT}}|{end:{UTC_FORMAT}}".encode()).hexdigest()
    lines = [
        "BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}", *extra, "BEGIN:VFREEBUSY",
        f"UID:freebusy-{uid[:32]}@fieldcal",
        f"DTSTAMP:{_as_utc(stamp):{UTC_FORMAT}}",
        f"DTSTART:{start:{UTC_FORMAT}}",
        f"DTEND:{end:{UTC_FORMAT}}",
    ]
    lines += [f"FREEBUSY;FBTYPE={p.fbtype}:{p.starts_at:{UTC_FORMAT}}/{p.ends_at:{UTC_FORMAT}}"
              for p in periods]
    lines += ["END:VFREEBUSY", "END:VCALENDAR", ""]
    return "\r\n".join(_folded(line) for line in lines).encode("utf-8")
