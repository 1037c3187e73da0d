"""/api/v1 technicians (with working hours), teams and customers (with their sites)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from flask import request
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from server import directory
from server.api import views
from server.api.base import answers as ans
from server.api.base import (
    body,
    bp,
    check_if_match,
    cursor_id,
    endpoint,
    next_link,
    one,
    params,
    reading,
    settings,
    writing,
    zone,
)
from server.api.pages import CustomerPage, TeamPage, TechnicianPage
from server.api.people_schemas import (
    CustomerIn,
    CustomerOut,
    TeamIn,
    TeamOut,
    TechnicianIn,
    TechnicianOut,
    WeekIn,
)
from server.api.schemas import (
    CreateHeaders,
    PageQuery,
    WriteHeaders,
)
from server.apikeys import Scope
from server.errors import NotFound
from server.models import Customer, Role, Team, User, WorkingHours
from server.scheduling.capacity import set_working_hours

LOGIN = "<login>"
CUSTOMER_ID = "<int:customer_id>"


def _hours(session: Session, ids: list[int]) -> dict[int, list[WorkingHours]]:
    found: dict[int, list[WorkingHours]] = defaultdict(list)
    for row in session.scalars(select(WorkingHours).where(WorkingHours.technician_id.in_(ids))):
        found[row.technician_id].append(row)
    return found


def _technician(session: Session, login: str) -> TechnicianOut:
    user = directory.find_user(session, login)
    if user.role != Role.TECHNICIAN:
        raise NotFound(f"{login!r} is not a technician.")
    return views.technician(user, _hours(session, [user.id])[user.id])


@bp.get("/technicians")
@endpoint(Scope.READ, tags=("technicians",), query=PageQuery, resp=ans(200, TechnicianPage))
def list_technicians() -> Any:
    query = params(PageQuery)
    after = cursor_id(query.cursor)
    with reading() as session:
        users = list(session.scalars(
            select(User).options(selectinload(User.teams))
            .where(User.role == Role.TECHNICIAN, User.id > after).order_by(User.id)
            .limit(query.limit)))
        hours = _hours(session, [u.id for u in users])
        items = [views.technician(u, hours[u.id]) for u in users]
    more = [items[-1].id] if len(items) == query.limit else None
    return TechnicianPage(items=items, next=next_link(more), timezone=zone().key)


@bp.post("/technicians")
@endpoint(Scope.ADMIN, tags=("technicians",), body=TechnicianIn, headers=CreateHeaders,
          resp=ans(201, TechnicianOut), idempotent=True)
def add_technician() -> Any:
    data = body(TechnicianIn)
    with writing() as ctx:
        user = directory.add_user(ctx, data.login, name=data.name, email=data.email,
                                  role=Role.TECHNICIAN, timezone=data.timezone, skills=data.skills)
        out = views.technician(user, [])
    return one(out, 201, f"{request.url_root.rstrip('/')}/api/v1/technicians/{out.login}")


@bp.get(f"/technicians/{LOGIN}")
@endpoint(Scope.READ, tags=("technicians",), resp=ans(200, TechnicianOut))
def get_technician(login: str) -> Any:
    with reading() as session:
        return one(_technician(session, login))


@bp.put(f"/technicians/{LOGIN}/working-hours")
@endpoint(Scope.ADMIN, tags=("technicians",), body=WeekIn, headers=WriteHeaders,
          resp=ans(200, TechnicianOut))
def put_working_hours(login: str) -> Any:
    """Replace the weekly hours (in the technician's own time zone)."""
    data = body(WeekIn)
    with writing() as ctx:
        check_if_match(_technician(ctx.session, login))
        user = directory.find_user(ctx.session, login)
        week: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for span in data.working_hours:
            week[span.weekday].append((span.starts, span.ends))
        set_working_hours(ctx, user, dict(week))
        ctx.session.flush()
        return one(_technician(ctx.session, login))


@bp.get("/teams")
@endpoint(Scope.READ, tags=("teams",), query=PageQuery, resp=ans(200, TeamPage))
def list_teams() -> Any:
    query = params(PageQuery)
    after = cursor_id(query.cursor)
    with reading() as session:
        items = [views.team(t) for t in session.scalars(
            select(Team).options(selectinload(Team.members)).where(Team.id > after)
            .order_by(Team.id).limit(query.limit))]
    more = [items[-1].id] if len(items) == query.limit else None
    return TeamPage(items=items, next=next_link(more), timezone=zone().key)


@bp.post("/teams")
@endpoint(Scope.ADMIN, tags=("teams",), body=TeamIn, headers=CreateHeaders,
          resp=ans(201, TeamOut), idempotent=True)
def add_team() -> Any:
    data = body(TeamIn)
    with writing() as ctx:
        out = views.team(directory.add_team(ctx, data.slug, data.name))
    return one(out, 201)


@bp.get("/customers")
@endpoint(Scope.READ, tags=("customers",), query=PageQuery, resp=ans(200, CustomerPage))
def list_customers() -> Any:
    query = params(PageQuery)
    after = cursor_id(query.cursor)
    with reading() as session:
        items = [views.customer(c) for c in session.scalars(
            select(Customer).options(selectinload(Customer.sites)).where(Customer.id > after)
            .order_by(Customer.id).limit(query.limit))]
    more = [items[-1].id] if len(items) == query.limit else None
    return CustomerPage(items=items, next=next_link(more), timezone=zone().key)


@bp.post("/customers")
@endpoint(Scope.BOOK, tags=("customers",), body=CustomerIn, headers=CreateHeaders,
          resp=ans(201, CustomerOut), idempotent=True)
def add_customer() -> Any:
    data = body(CustomerIn)
    with writing() as ctx:
        customer = directory.add_customer(
            ctx, data.name, email=data.email, phone=data.phone,
            timezone=data.timezone or settings().timezone, address=data.address,
            compressor_make=data.compressor_make, compressor_model=data.compressor_model,
            compressor_serial=data.compressor_serial)
        ctx.session.flush()
        ctx.session.refresh(customer, ["sites"])
        out = views.customer(customer)
    return one(out, 201, f"{request.url_root.rstrip('/')}/api/v1/customers/{out.id}")


@bp.get(f"/customers/{CUSTOMER_ID}")
@endpoint(Scope.READ, tags=("customers",), resp=ans(200, CustomerOut))
def get_customer(customer_id: int) -> Any:
    with reading() as session:
        return one(views.customer(directory.find_customer(session, customer_id)))
