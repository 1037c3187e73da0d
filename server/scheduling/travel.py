"""Travel between consecutive visits.

When two consecutive visits of a technician both have coordinates, the gap between
them must cover the travel: straight-line distance times the team's road factor divided by the
team's average speed. The service type's fixed travel minutes stay the floor (and
are all there is without coordinates). The travel a visit needs beyond the fixed
minutes is added to its blocked range, the same way buffers are, so the database's
overlap guard covers it too.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session, selectinload

from server import audit
from server.actions import Action
from server.context import Context, operation
from server.errors import InvalidInput, SlotTaken
from server.models import (
    Appointment,
    AppointmentStatus,
    Job,
    ServiceType,
    Site,
    Team,
    TeamMember,
    User,
    utcnow,
)
from server.scheduling.areas import Point, haversine_km

DEFAULT_ROAD_FACTOR = 1.3
DEFAULT_SPEED_KMH = 40.0
NEIGHBOUR_RANGE = dt.timedelta(hours=24)
Interval = tuple[dt.datetime, dt.datetime]


@dataclass(frozen=True)
class TravelModel:
    road_factor: float = DEFAULT_ROAD_FACTOR
    speed_kmh: float = DEFAULT_SPEED_KMH

    def minutes(self, a: Point, b: Point) -> int:
        """Whole minutes (rounded up) to drive from a to b."""
        return math.ceil(self.road_km(a, b) / self.speed_kmh * 60)

    def road_km(self, a: Point, b: Point) -> float:
        return haversine_km(a, b) * self.road_factor


def slowest(teams: Sequence[Team]) -> TravelModel:
    """The model of a technician's teams that gives the longest travel (defaults without a team)."""
    if not teams:
        return TravelModel()
    team = max(teams, key=lambda t: (t.road_factor / t.speed_kmh, -t.id))
    return TravelModel(team.road_factor, team.speed_kmh)


def model_for(technician: User) -> TravelModel:
    return slowest(technician.teams)


def models_for(session: Session, technician_ids: Sequence[int]) -> dict[int, TravelModel]:
    teams: dict[int, list[Team]] = defaultdict(list)
    for user_id, team in session.execute(
            select(TeamMember.user_id, Team).join(Team, Team.id == TeamMember.team_id)
            .where(TeamMember.user_id.in_(technician_ids))):
        teams[user_id].append(team)
    return {i: slowest(teams.get(i, [])) for i in technician_ids}


def site_point(site: Site | None) -> Point | None:
    if site is None or site.latitude is None or site.longitude is None:
        return None
    return (site.latitude, site.longitude)


def visit_point(appointment: Appointment) -> Point | None:
    """Where a visit takes place (None for a remote service or a site without coordinates)."""
    if appointment.service_type is not None and appointment.service_type.remote:
        return None
    return site_point(appointment.job.site)


def fixed_minutes(service_type: ServiceType | None) -> int:
    return service_type.travel_minutes if service_type else 0


def _live() -> list[ColumnElement[bool]]:
    return [Appointment.status != AppointmentStatus.CANCELLED,
            or_(Appointment.hold_expires_at.is_(None), Appointment.hold_expires_at > utcnow())]


def neighbours(session: Session, technician: User, starts_at: dt.datetime, ends_at: dt.datetime,
               exclude_id: int | None = None) -> tuple[Appointment | None, Appointment | None]:
    """The technician's visit just before and just after [starts_at, ends_at) (within a day)."""
    base = select(Appointment).where(Appointment.technician_id == technician.id, *_live()).options(
        selectinload(Appointment.job).selectinload(Job.site), selectinload(Appointment.service_type))
    if exclude_id is not None:
        base = base.where(Appointment.id != exclude_id)
    previous = session.scalars(base.where(
        Appointment.ends_at <= starts_at, Appointment.ends_at > starts_at - NEIGHBOUR_RANGE)
        .order_by(Appointment.ends_at.desc()).limit(1)).first()
    following = session.scalars(base.where(
        Appointment.starts_at >= ends_at, Appointment.starts_at < ends_at + NEIGHBOUR_RANGE)
        .order_by(Appointment.starts_at).limit(1)).first()
    return previous, following


