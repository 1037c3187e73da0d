"""/api/v1 where work happens: sites, service areas of technicians and teams, team travel,
and a technician's day with the drives between visits."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import request
from sqlalchemy.orm import Session

from server import directory
from server.api import views
from server.api.admin_schemas import (
    AreaIn,
    AreaOut,
    AreaPage,
    DayOut,
    DayQuery,
    Point,
    SiteIn,
    SitePatch,
    TravelIn,
)
from server.api.base import answers as ans
from server.api.base import (
    body,
    bp,
    check_if_match,
    endpoint,
    local,
    one,
    params,
    reading,
    writing,
    zone,
)
from server.api.people_schemas import (
    SiteOut,
    TeamOut,
)
from server.api.problems import ApiProblem
from server.api.schemas import (
    CreateHeaders,
    WriteHeaders,
)
from server.apikeys import Scope
from server.errors import NotFound
from server.models import Role, ServiceArea, Site, Team, User
from server.scheduling import areas, travel

LOGIN = "<login>"
SLUG = "<slug>"
AREA_ID = "<int:area_id>"
SITE_ID = "<int:site_id>"


def technician_user(session: Session, login: str) -> User:
    user = directory.find_user(session, login)
    if user.role != Role.TECHNICIAN:
        raise NotFound(f"{login!r} is not a technician.")
    return user


# --------------------------------------------------------------------------- sites


def _site(session: Session, site_id: int) -> Site:
    site = session.get(Site, site_id)
    if site is None:
        raise NotFound(f"No site #{site_id}.")
    return site


@bp.post("/customers/<int:customer_id>/sites")
@endpoint(Scope.BOOK, tags=("customers",), body=SiteIn, headers=CreateHeaders,
          resp=ans(201, SiteOut), idempotent=True)
def add_site(customer_id: int) -> Any:
    """A new site of the customer; postcode and country are read from the address unless
    given, coordinates are optional (never looked up)."""
    data = body(SiteIn)
    with writing() as ctx:
        customer = directory.find_customer(ctx.session, customer_id)
        site = directory.add_site(
            ctx, customer, data.address, compressor_make=data.compressor_make,
            compressor_model=data.compressor_model, compressor_serial=data.compressor_serial,
            postcode=data.postcode, country=data.country, latitude=data.latitude,
            longitude=data.longitude)
        out = views.site(site)
    return one(out, 201, f"{request.url_root.rstrip('/')}/api/v1/sites/{out.id}")


@bp.get(f"/sites/{SITE_ID}")
@endpoint(Scope.READ, tags=("customers",), resp=ans(200, SiteOut))
def get_site(site_id: int) -> Any:
    with reading() as session:
        return one(views.site(_site(session, site_id)))


@bp.patch(f"/sites/{SITE_ID}")
@endpoint(Scope.BOOK, tags=("customers",), body=SitePatch, headers=WriteHeaders,
          resp=ans(200, SiteOut))
def update_site(site_id: int) -> Any:
    """Change the address, postcode, country, coordinates or equipment (fields left out stay)."""
    data = body(SitePatch)
    given = data.model_fields_set
    point_given = bool({"latitude", "longitude"} & given)
    if point_given and (data.latitude is None) != (data.longitude is None):
        raise ApiProblem(422, "Give latitude and longitude together (or both null to clear "
                              "the point).")
    with writing() as ctx:
        site = _site(ctx.session, site_id)
        check_if_match(views.site(site))
        coordinates = None
        if point_given and data.latitude is not None and data.longitude is not None:
            coordinates = (data.latitude, data.longitude)
        directory.update_site(
            ctx, site, address=data.address, postcode=data.postcode, country=data.country,
            coordinates=coordinates, clear_coordinates=point_given and coordinates is None,
            compressor_make=data.compressor_make, compressor_model=data.compressor_model,
            compressor_serial=data.compressor_serial)
        ctx.session.flush()
        return one(views.site(site))


# --------------------------------------------------------------------------- service areas


def area_out(rule: ServiceArea, owners: dict[tuple[str, int], str]) -> AreaOut:
    centre = None if rule.centre_latitude is None or rule.centre_longitude is None else \
        Point.model_construct(latitude=rule.centre_latitude, longitude=rule.centre_longitude)
    return AreaOut.model_construct(
        id=rule.id, technician=owners.get(("user", rule.technician_id or 0)),
        team=owners.get(("team", rule.team_id or 0)), country=rule.country,
        postcode_prefix=rule.postcode_prefix, centre=centre, radius_km=rule.radius_km,
        label=areas.rule_label(rule))


def _owners(user: User | None = None, team: Team | None = None) -> dict[tuple[str, int], str]:
    owners: dict[tuple[str, int], str] = {}
    if user is not None:
        owners[("user", user.id)] = user.login
        owners.update({("team", t.id): t.slug for t in user.teams})
    if team is not None:
        owners[("team", team.id)] = team.slug
    return owners


def _add_area(data: AreaIn, *, login: str | None = None, slug: str | None = None) -> Any:
    with writing() as ctx:
        user = technician_user(ctx.session, login) if login else None
        team = directory.find_team(ctx.session, slug) if slug else None
        centre = None if data.centre is None else (data.centre.latitude, data.centre.longitude)
        rule = areas.add_service_area(ctx, technician=user, team=team, country=data.country,
                                      postcode_prefix=data.postcode_prefix, centre=centre,
                                      radius_km=data.radius_km)
        return one(area_out(rule, _owners(user, team)), 201)


def _remove_area(area_id: int, *, login: str | None = None, slug: str | None = None) -> Any:
    with writing() as ctx:
        user = technician_user(ctx.session, login) if login else None
        team = directory.find_team(ctx.session, slug) if slug else None
        rule = ctx.session.get(ServiceArea, area_id)
        owner = (rule.technician_id if user else rule.team_id) if rule is not None else None
        if rule is None or owner != (user.id if user else team.id if team else None):
            raise NotFound(f"No service area #{area_id} on {login or slug}.")
        out = area_out(rule, _owners(user, team))
        check_if_match(out)
        areas.remove_service_area(ctx, area_id, technician=user, team=team)
        return one(out)


@bp.get(f"/technicians/{LOGIN}/areas")
@endpoint(Scope.READ, tags=("technicians",), resp=ans(200, AreaPage))
def technician_areas(login: str) -> Any:
    """The technician's own areas and those of their teams. No area at all: serves every site."""
    with reading() as session:
        user = technician_user(session, login)
        rules = areas.areas_of(session, technician=user)
        for team in sorted(user.teams, key=lambda t: t.id):
            rules += areas.areas_of(session, team=team)
        owners = _owners(user)
        return AreaPage(items=[area_out(r, owners) for r in rules], next=None,
                        timezone=zone().key)


