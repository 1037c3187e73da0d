"""A feed body: a calendar header, stored VEVENTs in the window, busy blocks. Deterministic."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import icalendar
from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from feeds.plan import FeedPlan, Window
from server.busy import busy_blocks
from server.ical import PRODID
from server.models import Appointment, AppointmentStatus, CalendarItem
from server.text import clean_text

UTC_FORMAT = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class Block:
    starts_at: dt.datetime
    text: str


def _header(plan: FeedPlan, refresh_minutes: int) -> str:
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    name = clean_text(plan.name).replace("\n", " ")
    calendar.add("x-wr-calname", icalendar.vText(name))
    calendar.add("name", icalendar.vText(name))
    text = calendar.to_ical().decode("utf-8")
    head = text[: text.rindex("END:VCALENDAR")]
    ttl = f"PT{refresh_minutes}M"
    return head + f"REFRESH-INTERVAL;VALUE=DURATION:{ttl}\r\nX-PUBLISHED-TTL:{ttl}\r\n"


def _vevents(text: str) -> str:
    """The component lines of a stored object, without its VCALENDAR wrapper."""
    begin = text.index("BEGIN:VEVENT")
    end = text.rindex("END:VEVENT") + len("END:VEVENT")
    return text[begin:end].replace("\r\n", "\n").replace("\n", "\r\n") + "\r\n"


def _busy_event(uid: str, stamp: dt.datetime, starts_at: dt.datetime, ends_at: dt.datetime) -> str:
    digest = hashlib.sha256(f"{uid}|{starts_at.isoformat()}".encode()).hexdigest()[:24]
    return (
        "BEGIN:VEVENT\r\n"
        f"UID:busy-{digest}@fieldcal\r\n"
        f"DTSTAMP:{stamp.strftime(UTC_FORMAT)}\r\n"
        f"DTSTART:{starts_at.strftime(UTC_FORMAT)}\r\n"
        f"DTEND:{ends_at.strftime(UTC_FORMAT)}\r\n"
        "SUMMARY:Busy\r\n"
        "CLASS:PRIVATE\r\n"
        "TRANSP:OPAQUE\r\n"
        "END:VEVENT\r\n"
    )


def _in_window(window: Window) -> tuple[ColumnElement[bool], ...]:
    return (
        or_(CalendarItem.dtstart.is_(None), CalendarItem.dtstart < window.end),
        or_(CalendarItem.dtend.is_(None), CalendarItem.dtend > window.start),
    )


def _view_blocks(session: Session, plan: FeedPlan, window: Window) -> list[Block]:
    query = select(CalendarItem.dtstart, CalendarItem.dtend, CalendarItem.text, CalendarItem.uid,
                   CalendarItem.updated_at).where(
        CalendarItem.collection_id.in_(plan.view_ids), *_in_window(window)
    )
    if plan.appointment_id is not None:
        query = query.where(CalendarItem.appointment_id == plan.appointment_id)
    if plan.freebusy:
        query = query.join(Appointment, Appointment.id == CalendarItem.appointment_id).where(
            Appointment.status != AppointmentStatus.CANCELLED
        )
    blocks = []
    for start, end, text, uid, updated in session.execute(query.order_by(CalendarItem.dtstart,
                                                                         CalendarItem.href)):
        if start is None or end is None:  # views hold rendered visits, which always have times
            continue
        body = _busy_event(uid, updated, start, end) if plan.freebusy else _vevents(text)
        blocks.append(Block(start, body))
    return blocks


def _busy_blocks(session: Session, plan: FeedPlan, window: Window) -> list[Block]:
    if not plan.busy_ids:
        return []
    rows = session.execute(
        select(CalendarItem.text, CalendarItem.updated_at)
        .where(CalendarItem.collection_id.in_(plan.busy_ids), *_in_window(window),
               CalendarItem.transparent.is_(False))
        .order_by(CalendarItem.id)
    )
    blocks = []
    for text, updated in rows:
        for busy in busy_blocks(text, window.start, window.end):
            blocks.append(Block(busy.starts_at,
                                _busy_event(busy.uid, updated, busy.starts_at, busy.ends_at)))
    return blocks


def _within_budget(blocks: list[Block], budget: int, around: dt.datetime) -> list[Block]:
    """Keep the blocks nearest to `around` that fit in the byte budget, in time order."""
    sizes = [len(b.text.encode("utf-8")) for b in blocks]
    if sum(sizes) <= budget:
        return blocks
    nearest = sorted(range(len(blocks)), key=lambda i: (abs(blocks[i].starts_at - around), i))
    kept: set[int] = set()
    used = 0
    for index in nearest:
        if used + sizes[index] > budget:
            break
        kept.add(index)
        used += sizes[index]
    return [b for i, b in enumerate(blocks) if i in kept]


def assemble(session: Session, plan: FeedPlan, window: Window, *,
             refresh_minutes: int, max_bytes: int) -> bytes:
    """The feed body; a function of the plan and the window only (the ETag names both).

    Over the byte budget it keeps the events nearest to noon of the window's day, not
    to the clock: a body that changed with the hour would differ between two
    answers under one ETag.
    """
    header = _header(plan, refresh_minutes)
    footer = "END:VCALENDAR\r\n"
    blocks = _view_blocks(session, plan, window) + _busy_blocks(session, plan, window)
    blocks.sort(key=lambda b: (b.starts_at, b.text))
    budget = max_bytes - len(header.encode()) - len(footer)
    kept = _within_budget(blocks, budget, window.today + dt.timedelta(hours=12))
    return (header + "".join(b.text for b in kept) + footer).encode("utf-8")