class NotEnoughTravelTime(SlotTaken):
    """The gap to the previous or next visit does not cover the drive between the sites."""

    def __init__(self, technician: User, other: Appointment, minutes: int, distance_km: float,
                 *, before: bool, limit: dt.datetime, zone: str) -> None:
        self.other_id = other.id
        self.minutes = minutes
        self.distance_km = distance_km
        self.limit = limit  # the earliest start (after `other`) or latest end (before it)
        local = limit.astimezone(ZoneInfo(zone))
        other_time = (other.ends_at if before else other.starts_at).astimezone(ZoneInfo(zone))
        if before:
            text = (f"{technician.name} needs {minutes} min to drive {distance_km:.1f} km from "
                    f"visit #{other.id} (ends {other_time:%a %H:%M}); this visit can start at "
                    f"{local:%a %Y-%m-%d %H:%M} {zone} at the earliest.")
        else:
            text = (f"{technician.name} needs {minutes} min to drive {distance_km:.1f} km to "
                    f"visit #{other.id} (starts {other_time:%a %H:%M}); this visit must end by "
                    f"{local:%a %Y-%m-%d %H:%M} {zone}.")
        super().__init__(technician.login, text)


@dataclass(frozen=True)
class TravelNeed:
    """The extra time a visit blocks for travel beyond its fixed travel minutes."""

    extra_before: dt.timedelta = dt.timedelta(0)
    extra_after: dt.timedelta = dt.timedelta(0)


def need(session: Session, technician: User, site: Site | None, service_type: ServiceType | None,
         starts_at: dt.datetime, blocked: Interval, ends_at: dt.datetime, *,
         exclude_id: int | None = None, zone: str = "UTC") -> TravelNeed:
    """Check the drive from the previous and to the next visit; the extra time to block.

    `blocked` is the visit's blocked range from buffers and fixed travel.
    """
    point = site_point(site)
    if point is None:
        return TravelNeed()
    previous, following = neighbours(session, technician, starts_at, ends_at, exclude_id)
    model = model_for(technician)
    extra_before = extra_after = dt.timedelta(0)
    if previous is not None and (there := visit_point(previous)) is not None:
        minutes = model.minutes(there, point)
        extra_before = dt.timedelta(minutes=max(0, minutes - fixed_minutes(previous.service_type)))
        earliest_block = previous.blocked_until + extra_before
        if blocked[0] < earliest_block:
            raise NotEnoughTravelTime(technician, previous, minutes, model.road_km(there, point),
                                      before=True, limit=starts_at + (earliest_block - blocked[0]),
                                      zone=zone)
    if following is not None and (there := visit_point(following)) is not None:
        minutes = model.minutes(point, there)
        extra_after = dt.timedelta(minutes=max(0, minutes - fixed_minutes(service_type)))
        if blocked[1] + extra_after > following.blocked_from:
            raise NotEnoughTravelTime(technician, following, minutes, model.road_km(point, there),
                                      before=False, zone=zone,
                                      limit=ends_at - (blocked[1] + extra_after
                                                       - following.blocked_from))
    return TravelNeed(extra_before, extra_after)