@bp.post(f"/technicians/{LOGIN}/areas")
@endpoint(Scope.ADMIN, tags=("technicians",), body=AreaIn, headers=CreateHeaders,
          resp=ans(201, AreaOut), idempotent=True)
def add_technician_area(login: str) -> Any:
    """Serve a postcode prefix in a country, a whole country, or a circle around a point."""
    return _add_area(body(AreaIn), login=login)


@bp.delete(f"/technicians/{LOGIN}/areas/{AREA_ID}")
@endpoint(Scope.ADMIN, tags=("technicians",), headers=WriteHeaders, resp=ans(200, AreaOut))
def remove_technician_area(login: str, area_id: int) -> Any:
    """Remove one of the technician's own areas; answers what was removed."""
    return _remove_area(area_id, login=login)


@bp.get(f"/teams/{SLUG}")
@endpoint(Scope.READ, tags=("teams",), resp=ans(200, TeamOut))
def get_team(slug: str) -> Any:
    with reading() as session:
        return one(views.team(directory.find_team(session, slug)))


@bp.get(f"/teams/{SLUG}/areas")
@endpoint(Scope.READ, tags=("teams",), resp=ans(200, AreaPage))
def team_areas(slug: str) -> Any:
    with reading() as session:
        team = directory.find_team(session, slug)
        owners = _owners(team=team)
        return AreaPage(items=[area_out(r, owners) for r in areas.areas_of(session, team=team)],
                        next=None, timezone=zone().key)


@bp.post(f"/teams/{SLUG}/areas")
@endpoint(Scope.ADMIN, tags=("teams",), body=AreaIn, headers=CreateHeaders,
          resp=ans(201, AreaOut), idempotent=True)
def add_team_area(slug: str) -> Any:
    """An area every member of the team serves."""
    return _add_area(body(AreaIn), slug=slug)


@bp.delete(f"/teams/{SLUG}/areas/{AREA_ID}")
@endpoint(Scope.ADMIN, tags=("teams",), headers=WriteHeaders, resp=ans(200, AreaOut))
def remove_team_area(slug: str, area_id: int) -> Any:
    return _remove_area(area_id, slug=slug)


@bp.put(f"/teams/{SLUG}/travel")
@endpoint(Scope.ADMIN, tags=("teams",), body=TravelIn, headers=WriteHeaders,
          resp=ans(200, TeamOut))
def set_team_travel(slug: str) -> Any:
    """How the team's drives are estimated: straight-line km x road factor / speed."""
    data = body(TravelIn)
    with writing() as ctx:
        team = directory.find_team(ctx.session, slug)
        check_if_match(views.team(team))
        travel.set_team_travel(ctx, team, road_factor=data.road_factor, speed_kmh=data.speed_kmh)
        return one(views.team(team))


# --------------------------------------------------------------------------- the day


def _moment(text: str) -> dt.datetime:
    return local(dt.datetime.fromisoformat(text))


@bp.get(f"/technicians/{LOGIN}/day")
@endpoint(Scope.READ, tags=("technicians",), query=DayQuery, resp=ans(200, DayOut))
def technician_day(login: str) -> Any:
    """The technician's visits on one day in order, with the drive computed before each."""
    query = params(DayQuery)
    with reading() as session:
        plan = travel.day_plan_json(travel.day_plan(session, technician_user(session, login),
                                                    query.date))
    for visit in plan["visits"]:  # type: ignore[attr-defined]
        visit["starts_at"], visit["ends_at"] = (_moment(visit["starts_at"]),
                                                _moment(visit["ends_at"]))
    plan["technician_timezone"] = plan.pop("timezone")
    return one(DayOut.model_validate({**plan, "timezone": zone().key}))

