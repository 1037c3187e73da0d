"""/api/v1 service types, holidays, availability, links, the audit export and the change log."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from flask import request
from sqlalchemy import select
from sqlalchemy.orm import Session

from server import changes, links
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
from server.api.pages import EventPage, HolidayPage, LinkPage, ServiceTypePage, SlotPage
from server.api.problems import ApiProblem
from server.api.schemas import (
    ActionHeaders,
    AvailabilityQuery,
    ChangeQuery,
    CreateHeaders,
    HolidayIn,
    HolidayOut,
    LinkIn,
    LinkOut,
    LinkQuery,
    PageQuery,
    ServiceTypeOut,
    SlotOut,
)
from server.apikeys import Scope
from server.errors import NotFound
from server.models import AuditEntry, ServiceType, ShareLink, Site, TimeOff, User, utcnow
from server.scheduling.areas import area_of_site
from server.scheduling.availability import free_slots
from server.scheduling.booking import service_type_by_slug
from server.scheduling.capacity import add_time_off
from server.web.context import link_signer

SLUG = "<slug>"
LINK_ID = "<int:link_id>"
MAX_RANGE = dt.timedelta(days=62)


@bp.get("/service-types")
@endpoint(Scope.READ, tags=("service-types",), query=PageQuery, resp=ans(200, ServiceTypePage))
def list_service_types() -> Any:
    query = params(PageQuery)
    after = cursor_id(query.cursor)
    with reading() as session:
        items = [views.service_type(s) for s in session.scalars(
            select(ServiceType).where(ServiceType.id > after).order_by(ServiceType.id)
            .limit(query.limit))]
    more = [items[-1].id] if len(items) == query.limit else None
    return ServiceTypePage(items=items, next=next_link(more), timezone=zone().key)


@bp.get(f"/service-types/{SLUG}")
@endpoint(Scope.READ, tags=("service-types",), resp=ans(200, ServiceTypeOut))
def get_service_type(slug: str) -> Any:
    with reading() as session:
        found = session.scalars(select(ServiceType).where(ServiceType.slug == slug)).first()
        if found is None:
            raise NotFound(f"No service type {slug!r}.")
        return one(views.service_type(found))


@bp.get("/holidays")
@endpoint(Scope.READ, tags=("holidays",), query=PageQuery, resp=ans(200, HolidayPage))
def list_holidays() -> Any:
    query = params(PageQuery)
    after = cursor_id(query.cursor)
    with reading() as session:
        items = [views.holiday(h) for h in session.scalars(
            select(TimeOff).where(TimeOff.technician_id.is_(None), TimeOff.id > after)
            .order_by(TimeOff.id).limit(query.limit))]
    more = [items[-1].id] if len(items) == query.limit else None
    return HolidayPage(items=items, next=next_link(more), timezone=zone().key)


@bp.post("/holidays")
@endpoint(Scope.ADMIN, tags=("holidays",), body=HolidayIn, headers=CreateHeaders,
          resp=ans(201, HolidayOut), idempotent=True)
def add_holiday() -> Any:
    """A day (or span) nobody can be booked."""
    data = body(HolidayIn)
    with writing() as ctx:
        out = views.holiday(add_time_off(ctx, None, data.starts_at, data.ends_at, data.reason))
    return one(out, 201)


@bp.get("/availability")
@endpoint(Scope.READ, tags=("availability",), query=AvailabilityQuery, resp=ans(200, SlotPage))
def availability() -> Any:
    """Free slots of a service, each with the technician who would get it; with `site`, only
    technicians who serve the site's area (and with the drive to it left free)."""
    query = params(AvailabilityQuery)
    if query.to <= query.from_ or query.to - query.from_ > MAX_RANGE:
        raise ApiProblem(422, "`to` must be after `from`, at most 62 days later.")
    with reading() as session:
        service = service_type_by_slug(session, query.service)
        site = None
        if query.site is not None:
            site = session.get(Site, query.site)
            if site is None:
                raise NotFound(f"No site #{query.site}.")
        slots = free_slots(session, service, start=query.from_, end=query.to, now=utcnow(),
                           windows_zone=settings().timezone,
                           area=None if site is None else area_of_site(site))[:query.limit]
        logins = _logins(session, {s.technician_ids[0] for s in slots})
    here = zone()
    items = [SlotOut.model_construct(
        starts_at=s.starts_at.astimezone(here), ends_at=s.ends_at.astimezone(here),
        technician=logins[s.technician_ids[0]],
        window_start=s.window[0].astimezone(here) if s.window else None,
        window_end=s.window[1].astimezone(here) if s.window else None) for s in slots]
    return SlotPage(items=items, next=None, timezone=here.key)


