"""Which stored calendars a link's feed is made of, and its validator (ETag, Last-Modified)."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from server.config import Settings
from server.links import LinkAudience, SubjectKind
from server.models import (
    Appointment,
    Collection,
    CollectionKind,
    Customer,
    Job,
    ShareLink,
    Team,
    User,
)

FEED_FORMAT = "1"


@dataclass(frozen=True)
class Window:
    """The days a feed shows, around `today` (UTC midnight of the day it is served).

    Everything a body depends on is a function of the window, never of the clock, so
    one validator (which names the window) always goes with one body.
    """

    start: dt.datetime
    end: dt.datetime
    today: dt.datetime

    @classmethod
    def around(cls, today: dt.date, settings: Settings) -> Window:
        midnight = dt.datetime(today.year, today.month, today.day, tzinfo=dt.UTC)
        return cls(midnight - dt.timedelta(days=settings.feed_past_days),
                   midnight + dt.timedelta(days=settings.feed_future_days), midnight)


@dataclass(frozen=True, order=True)
class CollectionState:
    id: int
    sync_seq: int
    updated_at: dt.datetime


@dataclass(frozen=True)
class FeedPlan:
    """A feed: calendar views shown as they are stored, and calendars shown as busy time.

    It carries the state (sync_seq) of every collection it reads, so the validator
    needs no further query.
    """

    link: ShareLink
    name: str
    views: tuple[CollectionState, ...]
    busy: tuple[CollectionState, ...]
    appointment_id: int | None

    @property
    def freebusy(self) -> bool:
        return self.link.audience == LinkAudience.FREEBUSY

    @property
    def view_ids(self) -> tuple[int, ...]:
        return tuple(c.id for c in self.views)

    @property
    def busy_ids(self) -> tuple[int, ...]:
        return tuple(c.id for c in self.busy)


STATE = (Collection.id, Collection.sync_seq, Collection.updated_at)


def _states(rows: Sequence[Row[*tuple[Any, ...]]]) -> tuple[CollectionState, ...]:
    return tuple(sorted(CollectionState(r.id, r.sync_seq, r.updated_at) for r in rows))


def plan_for(session: Session, link: ShareLink) -> FeedPlan | None:
    """The feed plan of a live link (one query), or None when its subject no longer exists."""
    kind = SubjectKind(link.subject_kind)
    appointment_id = None
    busy: tuple[CollectionState, ...] = ()
    rows: Sequence[Row[*tuple[Any, ...]]]
    if kind is SubjectKind.TECHNICIAN:
        rows = session.execute(
            select(User.name, Collection.kind, *STATE)
            .join(Collection, Collection.owner_id == User.id)
            .where(User.id == link.subject_id,
                   Collection.kind.in_((CollectionKind.JOBS, CollectionKind.CALENDAR)))
        ).all()
        if not rows:
            return None
        name = f"{rows[0].name}: jobs"
        views = _states([r for r in rows if r.kind == CollectionKind.JOBS])
        busy = _states([r for r in rows if r.kind == CollectionKind.CALENDAR])
    elif kind is SubjectKind.TEAM:
        rows = session.execute(
            select(Team.name, *STATE).join(Collection, Collection.team_id == Team.id)
            .where(Team.id == link.subject_id, Collection.kind == CollectionKind.TEAM)
        ).all()
        if not rows:
            return None
        name = f"{rows[0].name} schedule"
        views = _states(rows)
    elif kind is SubjectKind.CUSTOMER:
        rows = session.execute(
            select(Customer.name, *STATE).join(Collection, Collection.customer_id == Customer.id)
            .where(Customer.id == link.subject_id, Collection.kind == CollectionKind.CUSTOMER)
        ).all()
        if not rows:
            return None
        name = f"{rows[0].name}: service visits"
        views = _states(rows)
    else:
        rows = session.execute(
            select(Job.title, *STATE)
            .join(Appointment, Appointment.job_id == Job.id)
            .join(Collection, Collection.customer_id == Job.customer_id)
            .where(Appointment.id == link.subject_id, Collection.kind == CollectionKind.CUSTOMER)
        ).all()
        if not rows:
            return None
        name = f"Service visit: {rows[0].title}"
        views = _states(rows)
        appointment_id = link.subject_id
    if link.audience == LinkAudience.FREEBUSY:
        name = f"Availability: {name}"
    return FeedPlan(link, name, views, busy, appointment_id)


@dataclass(frozen=True)
class Validator:
    etag: str
    last_modified: dt.datetime


def validator(plan: FeedPlan, window: Window, settings: Settings) -> Validator:
    """The ETag changes whenever anything in the feed can change; no query needed."""
    states = sorted(plan.views + plan.busy)
    state = ";".join(f"{c.id}:{c.sync_seq}" for c in states)
    key = "|".join((
        FEED_FORMAT, str(plan.link.id), str(plan.link.version), plan.link.audience,
        str(plan.appointment_id), state, window.start.date().isoformat(),
        window.end.date().isoformat(), window.today.date().isoformat(), str(settings.feed_max_bytes),
        str(settings.feed_refresh_minutes), plan.name,
    ))
    etag = '"' + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32] + '"'
    newest = max((c.updated_at for c in states), default=window.today)
    return Validator(etag, max(newest, window.today).replace(microsecond=0))