def busy_extensions(session: Session, technician_ids: Sequence[int], point: Point,
                    service_type: ServiceType, start: dt.datetime, end: dt.datetime,
                    exclude_id: int | None) -> dict[int, list[Interval]]:
    """For availability: the time around each visit with coordinates that the drive to or from
    a new visit at `point` needs beyond the fixed travel minutes."""
    models = models_for(session, technician_ids)
    rows = session.execute(
        select(Appointment.technician_id, Appointment.blocked_from, Appointment.blocked_until,
               Site.latitude, Site.longitude, ServiceType.travel_minutes)
        .join(Job, Job.id == Appointment.job_id).join(Site, Site.id == Job.site_id)
        .outerjoin(ServiceType, ServiceType.id == Appointment.service_type_id)
        .where(Appointment.technician_id.in_(technician_ids), *_live(),
               Site.latitude.is_not(None), Site.longitude.is_not(None),
               or_(ServiceType.remote.is_(None), ServiceType.remote.is_(False)),
               Appointment.blocked_from < end + NEIGHBOUR_RANGE,
               Appointment.blocked_until > start - NEIGHBOUR_RANGE,
               Appointment.id != (exclude_id or -1)))
    extra: dict[int, list[Interval]] = defaultdict(list)
    own_fixed = service_type.travel_minutes
    for technician_id, blocked_from, blocked_until, latitude, longitude, fixed in rows:
        if technician_id is None or latitude is None or longitude is None:
            continue
        minutes = models[technician_id].minutes((latitude, longitude), point)
        after_it = dt.timedelta(minutes=max(0, minutes - (fixed or 0)))
        before_it = dt.timedelta(minutes=max(0, minutes - own_fixed))
        extra[technician_id].append((blocked_from - before_it, blocked_until + after_it))
    return extra


@dataclass(frozen=True)
class Leg:
    """The drive into a visit from the one before it."""

    from_appointment_id: int
    to_appointment_id: int
    distance_km: float | None  # road km; None without coordinates at both ends
    minutes: int  # the travel the gap must hold (computed, or the fixed minutes)
    computed: bool
    gap_minutes: int  # end of the previous visit to the start of this one
    enough: bool


@dataclass(frozen=True)
class PlannedVisit:
    appointment: Appointment
    travel_before: Leg | None


@dataclass(frozen=True)
class DayPlan:
    technician: User
    day: dt.date
    timezone: str
    model: TravelModel
    visits: list[PlannedVisit]

    @property
    def travel_minutes(self) -> int:
        return sum(v.travel_before.minutes for v in self.visits if v.travel_before)

    @property
    def distance_km(self) -> float:
        return sum(v.travel_before.distance_km or 0.0 for v in self.visits if v.travel_before)


def leg(model: TravelModel, previous: Appointment, current: Appointment) -> Leg:
    """The drive from `previous` into `current` and whether the gap between them holds it."""
    here, there = visit_point(previous), visit_point(current)
    fixed = fixed_minutes(previous.service_type)
    if here is not None and there is not None:
        minutes, distance = max(fixed, model.minutes(here, there)), model.road_km(here, there)
    else:
        minutes, distance = fixed, None
    buffers = (previous.service_type.buffer_after_minutes if previous.service_type else 0) + (
        current.service_type.buffer_before_minutes if current.service_type else 0)
    gap = int((current.starts_at - previous.ends_at).total_seconds() // 60)
    return Leg(previous.id, current.id, None if distance is None else round(distance, 1), minutes,
               distance is not None, gap, gap >= minutes + buffers)


def day_plan(session: Session, technician: User, day: dt.date) -> DayPlan:
    """A technician's visits on one day (in their zone) with the travel between them."""
    zone = ZoneInfo(technician.timezone)
    start = dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.UTC)
    visits = list(session.scalars(
        select(Appointment).where(Appointment.technician_id == technician.id, *_live(),
                                  Appointment.starts_at < end, Appointment.ends_at > start)
        .options(selectinload(Appointment.job).selectinload(Job.site),
                 selectinload(Appointment.service_type))
        .order_by(Appointment.starts_at, Appointment.id)))
    model = model_for(technician)
    planned = [PlannedVisit(v, leg(model, visits[i - 1], v) if i else None)
               for i, v in enumerate(visits)]
    return DayPlan(technician, day, technician.timezone, model, planned)


