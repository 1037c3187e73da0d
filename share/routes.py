"""Share pages: /s/<token> shows a customer's visits or a schedule's week, with subscribe options."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, make_response, render_template, request, url_for
from sqlalchemy.orm import Session

from server import inputs, links
from server.errors import InvalidInput
from server.ical import Audience, render_appointment
from server.models import ShareLink, utcnow
from server.web.context import database, link_signer, settings
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
MAX_ID = 2**31 - 1  # the largest row id both databases store; larger ids match no route
ICS_AUDIENCE = {
    links.LinkAudience.CUSTOMER: Audience.CUSTOMER,
    links.LinkAudience.TEAM: Audience.TEAM,
    links.LinkAudience.TECHNICIAN: Audience.TEAM,
    links.LinkAudience.FREEBUSY: Audience.FREEBUSY,
}


STATIC_MAX_AGE = 365 * 24 * 3600  # a versioned URL (?v=<hash of the file>) never changes
STATIC_UNVERSIONED_MAX_AGE = 3600


SCRIPTS_CSP = SECURITY_HEADERS["Content-Security-Policy"].replace(
    "style-src 'self';", "style-src 'self'; script-src 'self';")


def secure(response: Response, *, scripts: bool = False) -> Response:
    """The security headers; private pages are never stored, a response marked public keeps
    its caching (the stylesheet, the icon). `scripts`: the page loads our own script files
    (never inline ones)."""
    kept = response.headers.get("Cache-Control") if response.cache_control.public else None
    response.headers.update(SECURITY_HEADERS)
    if kept:
        response.headers["Cache-Control"] = kept
    if scripts:
        response.headers["Content-Security-Policy"] = SCRIPTS_CSP
    return response


@bp.after_request
def protect(response: Response) -> Response:
    if request.endpoint == f"{bp.name}.static" and response.status_code in (200, 304):
        response.cache_control.no_cache = None
        response.cache_control.public = True
        response.cache_control.max_age = (STATIC_MAX_AGE if request.args.get("v")
                                          else STATIC_UNVERSIONED_MAX_AGE)
        if request.args.get("v"):
            response.cache_control.immutable = True
    return secure(response)


@lru_cache(maxsize=32)
def asset_version(filename: str) -> str:
    """A short hash of a static file's bytes, for URLs that change when the file does."""
    folder = bp.static_folder
    if folder is None:
        return ""
    return hashlib.sha256((Path(folder) / filename).read_bytes()).hexdigest()[:12]


@bp.app_context_processor
def asset_urls() -> dict[str, object]:
    def asset(filename: str) -> str:
        return url_for(f"{bp.name}.static", filename=filename, v=asset_version(filename))
    return {"asset": asset}


def not_found() -> tuple[str, int]:
    return render_template("share/not_found.html"), 404


def _resolve(session: Session, token: str) -> ShareLink | None:
    try:
        return links.resolve(session, link_signer(), token, links.Purpose.SHARE)
    except links.InvalidLink as exc:
        log.info("share page %s refused: %s", links.redact(token), exc.reason)
        return None


def note_use(link: ShareLink) -> None:
    """When and with which browser a page link was last opened (shown in `link list`, the console)."""
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
    chosen = inputs.parse_day(request.args.get("week", ""), "The week") \
        or utcnow().astimezone(zone).date()
    return chosen - dt.timedelta(days=chosen.weekday())


def refuse_input(error: InvalidInput) -> Response:
    """Input the pages cannot work with (a date out of range, ...): 400 with the reason."""
    phone = settings().business_phone
    digits = "".join(c for c in phone if c.isdigit() or c == "+")
    response = make_response(render_template(
        "share/book_problem.html", title="We could not use what was sent", message=error.message,
        start_over=False, phone=phone, phone_href=f"tel:{digits}" if digits else ""), error.status)
    response.headers.update(SECURITY_HEADERS)
    return response


bp.register_error_handler(InvalidInput, refuse_input)


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
    note_use(link)
    return html


@bp.get(f"/s/<token>/visits/<int(max={MAX_ID}):appointment_id>.ics")
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
