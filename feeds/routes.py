"""GET/HEAD /feeds/<token>.ics: conditional GET answered before any item query or render.

A client that accepts gzip gets the feed's gzip, made once per feed version and kept
beside the body in the feed cache, under an ETag of its own (`-gzip`); both tags
revalidate. Every answer says `Vary: Accept-Encoding`.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, request
from werkzeug.http import http_date, parse_date

from feeds.assemble import assemble
from feeds.freebusy import body_for, etag_of
from feeds.plan import Validator, Window, plan_for, validator
from server import links
from server.bodycache import BodyCache
from server.models import ShareLink, utcnow
from server.web.compress import accepts_gzip, gzip_etag
from server.web.context import database, link_signer, settings

log = logging.getLogger(__name__)
bp = Blueprint("feeds", __name__)

NOT_FOUND_TEXT = "Not found. This calendar link is not valid (any more).\n"
COMMON_HEADERS = {
    "X-Robots-Tag": "noindex, nofollow",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def _cache() -> BodyCache[bytes]:
    return current_app.extensions["fieldcal.feed_cache"]


def not_found() -> Response:
    return Response(NOT_FOUND_TEXT, 404, {"Content-Type": "text/plain; charset=utf-8",
                                          "Cache-Control": "no-store", **COMMON_HEADERS})


def _not_modified(found: Validator) -> bool:
    if_none_match = request.if_none_match
    if if_none_match:
        tag = found.etag.strip('"')
        return (if_none_match.contains_weak(tag) or if_none_match.contains_weak(f"{tag}-gzip")
                or if_none_match.star_tag)
    since_header = request.headers.get("If-Modified-Since")
    since = parse_date(since_header) if since_header else None
    return since is not None and since >= found.last_modified


def _headers(found: Validator, packed: bool) -> dict[str, str]:
    return {
        "ETag": gzip_etag(found.etag) if packed else found.etag,
        "Vary": "Accept-Encoding",
        "Last-Modified": http_date(found.last_modified),
        "Cache-Control": "no-cache",
        "Content-Disposition": 'inline; filename="calendar.ics"',
        **COMMON_HEADERS,
    }


@bp.route("/feeds/<token>.ics", methods=["GET", "HEAD"])
def feed(token: str) -> Response:
    config = settings()
    db = database()
    now = utcnow()
    window = Window.around(now.date(), config)
    with db.read() as session:
        try:
            link = links.resolve(session, link_signer(), token, links.Purpose.FEED)
        except links.InvalidLink as exc:
            log.info("feed %s refused: %s", links.redact(token), exc.reason)
            return not_found()
        plan = plan_for(session, link)
        if plan is None:
            return not_found()
        found = validator(plan, window, config)
        needs_touch = links.use_is_stale(link, request.user_agent.string, now)
        packed = accepts_gzip(request)
        headers = _headers(found, packed)
        if _not_modified(found):
            response = Response(status=304, headers=headers)
        else:
            cached = _cache().get(found.etag)
            body = cached if isinstance(cached, bytes) else None  # feeds are kept as bytes
            if body is None:
                body = assemble(session, plan, window,
                                refresh_minutes=config.feed_refresh_minutes,
                                max_bytes=config.feed_max_bytes)
                _cache().put(found.etag, body)
            zipped = _cache().gzipped(found.etag) if packed else None
            if zipped is not None:  # compressed once per feed version, kept beside the body
                body = zipped
                headers["Content-Encoding"] = "gzip"
            else:
                headers["ETag"] = found.etag
            response = Response(body, 200, headers, content_type="text/calendar; charset=utf-8")
    if needs_touch:
        with db.write() as session:
            fresh = session.get(ShareLink, link.id)
            if fresh is not None:
                links.record_use(session, fresh, request.user_agent.string)
    return response



@bp.route("/feeds/<token>.ifb", methods=["GET", "HEAD"])
def freebusy_feed(token: str) -> Response:
    """The link's free/busy variant (feeds.freebusy); its ETag is the body's own hash."""
    now = utcnow()
    window = Window.around(now.date(), settings())
    with database().read() as session:
        try:
            link = links.resolve(session, link_signer(), token, links.Purpose.FEED)
        except links.InvalidLink as exc:
            log.info("free/busy feed %s refused: %s", links.redact(token), exc.reason)
            return not_found()
        body = body_for(session, link, window, now)
        needs_touch = body is not None and links.use_is_stale(link, request.user_agent.string, now)
    if body is None:
        return not_found()
    etag = etag_of(body)
    headers = {"ETag": etag, "Cache-Control": "no-cache",
               "Content-Disposition": 'inline; filename="freebusy.ifb"', **COMMON_HEADERS}
    if request.if_none_match and (request.if_none_match.contains_weak(etag.strip('"'))
                                  or request.if_none_match.star_tag):
        response = Response(status=304, headers=headers)
    else:
        response = Response(body, 200, headers, content_type="text/calendar; charset=utf-8")
    if needs_touch:
        with database().write() as session:
            fresh = session.get(ShareLink, link.id)
            if fresh is not None:
                links.record_use(session, fresh, request.user_agent.string)
    return response
