"""Service areas: which technicians serve a site.

A site's area is its postcode and country (read from the address or given) and,
optionally, its coordinates. A technician serves a site if a rule of theirs or of
one of their teams matches it: a postcode prefix in a country, a whole country
(empty prefix), or a circle around a centre point. A technician with no rule at all
serves every site, so a business that sets no areas works as before.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from server import audit
from server.actions import Action
from server.addresses import check_coordinates, locate, normalise_country, normalise_postcode
from server.context import Context, operation
from server.errors import InvalidInput, NotFound
from server.models import ServiceArea, Site, Team, TeamMember, User

Point = tuple[float, float]
PREFIX = re.compile(r"^[A-Z0-9 ]{0,10}$")
EARTH_RADIUS_KM = 6371.0088
MAX_RADIUS_KM = 1000.0


@dataclass(frozen=True)
class Area:
    """Where a site is. Empty fields are unknown."""

    country: str = ""
    postcode: str = ""
    latitude: float | None = None
    longitude: float | None = None

    @property
    def point(self) -> Point | None:
        if self.latitude is None or self.longitude is None:
            return None
        return (self.latitude, self.longitude)

    @property
    def known(self) -> bool:
        return bool(self.country and self.postcode) or self.point is not None

    def label(self) -> str:
        parts = [" ".join(p for p in (self.country, self.postcode) if p)]
        if self.point is not None:
            parts.append(f"{self.point[0]:.4f},{self.point[1]:.4f}")
        text = " at ".join(p for p in parts if p)
        return text or "an address without a postcode"


UNKNOWN_AREA = Area()


def area_of_site(site: Site | None) -> Area:
    if site is None:
        return UNKNOWN_AREA
    return Area(site.country or "", site.postcode or "", site.latitude, site.longitude)


def area_of_address(address: str, timezone: str = "", *, country: str = "", postcode: str = "",
                    latitude: float | None = None, longitude: float | None = None) -> Area:
    """The area of an address as typed; explicit postcode/country/coordinates win."""
    found = locate(address, timezone, country=country, postcode=postcode, latitude=latitude,
                   longitude=longitude)
    return Area(found.country, found.postcode, found.latitude, found.longitude)


def check_point(point: Point) -> Point:
    if any(map(math.isnan, point)):
        raise InvalidInput("Coordinates must be numbers.")
    check_coordinates(*point)
    return point


def haversine_km(a: Point, b: Point) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def postcode_matches(prefix: str, postcode: str, country: str) -> bool:
    """A prefix rule: "10" matches 10178; in the UK "SW1" matches SW1A 2AA but not SW19 1AA."""
    if not prefix:
        return True
    if country != "GB":
        return postcode.replace(" ", "").startswith(prefix.replace(" ", ""))
    outward, _, _ = postcode.partition(" ")
    if prefix.isalpha():
        letters = re.match(r"[A-Z]*", outward)
        return letters is not None and letters.group(0) == prefix
    if " " in prefix:
        return postcode.startswith(prefix)
    if not outward.startswith(prefix):
        return False
    following = outward[len(prefix):len(prefix) + 1]
    return not (following.isdigit() and prefix[-1].isdigit())


def rule_matches(rule: ServiceArea, area: Area) -> bool:
    if rule.radius_km is not None and rule.centre_latitude is not None \
            and rule.centre_longitude is not None:
        point = area.point
        return point is not None and haversine_km(
            (rule.centre_latitude, rule.centre_longitude), point) <= rule.radius_km
    return bool(area.postcode) and area.country == rule.country and postcode_matches(
        rule.postcode_prefix, area.postcode, rule.country)


def rule_label(rule: ServiceArea) -> str:
    if rule.radius_km is not None:
        return (f"within {rule.radius_km:g} km of {rule.centre_latitude:.4f},"
                f"{rule.centre_longitude:.4f}")
    return f"{rule.country} {rule.postcode_prefix}…" if rule.postcode_prefix else \
        f"all of {rule.country}"


def rules_by_technician(session: Session, technician_ids: Sequence[int]
                        ) -> dict[int, list[ServiceArea]]:
    """Each technician's own rules and their teams' rules; no key = no rule = serves everywhere."""
    if not technician_ids:
        return {}
    teams: dict[int, list[int]] = defaultdict(list)
    for team_id, user_id in session.execute(
            select(TeamMember.team_id, TeamMember.user_id)
            .where(TeamMember.user_id.in_(technician_ids))):
        teams[team_id].append(user_id)
    found: dict[int, list[ServiceArea]] = defaultdict(list)
    query = select(ServiceArea).where(or_(
        ServiceArea.technician_id.in_(technician_ids),
        ServiceArea.team_id.in_(list(teams)) if teams else ServiceArea.id.is_(None),
    )).order_by(ServiceArea.id)
    for rule in session.scalars(query):
        owners = [rule.technician_id] if rule.technician_id is not None else teams[rule.team_id or 0]
        for owner in owners:
            if owner is not None:
                found[owner].append(rule)
    return dict(found)


def in_use(session: Session) -> bool:
    """True once any service area is set (until then every technician serves every site)."""
    return session.scalars(select(ServiceArea.id).limit(1)).first() is not None


def serves(rules: Iterable[ServiceArea] | None, area: Area) -> bool:
    if rules is None:
        return True
    return any(rule_matches(rule, area) for rule in rules)


def serving(session: Session, technicians: list[User], area: Area) -> list[User]:
    """The technicians who serve a site in `area` (order kept)."""
    rules = rules_by_technician(session, [t.id for t in technicians])
    return [t for t in technicians if serves(rules.get(t.id), area)]


def areas_of(session: Session, *, technician: User | None = None,
             team: Team | None = None) -> list[ServiceArea]:
    """The rules set on a technician (not their teams') or on a team."""
    query = select(ServiceArea).order_by(ServiceArea.id)
    if technician is not None:
        query = query.where(ServiceArea.technician_id == technician.id)
    elif team is not None:
        query = query.where(ServiceArea.team_id == team.id)
    else:
        raise InvalidInput("Name a technician or a team.")
    return list(session.scalars(query))


def area_json(rule: ServiceArea) -> dict[str, object]:
    return {
        "id": rule.id,
        "technician_id": rule.technician_id,
        "team_id": rule.team_id,
        "country": rule.country,
        "postcode_prefix": rule.postcode_prefix,
        "centre": (None if rule.centre_latitude is None
                   else [rule.centre_latitude, rule.centre_longitude]),
        "radius_km": rule.radius_km,
        "label": rule_label(rule),
    }


def _owner(technician: User | None, team: Team | None) -> tuple[str, int]:
    if (technician is None) == (team is None):
        raise InvalidInput("A service area belongs to one technician or one team.")
    return ("user", technician.id) if technician is not None else ("team", team.id)  # type: ignore[union-attr]


@operation
def add_service_area(ctx: Context, *, technician: User | None = None, team: Team | None = None,
                     country: str, postcode_prefix: str = "", centre: Point | None = None,
                     radius_km: float | None = None) -> ServiceArea:
    """Let a technician (or a whole team) serve a postcode prefix, a country, or a circle."""
    entity, entity_id = _owner(technician, team)
    code = normalise_country(country)
    if not code:
        raise InvalidInput(f"Country {country!r} is not an ISO code like DE, FR, GB or US.",
                           "country")
    prefix = normalise_postcode(postcode_prefix, code) if code == "GB" and len(
        postcode_prefix.replace(" ", "")) > 4 else " ".join(postcode_prefix.upper().split())
    if not PREFIX.match(prefix):
        raise InvalidInput(f"Postcode prefix {postcode_prefix!r} must be letters and digits, "
                           "e.g. 10 or SW1.", "postcode_prefix")
    if (centre is None) != (radius_km is None):
        raise InvalidInput("A circle needs both a centre (LAT,LON) and a radius in km.",
                           "radius_km" if centre is not None else "centre")
    if centre is not None and radius_km is not None:
        try:
            check_point(centre)
        except InvalidInput as exc:
            raise InvalidInput(exc.message, "centre") from None
        if prefix:
            raise InvalidInput("A rule is a postcode prefix or a circle; add them separately.",
                               "postcode_prefix")
        if not 0 < radius_km <= MAX_RADIUS_KM:
            raise InvalidInput(f"A radius is between 0 and {MAX_RADIUS_KM:g} km.", "radius_km")
    rule = ServiceArea(
        technician_id=technician.id if technician else None, team_id=team.id if team else None,
        country=code, postcode_prefix=prefix,
        centre_latitude=centre[0] if centre else None, centre_longitude=centre[1] if centre else None,
        radius_km=radius_km)
    ctx.session.add(rule)
    ctx.session.flush()
    audit.record(ctx.session, ctx.actor, Action.SERVICE_AREA_ADD, entity, entity_id, after=area_json(rule))
    return rule


@operation
def remove_service_area(ctx: Context, area_id: int, *, technician: User | None = None,
                        team: Team | None = None) -> ServiceArea:
    entity, entity_id = _owner(technician, team)
    rule = ctx.session.get(ServiceArea, area_id)
    owner_id = None if rule is None else (
        rule.technician_id if technician is not None else rule.team_id)
    if rule is None or owner_id != entity_id:
        raise NotFound(f"No service area #{area_id} on this {'technician' if technician else 'team'}.")
    before = area_json(rule)
    ctx.session.delete(rule)
    ctx.session.flush()
    audit.record(ctx.session, ctx.actor, Action.SERVICE_AREA_REMOVE, entity, entity_id, before=before)
    return rule
