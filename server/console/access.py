"""Share links and API keys in the console (/console/links, /console/api-keys).

Issuing, revoking and listing are the same domain calls as `fieldcal link ...` and
`fieldcal apikey ...` (server.links, server.apikeys). A link's list row says when it was
last fetched and by which client (noted by the feed and share pages at most once a
minute); a new API key is shown once, on the page that answers its creation.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import request
from werkzeug.wrappers import Response

from server import apikeys, links
from server.console.desk import when, writing
from server.console.routes import bp, dispatcher_only, page
from server.errors import InvalidInput, NotFound
from server.models import ApiKey, ShareLink, utcnow
from server.web.context import database, link_signer, settings

MAX_DAYS = 3650


@dataclass(frozen=True)
class LinkRow:
    id: int
    purpose: str
    subject: str
    audience: str
    label: str
    url: str  # "" once the link no longer works
    state: str
    last_fetch: str
    client: str


def link_url(link: ShareLink) -> str:
    token = link_signer().dumps(link)
    base = settings().base_url
    return f"{base}/feeds/{token}.ics" if link.purpose == links.Purpose.FEED else f"{base}/s/{token}"


def _link_row(link: ShareLink, now: dt.datetime) -> LinkRow:
    live = link.revoked_at is None and (link.expires_at is None or link.expires_at > now)
    state = ("revoked " + when(link.revoked_at) if link.revoked_at is not None else
             "expired " + when(link.expires_at) if not live else
             "expires " + when(link.expires_at) if link.expires_at is not None else "live")
    return LinkRow(link.id, str(link.purpose), f"{link.subject_kind}:{link.subject_id}", str(link.audience),
                   link.label, link_url(link) if live else "", state, when(link.last_used_at),
                   link.last_user_agent or "")


def _links(message: str = "", status: int = 200, tone: str = "notice", **extra: object) -> Response:
    now = utcnow()
    with database().read() as session:
        rows = [_link_row(link, now) for link in links.recent(session)]
    return page("Share links", "console/links.html", status, rows=rows, message=message, tone=tone,
                purposes=[links.Purpose.SHARE.value, links.Purpose.FEED.value],
                audiences=[a.value for a in links.LinkAudience], **extra)


def _days(text: str) -> dt.datetime | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= MAX_DAYS:
        raise InvalidInput(f"Give the expiry as a number of days from 1 to {MAX_DAYS}, or leave it empty.")
    return utcnow() + dt.timedelta(days=int(text))


@bp.get("/links")
@dispatcher_only
def links_page() -> Response:
    return _links()


@bp.post("/links")
@dispatcher_only
def link_issue() -> Response:
    form = request.form
    try:
        purpose = links.Purpose(form.get("purpose", ""))
        if purpose not in (links.Purpose.SHARE, links.Purpose.FEED):
            raise ValueError(purpose)
    except ValueError:
        return _links("Choose a share page or a feed link.", 400, "error")
    audience_text = form.get("audience", "")
    try:
        audience = links.LinkAudience(audience_text) if audience_text else None
    except ValueError:
        return _links(f"{audience_text!r} is not an audience.", 400, "error")
    try:
        with writing() as ctx:
            subject = links.parse_subject(ctx.session, form.get("subject", "").strip())
            issued = links.issue(ctx, purpose, subject, audience=audience,
                                 expires_at=_days(form.get("expires_days", "")),
                                 label=form.get("label", "").strip()[:200])
            ctx.session.flush()
            url, issued_id = link_url(issued), issued.id
    except (InvalidInput, NotFound) as exc:
        return _links(exc.message, exc.status, "error", subject=form.get("subject", ""))
    return _links(f"Link #{issued_id} issued: {url}", 201, issued_url=url)


@bp.post("/links/<int:link_id>/revoke")
@dispatcher_only
def link_revoke(link_id: int) -> Response:
    try:
        with writing() as ctx:
            links.revoke(ctx, links.get_link(ctx.session, link_id))
    except NotFound as exc:
        return _links(exc.message, exc.status, "error")
    return _links(f"Link #{link_id} is revoked: it stops working from its next request.")


# --------------------------------------------------------------------------- API keys


@dataclass(frozen=True)
class KeyRow:
    id: int
    name: str
    role: str
    prefix: str
    created: str
    last_used: str
    state: str
    active: bool


def _key_row(key: ApiKey, now: dt.datetime) -> KeyRow:
    state = ("revoked " + when(key.revoked_at) if key.revoked_at is not None else
             "expired " + when(key.expires_at) if key.expires_at is not None and key.expires_at <= now else
             "expires " + when(key.expires_at) if key.expires_at is not None else "live")
    return KeyRow(key.id, key.name, str(key.role), key.prefix, when(key.created_at), when(key.last_used_at),
                  state, key.revoked_at is None and (key.expires_at is None or key.expires_at > now))


def _keys(message: str = "", status: int = 200, tone: str = "notice", **extra: object) -> Response:
    now = utcnow()
    with database().read() as session:
        rows = [_key_row(key, now) for key in apikeys.list_keys(session)]
    return page("API keys", "console/api_keys.html", status, rows=rows, message=message, tone=tone,
                roles=[r.value for r in apikeys.ApiRole], **extra)


@bp.get("/api-keys")
@dispatcher_only
def api_keys_page() -> Response:
    return _keys()


@bp.post("/api-keys")
@dispatcher_only
def api_key_create() -> Response:
    name = request.form.get("name", "")
    try:
        role = apikeys.parse_role(request.form.get("role", ""))
        expires_at = _days(request.form.get("expires_days", ""))
        with writing() as ctx:
            row, key = apikeys.issue_key(ctx, name, role, expires_at)
            key_id = row.id
    except InvalidInput as exc:
        return _keys(exc.message, exc.status, "error", name=name[:100])
    return page("API key created", "console/api_key_new.html", 201, key=key, key_id=key_id,
                name=name.strip(), role=role.value)


@bp.post("/api-keys/<int:key_id>/revoke")
@dispatcher_only
def api_key_revoke(key_id: int) -> Response:
    try:
        with writing() as ctx:
            row = apikeys.revoke_key(ctx, key_id)
            name = row.name
    except NotFound as exc:
        return _keys(exc.message, exc.status, "error")
    return _keys(f"API key {name!r} is revoked: requests with it are refused from now on.")
