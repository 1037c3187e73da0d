"""The rules a dispatcher may knowingly override: service area, working hours, personal time.

`problems` finds what stands in the way of putting a visit on a technician;
`refusal` turns them into one narrow error carrying the structured context and a
message in the reader's time zone. A dispatcher overrides with an `Override` (a
reason), and the override is audited (who, why, what was overridden).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from server import audit
from server.actions import Action
from server.busy import EXPANSIONS
from server.context import Context
from server.errors import Conflict, Forbidden, InvalidInput
from server.models import (
    Appointment,
    CalendarItem,
    Collection,
    CollectionKind,
    TimeOff,
    User,
    WorkingHours,
)
from server.scheduling import areas
from server.scheduling.hours import Interval, merged, within, working_intervals
from server.text import one_line

AREA, HOURS, PERSONAL = "area", "hours", "personal"


@dataclass(frozen=True)
class Override:
    """A dispatcher's explicit decision to book against the rules, and why."""

    reason: str

    def __post_init__(self) -> None:
        if not one_line(self.reason):
            raise InvalidInput("Overriding the rules needs a reason (say who asked and why).")


@dataclass(frozen=True)
class Block:
    """Something on the technician's time: a personal event, their time off, a holiday."""

    starts_at: dt.datetime
    ends_at: dt.datetime
    what: str


def span(start: dt.datetime, end: dt.datetime, zone: str) -> str:
    """Like "Tue 2026-12-01 18:00-19:00 Europe/Berlin" (the end's date when it differs)."""
    tz = ZoneInfo(zone)
    a, b = start.astimezone(tz), end.astimezone(tz)
    tail = f"{b:%H:%M}" if a.date() == b.date() else f"{b:%a %Y-%m-%d %H:%M}"
    return f"{a:%a %Y-%m-%d %H:%M}–{tail} {zone}"


@dataclass(frozen=True)
class Problem:
    rule: str  # AREA, HOURS or PERSONAL
    technician: str  # login
    technician_name: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    area: str = ""  # the site's area (AREA)
    serves: tuple[str, ...] = ()  # what the technician serves (AREA)
    hours: tuple[Interval, ...] = ()  # the technician's working time that day (HOURS)
    blocks: tuple[Block, ...] = field(default=())  # what is in the way (PERSONAL)

    def describe(self, zone: str) -> str:
        who = f"{self.technician_name} ({self.technician})"
        if self.rule == AREA:
            served = "; ".join(self.serves) or "no area"
            return f"{who} does not serve {self.area} (serves: {served})."
        if self.rule == HOURS:
            worked = ", ".join(span(a, b, zone) for a, b in self.hours) or "not working that day"
            return (f"{span(self.starts_at, self.ends_at, zone)} is outside the working hours of "
                    f"{who} (that day: {worked}).")
        what = "; ".join(f"{b.what} {span(b.starts_at, b.ends_at, zone)}" for b in self.blocks)
        return f"{who} is not free {span(self.starts_at, self.ends_at, zone)}: {what}."

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "technician": self.technician,
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat(),
            "area": self.area or None,
            "serves": list(self.serves),
            "working_hours": [{"starts_at": a.isoformat(), "ends_at": b.isoformat()}
                              for a, b in self.hours],
            "blocks": [{"starts_at": b.starts_at.isoformat(), "ends_at": b.ends_at.isoformat(),
                        "what": b.what} for b in self.blocks],
        }


class BookingRefused(Conflict):
    """A visit breaks a rule a dispatcher may override; `problems` say which and why."""

    rule = ""

    def __init__(self, problems: list[Problem], zone: str) -> None:
        self.problems = problems
        self.zone = zone
        super().__init__(self.describe(zone))

    def describe(self, zone: str) -> str:
        """The message for a person reading times in `zone`."""
        text = " ".join(problem.describe(zone) for problem in self.problems)
        return f"{text} A dispatcher may book it anyway by forcing it with a reason."

    def context(self) -> dict[str, Any]:
        return {"rule": self.rule, "problems": [p.as_dict() for p in self.problems]}


class OutsideServiceArea(BookingRefused):
    rule = AREA


class OutsideWorkingHours(BookingRefused):
    rule = HOURS


class OverPersonalTime(BookingRefused):
    rule = PERSONAL


REFUSALS: dict[str, type[BookingRefused]] = {
    AREA: OutsideServiceArea, HOURS: OutsideWorkingHours, PERSONAL: OverPersonalTime}


def refusal(problems: list[Problem], zone: str) -> BookingRefused:
    return REFUSALS[problems[0].rule](problems, zone)