def day_plan_json(plan: DayPlan) -> dict[str, object]:
    """A day plan as JSON (times RFC 3339 in UTC, the zone named)."""
    visits = []
    for visit in plan.visits:
        a, leg = visit.appointment, visit.travel_before
        site = a.job.site
        visits.append({
            "appointment_id": a.id, "job_id": a.job_id, "title": a.job.title,
            "starts_at": a.starts_at.isoformat(), "ends_at": a.ends_at.isoformat(),
            "status": a.status,
            "site": None if site is None else {
                "id": site.id, "address": site.address, "postcode": site.postcode,
                "country": site.country, "latitude": site.latitude, "longitude": site.longitude},
            "travel_before": None if leg is None else {
                "from_appointment_id": leg.from_appointment_id, "distance_km": leg.distance_km,
                "minutes": leg.minutes, "computed": leg.computed, "gap_minutes": leg.gap_minutes,
                "enough": leg.enough},
        })
    return {"technician": plan.technician.login, "date": plan.day.isoformat(),
            "timezone": plan.timezone, "road_factor": plan.model.road_factor,
            "speed_kmh": plan.model.speed_kmh, "travel_minutes": plan.travel_minutes,
            "distance_km": round(plan.distance_km, 1), "visits": visits}


@operation
def set_team_travel(ctx: Context, team: Team, *, road_factor: float | None = None,
                    speed_kmh: float | None = None) -> Team:
    """How a team's drives are estimated: distance x road factor / speed."""
    before = {"road_factor": team.road_factor, "speed_kmh": team.speed_kmh}
    if road_factor is not None:
        if not (1.0 <= road_factor <= 5.0) or math.isnan(road_factor):
            raise InvalidInput("A road factor is between 1 (straight roads) and 5.")
        team.road_factor = road_factor
    if speed_kmh is not None:
        if not (1.0 <= speed_kmh <= 200.0) or math.isnan(speed_kmh):
            raise InvalidInput("An average speed is between 1 and 200 km/h.")
        team.speed_kmh = speed_kmh
    after = {"road_factor": team.road_factor, "speed_kmh": team.speed_kmh}
    if after != before:
        audit.record(ctx.session, ctx.actor, Action.TEAM_TRAVEL, "team", team.id, before=before,
                     after=after)
    return team


def _needed(session: Session, visit: Appointment) -> Interval:
    """The blocked range a visit needs now: buffers, fixed travel, drives to its neighbours."""
    service = visit.service_type
    before = dt.timedelta(minutes=service.buffer_before_minutes if service else 0)
    after = dt.timedelta(minutes=(service.buffer_after_minutes if service else 0)
                         + fixed_minutes(service))
    low, high = visit.starts_at - before, visit.ends_at + after
    point, technician = visit_point(visit), visit.technician
    if point is None or technician is None:
        return low, high
    previous, following = neighbours(session, technician, visit.starts_at, visit.ends_at, visit.id)
    model = model_for(technician)
    if previous is not None and (there := visit_point(previous)) is not None:
        low -= dt.timedelta(minutes=max(0, model.minutes(there, point)
                                        - fixed_minutes(previous.service_type)))
    if following is not None and (there := visit_point(following)) is not None:
        high += dt.timedelta(minutes=max(0, model.minutes(point, there) - fixed_minutes(service)))
    return low, high


def relax_around(session: Session, technician: User, starts_at: dt.datetime,
                 ends_at: dt.datetime) -> None:
    """After a visit left [starts_at, ends_at): its former neighbours block no more drive
    than they now need (ranges only ever shrink here, so the overlap guard still holds)."""
    for visit in neighbours(session, technician, starts_at, ends_at):
        if visit is None or visit_point(visit) is None:
            continue
        low, high = _needed(session, visit)
        visit.blocked_from = max(visit.blocked_from, low)
        visit.blocked_until = min(visit.blocked_until, high)