def _logins(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(session.execute(select(User.id, User.login).where(User.id.in_(ids))).all())


# --------------------------------------------------------------------------- links


def _link_out(session: Session, link: ShareLink) -> LinkOut:
    live = link.revoked_at is None and (link.expires_at is None or link.expires_at > utcnow())
    url = None
    if live:
        url = settings().base_url + links.path(link.purpose, link_signer().dumps(link))
    return views.link(link, f"{link.subject_kind}:{link.subject_id}", url)


def _subject(session: Session, text: str) -> links.Subject:
    return links.parse_subject(session, text)


@bp.get("/links")
@endpoint(Scope.ADMIN, tags=("links",), query=LinkQuery, resp=ans(200, LinkPage))
def list_links() -> Any:
    query = params(LinkQuery)
    with reading() as session:
        items = [_link_out(session, link)
                 for link in links.links_of(session, _subject(session, query.subject))]
    return LinkPage(items=items, next=None, timezone=zone().key)


@bp.post("/links")
@endpoint(Scope.ADMIN, tags=("links",), body=LinkIn, headers=CreateHeaders,
          resp=ans(201, LinkOut), idempotent=True)
def issue_link() -> Any:
    """A share page (with its feed), a feed link or a technician's day page; the answer carries
    the URL."""
    data = body(LinkIn)
    expires = utcnow() + dt.timedelta(days=data.expires_in_days) if data.expires_in_days else None
    with writing() as ctx:
        link = links.issue(ctx, links.Purpose(data.purpose.value), _subject(ctx.session, data.subject),
                           audience=links.LinkAudience(data.audience.value) if data.audience else None,
                           expires_at=expires, label=data.label)
        return one(_link_out(ctx.session, link), 201)


def _link_action(link_id: int, action: Any) -> Any:
    with writing() as ctx:
        link = links.get_link(ctx.session, link_id)
        if link.purpose not in (links.Purpose.FEED, links.Purpose.SHARE, links.Purpose.DAY):
            raise NotFound(f"No share, feed or day link #{link_id}.")
        check_if_match(_link_out(ctx.session, link))
        action(ctx, link)
        return one(_link_out(ctx.session, link))


@bp.post(f"/links/{LINK_ID}/revoke")
@endpoint(Scope.ADMIN, tags=("links",), headers=ActionHeaders, resp=ans(200, LinkOut),
          idempotent=True)
def revoke_link(link_id: int) -> Any:
    return _link_action(link_id, links.revoke)


@bp.post(f"/links/{LINK_ID}/rotate")
@endpoint(Scope.ADMIN, tags=("links",), headers=ActionHeaders, resp=ans(200, LinkOut),
          idempotent=True)
def rotate_link(link_id: int) -> Any:
    """Same link, new URL: the old one stops working."""
    return _link_action(link_id, links.rotate)


# --------------------------------------------------------------------------- audit, changes


@bp.get("/audit")
@endpoint(Scope.AUDIT, tags=("audit",), query=PageQuery, resp=ans(200, EventPage))
def export_audit() -> Any:
    """The whole audit trail, oldest first (follow `next` to export it all)."""
    query = params(PageQuery)
    after = cursor_id(query.cursor)
    with reading() as session:
        rows = list(session.scalars(select(AuditEntry).where(AuditEntry.id > after)
                                    .order_by(AuditEntry.id).limit(query.limit)))
        items = [views.event(views.as_event(e)) for e in rows]
    more = [rows[-1].id] if len(rows) == query.limit else None
    return EventPage(items=items, next=next_link(more), timezone=zone().key)


@bp.get("/changes")
@endpoint(Scope.READ, tags=("changes",), query=ChangeQuery, resp=ans(200, EventPage))
def list_changes() -> Any:
    """Every change after `after`: what, when, by whom. Resume from the last id you saw."""
    query = params(ChangeQuery)
    with reading() as session:
        found = changes.events(session, query.after, query.limit, query.entity)
    items = [views.event(e) for e in found]
    next_url = None
    if len(found) == query.limit:
        args = {k: v for k, v in request.args.items() if k != "after"}
        args["after"] = str(found[-1].id)
        next_url = f"{request.base_url}?{urlencode(args)}"
    return EventPage(items=items, next=next_url, timezone=zone().key)