def _hours_problem(session: Session, technician: User, starts_at: dt.datetime,
                   ends_at: dt.datetime) -> Problem | None:
    rows = list(session.scalars(select(WorkingHours)
                                .where(WorkingHours.technician_id == technician.id)))
    if not rows:
        return None  # no hours set: nothing to be outside of (self-booking offers nothing)
    zone = ZoneInfo(technician.timezone)
    intervals = working_intervals(rows, zone, starts_at, ends_at)
    if within(intervals, starts_at, ends_at):
        return None
    days = {starts_at.astimezone(zone).date(), ends_at.astimezone(zone).date()}
    that_day = tuple(i for i in merged(intervals) if i[0].astimezone(zone).date() in days)
    return Problem(HOURS, technician.login, technician.name, starts_at, ends_at, hours=that_day)


def personal_blocks(session: Session, technician: User, starts_at: dt.datetime,
                    ends_at: dt.datetime) -> list[Block]:
    """Time off, holidays and busy personal calendar events that meet [starts_at, ends_at)."""
    blocks = []
    for owner, begin, finish, reason in session.execute(
            select(TimeOff.technician_id, TimeOff.starts_at, TimeOff.ends_at, TimeOff.reason).where(
                or_(TimeOff.technician_id == technician.id, TimeOff.technician_id.is_(None)),
                TimeOff.starts_at < ends_at, TimeOff.ends_at > starts_at)):
        kind = "time off" if owner is not None else "holiday"
        blocks.append(Block(begin, finish, f"{kind} “{reason}”" if reason else kind))
    items = (
        select(CalendarItem.etag, CalendarItem.text)
        .join(Collection, Collection.id == CalendarItem.collection_id)
        .where(Collection.owner_id == technician.id, Collection.kind == CollectionKind.CALENDAR,
               CalendarItem.transparent.is_(False),
               or_(CalendarItem.dtstart.is_(None), CalendarItem.dtstart < ends_at),
               or_(CalendarItem.dtend.is_(None), CalendarItem.dtend > starts_at))
    )
    bucket = starts_at.date()
    for etag, text in session.execute(items):
        for occurrence in EXPANSIONS.get(etag, text, bucket).occurrences:
            if occurrence.busy and occurrence.starts_at < ends_at and occurrence.ends_at > starts_at:
                title = one_line(occurrence.summary)
                blocks.append(Block(occurrence.starts_at, occurrence.ends_at,
                                    f"personal event “{title}”" if title else "personal event"))
    return sorted(blocks, key=lambda b: (b.starts_at, b.what))


def problems(session: Session, technician: User, starts_at: dt.datetime, ends_at: dt.datetime,
             *, area: areas.Area | None = None, times: bool = True) -> list[Problem]:
    """What stands in the way of this visit on this technician (empty: nothing).

    `area` None skips the area rule; `times` False skips working hours and personal time.
    """
    found = []
    if area is not None:
        rules = areas.rules_by_technician(session, [technician.id]).get(technician.id)
        if not areas.serves(rules, area):
            found.append(Problem(AREA, technician.login, technician.name, starts_at, ends_at,
                                 area=area.label(),
                                 serves=tuple(areas.rule_label(r) for r in rules or [])))
    if times:
        hours = _hours_problem(session, technician, starts_at, ends_at)
        if hours is not None:
            found.append(hours)
        blocks = personal_blocks(session, technician, starts_at, ends_at)
        if blocks:
            found.append(Problem(PERSONAL, technician.login, technician.name, starts_at, ends_at,
                                 blocks=tuple(blocks)))
    return found


def acting_for_self(ctx: Context, technician: User) -> bool:
    """A technician moving their own visit (from their phone) decides over their own time."""
    return ctx.actor.role == "technician" and ctx.actor.name == technician.login


def reader_zone(ctx: Context, technician: User | None) -> str:
    """Where the person acting reads times: their own zone, else the technician's."""
    return ctx.actor.timezone or (technician.timezone if technician else "UTC")


def enforce(ctx: Context, technician: User, starts_at: dt.datetime, ends_at: dt.datetime, *,
            area: areas.Area | None, times: bool, force: Override | None) -> list[Problem]:
    """Refuse the visit if a rule is broken and not overridden; returns what was overridden."""
    found = problems(ctx.session, technician, starts_at, ends_at, area=area, times=times)
    if not found:
        return []
    if force is None:
        raise refusal(found, reader_zone(ctx, technician))
    if not ctx.actor.is_dispatcher:
        raise Forbidden("Only a dispatcher may book against the service area, working hours "
                        "or personal time.")
    return found


def record_override(ctx: Context, appointment: Appointment, force: Override,
                    overridden: list[Problem]) -> None:
    """The audit entry of an override: who (the actor), why (the reason), what."""
    if not overridden:
        return
    audit.record(ctx.session, ctx.actor, Action.APPOINTMENT_OVERRIDE, "appointment", appointment.id,
                 after={"reason": one_line(force.reason),
                        "overridden": [p.as_dict() for p in overridden]})
