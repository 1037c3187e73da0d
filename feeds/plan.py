"""Which stored calendars a link's feed is made of, and its validator (ETag, Last-Modified)."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.calendars import customer_path, jobs_path, team_path
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
    start: dt.datetime
    end: dt.datetime

    @classmethod
    def around(cls, today: dt.date, settings: Settings) -> Window:
        midnight = dt.datetime(today.year, today.month, today.day, tzinfo=dt.UTC)
        return cls(midnight - dt.timedelta(days=settings.feed_past_days),
                   midnight + dt.timedelta(days=settings.feed_future_days))


@dataclass(frozen=True)
class FeedPlan:
    """A feed: calendar views shown as they are stored, and calendars shown as busy time."""

    link: ShareLink
    name: str
    view_ids: tuple[int, ...]
    busy_ids: tuple[int, ...]
    appointment_id: int | None

    @property
    def freebusy(self) -> bool:
        return self.link.audience == LinkAudience.FREEBUSY

    @property
    def collection_ids(self) -> tuple[int, ...]:
        return self.view_ids + self.busy_ids


def _ids(session: Session, *conditions: object) -> tuple[int, ...]:
    return tuple(session.scalars(select(Collection.id).where(*conditions).order_by(Collection.id)))


def plan_for(session: Session, link: ShareLink) -> FeedPlan | None:
    """The feed plan of a live link, or None when its subject no longer exists."""
    kind = SubjectKind(link.subject_kind)
    appointment_id = None
    busy: tuple[int, ...] = ()
    if kind is SubjectKind.TECHNICIAN:
        user = session.get(User, link.subject_id)
        if user is None:
            return None
        name = f"{user.name}: jobs"
        views = _ids(session, Collection.path == jobs_path(user.login))
        busy = _ids(session, Collection.owner_id == user.id,
                    Collection.kind == CollectionKind.CALENDAR)
    elif kind is SubjectKind.TEAM:
        team = session.get(Team, link.subject_id)
        if team is None:
            return None
        name = f"{team.name} schedule"
        views = _ids(session, Collection.path == team_path(team.slug))
    elif kind is SubjectKind.CUSTOMER:
        customer = session.get(Customer, link.subject_id)
        if customer is None:
            return None
        name = f"{customer.name}: service visits"
        views = _ids(session, Collection.path == customer_path(customer.id))
    else:
        row = session.execute(
            select(Job.customer_id, Job.title)
            .join(Appointment, Appointment.job_id == Job.id)
            .where(Appointment.id == link.subject_id)
        ).first()
        if row is None:
            return None
        name = f"Service visit: {row.title}"
        views = _ids(session, Collection.path == customer_path(row.customer_id))
        appointment_id = link.subject_id
    if link.audience == LinkAudience.FREEBUSY:
        name = f"Availability: {name}"
    return FeedPlan(link, name, views, busy, appointment_id)


@dataclass(frozen=True)
class Validator:
    etag: str
    last_modified: dt.datetime


def validator(session: Session, plan: FeedPlan, window: Window, settings: Settings) -> Validator:
    """One indexed query: the ETag changes whenever anything in the feed can change."""
    rows = session.execute(
        select(Collection.id, Collection.sync_seq, Collection.updated_at)
        .where(Collection.id.in_(plan.collection_ids))
        .order_by(Collection.id)
    ).all()
    state = ";".join(f"{cid}:{seq}" for cid, seq, _ in rows)
    key = "|".join((
        FEED_FORMAT, str(plan.link.id), str(plan.link.version), plan.link.audience,
        str(plan.appointment_id), state, window.start.date().isoformat(),
        window.end.date().isoformat(), str(settings.feed_max_bytes),
        str(settings.feed_refresh_minutes), plan.name,
    ))
    etag = '"' + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32] + '"'
    midnight = window.start + dt.timedelta(days=settings.feed_past_days)
    newest = max((updated for _, _, updated in rows), default=midnight)
    return Validator(etag, max(newest, midnight).replace(microsecond=0))
