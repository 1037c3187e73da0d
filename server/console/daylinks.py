"""A technician's day link in the console: issue it, show it with a QR code to scan, revoke it.

/console/technicians/<login>/day-link shows the technician's live day links (URL and
QR code, when each was last opened); POSTs issue a new one or revoke one.
"""

from __future__ import annotations

from dataclasses import dataclass

import segno
from flask import redirect, request, url_for
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from server import links
from server.console.routes import bp, dispatcher_only, page, request_id
from server.console.session import member
from server.context import Context
from server.errors import InvalidInput, NotFound
from server.models import ShareLink, User, utcnow
from server.web.context import database, link_signer, settings

NOTICES = {"issued": "A new day link is ready: let the technician scan the code.",
           "revoked": "The link was revoked: it stops working on its next use."}


@dataclass(frozen=True)
class DayLink:
    id: int
    url: str
    qr: str  # an SVG data: URI
    created_at: str
    created_by: str
    last_used: str


def qr_data_uri(url: str) -> str:
    """The URL as a QR code (SVG, no raster library), for an <img src>."""
    return str(segno.make(url, error="m").svg_data_uri(scale=5, border=2))


def _subject(session: Session, login: str) -> tuple[links.Subject, User]:
    subject = links.parse_subject(session, f"technician:{login}")
    user = session.get(User, subject.id)
    assert user is not None  # parse_subject found it
    return subject, user


def _live(session: Session, subject: links.Subject) -> list[ShareLink]:
    now = utcnow()
    return [link for link in links.links_of(session, subject)
            if link.purpose == links.Purpose.DAY and link.revoked_at is None
            and (link.expires_at is None or link.expires_at > now)]


def _shown(link: ShareLink) -> DayLink:
    url = settings().base_url + links.path(link.purpose, link_signer().dumps(link))
    used = (f"{link.last_used_at:%Y-%m-%d %H:%M} UTC ({link.last_user_agent[:80]})"
            if link.last_used_at else "never")
    return DayLink(link.id, url, qr_data_uri(url), f"{link.created_at:%Y-%m-%d %H:%M} UTC",
                   link.created_by, used)


def _page(login: str, status: int = 200, message: str = "") -> Response:
    try:
        with database().read() as session:
            subject, user = _subject(session, login)
            shown = [_shown(link) for link in reversed(_live(session, subject))]
    except (InvalidInput, NotFound) as exc:
        return page("No such technician", "console/problem.html", exc.status, message=exc.message)
    return page(f"{user.name}: day link", "console/day_link.html", status, technician=user,
                links=shown, message=message or NOTICES.get(request.args.get("done", ""), ""))


@bp.get("/technicians/<login>/day-link")
@dispatcher_only
def day_link(login: str) -> Response:
    return _page(login)


@bp.post("/technicians/<login>/day-link")
@dispatcher_only
def issue_day_link(login: str) -> Response:
    signed_in = member()
    assert signed_in is not None  # dispatcher_only
    try:
        with database().write() as session:
            subject, _user = _subject(session, login)
            links.issue(Context(session, signed_in.actor(request_id()), settings().organizer),
                        links.Purpose.DAY, subject, label="console")
    except (InvalidInput, NotFound) as exc:
        return page("No such technician", "console/problem.html", exc.status, message=exc.message)
    return redirect(url_for("console.day_link", login=login, done="issued"), 303)


@bp.post("/technicians/<login>/day-link/<int:link_id>/revoke")
@dispatcher_only
def revoke_day_link(login: str, link_id: int) -> Response:
    signed_in = member()
    assert signed_in is not None  # dispatcher_only
    try:
        with database().write() as session:
            subject, _user = _subject(session, login)
            link = session.get(ShareLink, link_id)
            if (link is None or link.purpose != links.Purpose.DAY
                    or (link.subject_kind, link.subject_id) != (subject.kind, subject.id)):
                raise NotFound(f"{login} has no day link #{link_id}.")
            links.revoke(Context(session, signed_in.actor(request_id()), settings().organizer), link)
    except (InvalidInput, NotFound) as exc:
        return page("Cannot revoke that link", "console/problem.html", exc.status, message=exc.message)
    return redirect(url_for("console.day_link", login=login, done="revoked"), 303)
