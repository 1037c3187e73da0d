"""Share pages: /s/<token> shows a customer's visits or a schedule's week, with subscribe options."""

from __future__ import annotations

import datetime as dt
import logging
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, render_template, request
from sqlalchemy.orm import Session

from server import links
from server.ical import Audience, render_appointment
from server.models import ShareLink, utcnow
from server.webcontext import database, link_signer, settings
from share.views import customer_page, schedule_page, visit_belongs

log = logging.getLogger(__name__)
bp = Blueprint("share", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static/share")

SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
}
ICS_AUDIENCE = {
    links.LinkAudience.CUSTOMER: Audience.CUSTOMER,
    links.LinkAudience.TEAM: Audience.TEAM,
    links.LinkAudience.TECHNICIAN: Audience.TEAM,
    links.LinkAudience.FREEBUSY: Audience.FREEBUSY,
}


@bp.after_request
def protect(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def not_found() -> tuple[str, int]:
    return render_template("share/not_found.html"), 404


def _resolve(session: Session, token: str) -> ShareLink | None:
    try:
        return links.resolve(session, link_signer(), token, links.Purpose.SHARE)
    except links.InvalidLink as exc:
        log.info("share page %s refused: %s", links.redact(token), exc.reason)
        return None


def _note_use(link: ShareLink) -> None:
    agent = request.user_agent.string
    if links.use_is_stale(link, agent, utcnow()):
        with database().write() as session:
            fresh = session.get(ShareLink, link.id)
            if fresh is not None:
                links.record_use(session, fresh, agent)


def _subscribe_urls(session: Session, link: ShareLink) -> dict[str, str] | None:
    feed = links.companion_feed(session, link)
    if feed is None:
        return None
    https = f"{settings().base_url}/feeds/{link_signer().dumps(feed)}.ics"
    webcal = "webcal://" + https.split("://", 1)[1]
    return {"https": https, "webcal": webcal}


def _week_start(zone: ZoneInfo) -> dt.date:
    requested = request.args.get("week", "")
    try:
        chosen = dt.date.fromisoformat(requested) if requested else utcnow().astimezone(zone).date()
    except ValueError:
        chosen = utcnow().astimezone(zone).date()
    return chosen - dt.timedelta(days=chosen.weekday())


@bp.get("/s/<token>")
def page(token: str) -> Response | tuple[str, int] | str:
    with database().read() as session:
        link = _resolve(session, token)
        if link is None:
            return not_found()
        subscribe = _subscribe_urls(session, link)
        kind = links.SubjectKind(link.subject_kind)
        if kind in (links.SubjectKind.CUSTOMER, links.SubjectKind.APPOINTMENT):
            view = customer_page(session, link, since=utcnow() - dt.timedelta(days=30))
            if view is None:
                return not_found()
            html = render_template("share/customer.html", page=view, token=token,
                                   subscribe=subscribe, now=utcnow())
        else:
            zone = ZoneInfo(settings().timezone)
            monday = _week_start(zone)
            start = dt.datetime.combine(monday, dt.time(), zone)
            view = schedule_page(session, link, start.astimezone(dt.UTC),
                                 (start + dt.timedelta(days=7)).astimezone(dt.UTC),
                                 settings().timezone)
            if view is None:
                return not_found()
            days = [monday + dt.timedelta(days=i) for i in range(7)]
            html = render_template("share/schedule.html", page=view, token=token, days=days,
                                   subscribe=subscribe,
                                   previous_week=(monday - dt.timedelta(days=7)).isoformat(),
                                   next_week=(monday + dt.timedelta(days=7)).isoformat())
    _note_use(link)
    return html


@bp.get("/s/<token>/visits/<int:appointment_id>.ics")
def visit_ics(token: str, appointment_id: int) -> Response | tuple[str, int]:
    with database().read() as session:
        link = _resolve(session, token)
        appointment = visit_belongs(session, link, appointment_id) if link else None
        if link is None or appointment is None:
            return not_found()
        text = render_appointment(appointment, ICS_AUDIENCE[links.LinkAudience(link.audience)],
                                  settings().organizer)
    return Response(text.encode("utf-8"), 200, {
        "Content-Type": "text/calendar; charset=utf-8",
        "Content-Disposition": f'attachment; filename="service-visit-{appointment_id}.ics"',
    })
