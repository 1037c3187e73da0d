"""/api/v1 what can be booked and when nobody can: service types (create, edit), a
technician's time off, and removing holidays."""

from __future__ import annotations

from typing import Any

from flask import request
from sqlalchemy.orm import Session

from server.api import views
from server.api.admin_schemas import (
    ServiceTypeIn,
    ServiceTypePatch,
    TimeOffIn,
    TimeOffOut,
    TimeOffPage,
    TimeOffQuery,
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
from server.api.places import technician_user
from server.api.problems import ApiProblem
from server.api.schemas import CreateHeaders, HolidayOut, ServiceTypeOut, WriteHeaders
from server.apikeys import Scope
from server.errors import NotFound
from server.models import TimeOff, User, utcnow
from server.scheduling import capacity

LOGIN = "<login>"
TIME_OFF_ID = "<int:time_off_id>"


# --------------------------------------------------------------------------- service types


@bp.post("/service-types")
@endpoint(Scope.ADMIN, tags=("service-types",), body=ServiceTypeIn, headers=CreateHeaders,
          resp=ans(201, ServiceTypeOut), idempotent=True)
def add_service_type() -> Any:
    """A new kind of visit: duration, buffers, fixed travel, skills, arrival windows (in the
    business's zone), notice, horizon, remote."""
    data = body(ServiceTypeIn)
    with writing() as ctx:
        service = capacity.add_service_type(ctx, **data.model_dump())
        out = views.service_type(service)
    return one(out, 201, f"{request.url_root.rstrip('/')}/api/v1/service-types/{out.slug}")


@bp.patch("/service-types/<slug>")
@endpoint(Scope.ADMIN, tags=("service-types",), body=ServiceTypePatch, headers=WriteHeaders,
          resp=ans(200, ServiceTypeOut))
def edit_service_type(slug: str) -> Any:
    """Change the fields given (booked visits keep their times); `active: false` stops
    offering it."""
    data = body(ServiceTypePatch)
    changes = {name: getattr(data, name) for name in data.model_fields_set}
    for name, value in changes.items():
        if value is None:
            raise ApiProblem(422, f"{name} cannot be null; leave it out to keep it.")
    with writing() as ctx:
        service = capacity.find_service_type(ctx.session, slug)
        check_if_match(views.service_type(service))
        capacity.edit_service_type(ctx, service, **changes)
        ctx.session.flush()
        return one(views.service_type(service))


# --------------------------------------------------------------------------- time off


def time_off_out(row: TimeOff, login: str | None) -> TimeOffOut:
    return TimeOffOut.model_construct(id=row.id, technician=login, starts_at=local(row.starts_at),
                                      ends_at=local(row.ends_at), reason=row.reason)


def _own_time_off(session: Session, user: User | None, time_off_id: int) -> TimeOff:
    row = session.get(TimeOff, time_off_id)
    if row is None or row.technician_id != (user.id if user else None):
        what = f"time off of {user.login}" if user else "holiday"
        raise NotFound(f"No {what} #{time_off_id}.")
    return row


@bp.get(f"/technicians/{LOGIN}/time-off")
@endpoint(Scope.READ, tags=("technicians",), query=TimeOffQuery, resp=ans(200, TimeOffPage))
def list_time_off(login: str) -> Any:
    """The technician's leave, earliest first (what has ended only with `all=true`)."""
    query = params(TimeOffQuery)
    with reading() as session:
        user = technician_user(session, login)
        rows = capacity.time_off_of(session, user, since=None if query.all else utcnow())
        items = [time_off_out(r, user.login) for r in rows]
    return TimeOffPage(items=items, next=None, timezone=zone().key)


@bp.post(f"/technicians/{LOGIN}/time-off")
@endpoint(Scope.ADMIN, tags=("technicians",), body=TimeOffIn, headers=CreateHeaders,
          resp=ans(201, TimeOffOut), idempotent=True)
def add_time_off(login: str) -> Any:
    """Leave: the technician is offered and booked nowhere in it (a dispatcher may force)."""
    data = body(TimeOffIn)
    with writing() as ctx:
        user = technician_user(ctx.session, login)
        row = capacity.add_time_off(ctx, user, data.starts_at, data.ends_at, data.reason)
        return one(time_off_out(row, user.login), 201)


@bp.delete(f"/technicians/{LOGIN}/time-off/{TIME_OFF_ID}")
@endpoint(Scope.ADMIN, tags=("technicians",), headers=WriteHeaders, resp=ans(200, TimeOffOut))
def remove_time_off(login: str, time_off_id: int) -> Any:
    """Remove leave; answers what was removed."""
    with writing() as ctx:
        user = technician_user(ctx.session, login)
        out = time_off_out(_own_time_off(ctx.session, user, time_off_id), user.login)
        check_if_match(out)
        capacity.remove_time_off(ctx, time_off_id, user)
        return one(out)


@bp.delete(f"/holidays/{TIME_OFF_ID}")
@endpoint(Scope.ADMIN, tags=("holidays",), headers=WriteHeaders, resp=ans(200, HolidayOut))
def remove_holiday(time_off_id: int) -> Any:
    """Remove a holiday; answers what was removed."""
    with writing() as ctx:
        out = views.holiday(_own_time_off(ctx.session, None, time_off_id))
        check_if_match(out)
        capacity.remove_time_off(ctx, time_off_id, None)
        return one(out)
