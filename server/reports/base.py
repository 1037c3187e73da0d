"""What every report shares: the metric names, the filters, the answer's shape, scoping."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Select, select, true
from sqlalchemy.orm import InstrumentedAttribute, Session

from server.errors import InvalidInput, NotFound
from server.models import Role, Team, TeamMember, User

Cell = int | float | str | None
MAX_SPAN = dt.timedelta(days=731)


class Metric(enum.StrEnum):
    VISITS = "visits"  # booked / completed / cancelled / rescheduled, by channel
    NO_SHOWS = "no-shows"
    TIME_TO_SERVICE = "time-to-service"
    FIRST_TIME_FIX = "first-time-fix"
    ON_TIME = "on-time-arrival"
    UTILISATION = "utilisation"
    BOOKING_HOURS = "booking-hours"  # visits by hour of day and weekday, in the technician's zone
    INTEGRATION_HEALTH = "integration-health"


@dataclass(frozen=True)
class Filters:
    """[start, end) in UTC, optionally one team (slug) and/or one technician (login)."""

    start: dt.datetime
    end: dt.datetime
    team: str | None = None
    technician: str | None = None

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise InvalidInput("A report's range needs times with a time zone.")
        if self.end <= self.start:
            raise InvalidInput("A report's range must end after it starts (`to` after `from`).")
        if self.end - self.start > MAX_SPAN:
            raise InvalidInput("A report covers at most two years; narrow `from` and `to`.")

    @property
    def scoped(self) -> bool:
        return self.team is not None or self.technician is not None


@dataclass(frozen=True)
class Report:
    """A table (columns, rows) and the few numbers that sum it up."""

    metric: Metric
    filters: Filters
    columns: tuple[str, ...]
    rows: list[tuple[Cell, ...]]
    summary: dict[str, Cell] = field(default_factory=dict)

    def as_dicts(self) -> list[dict[str, Cell]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def check_names(session: Session, filters: Filters) -> None:
    """A team or technician that does not exist is a 404, not an empty report."""
    if filters.team is not None and session.scalars(
            select(Team.id).where(Team.slug == filters.team)).first() is None:
        raise NotFound(f"No team {filters.team!r}.")
    if filters.technician is not None and session.scalars(
            select(User.id).where(User.login == filters.technician,
                                  User.role == Role.TECHNICIAN)).first() is None:
        raise NotFound(f"No technician {filters.technician!r}.")


def technicians(filters: Filters) -> Select[Any]:
    """The ids of the technicians the filters name (all technicians without filters)."""
    query = select(User.id).where(User.role == Role.TECHNICIAN)
    if filters.technician is not None:
        query = query.where(User.login == filters.technician)
    if filters.team is not None:
        query = query.where(User.id.in_(
            select(TeamMember.user_id).join(Team, Team.id == TeamMember.team_id)
            .where(Team.slug == filters.team)))
    return query


def in_scope(column: ColumnElement[Any] | InstrumentedAttribute[Any],
             filters: Filters) -> ColumnElement[bool]:
    """`column` (a technician id) is one the filters name; everything without filters."""
    if not filters.scoped:
        return true()
    return column.in_(technicians(filters))


def ratio(part: int | None, whole: int | None) -> float | None:
    """part / whole rounded to 4 places, None when nothing was counted."""
    if not whole:
        return None
    return round((part or 0) / whole, 4)


def moment(value: dt.date | dt.datetime, zone: str, *, end: bool = False) -> dt.datetime:
    """A range bound: a time as given (with its zone), or a date's midnight in `zone` (with
    `end`, the midnight after it, so the date counts)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise InvalidInput(f"{value.isoformat()} has no time zone: add one (Z or +01:00) or give "
                               "a date.")
        return value.astimezone(dt.UTC)
    day = value + dt.timedelta(days=1) if end else value
    return dt.datetime.combine(day, dt.time(), ZoneInfo(zone)).astimezone(dt.UTC)
