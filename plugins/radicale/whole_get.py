"""GET of a calendar or an item: 304 for a matching If-None-Match, gzip made once per version.

Radicale compresses every answer again for every request that accepts gzip, and
answers a GET in full whatever its If-None-Match says. A whole calendar is
served from `WHOLE_CALENDARS` (keyed by collection and sync_seq) and its gzip is
kept beside it, so a version is compressed once per process. A calendar bigger
than PLAIN_LIMIT is kept as its gzip alone and inflated as it is written out for
a client that does not take gzip (one bigger than PACK_FROM is made as its gzip,
so that no more than PACK_FROM of plain text is held while it is made) (its answer is a `Streamed` body, which
plugins.radicale.application hands to the server as the body's chunks). The gzip variant
has an ETag of its own (`-gzip` suffix, as the web pages' compression does: the
bytes differ); both forms revalidate. Every GET answer carries
`Vary: Accept-Encoding`, and gzip goes only to a client that asked for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from plugins.radicale.state import RequestNotes
from server.bodycache import BodyCache, Packed, Streamed, gzip_body
from server.web.compress import accepts_gzip_header, gzip_etag

Response = tuple[int, Any, Any, Any]
ENCODING_HEADER = "HTTP_ACCEPT_ENCODING"
WHOLE_CALENDARS: BodyCache[bytes] = BodyCache(16 * 1024 * 1024)
PLAIN_LIMIT = 4 * 1024 * 1024  # a bigger calendar is kept (and made) as its gzip alone
PACK_FROM = 1024 * 1024  # a calendar is made as its gzip from this size on (a smaller one is
# inflated once made, and kept plain with that gzip beside it): no more plain text is held
CALENDAR_TYPE = "text/calendar; charset=utf-8"


def names_etag(if_none_match: str, etag: str) -> bool:
    """If-None-Match names this ETag (or its gzip form, or any: `*`); weak comparison."""
    wanted = {etag.removeprefix("W/"), gzip_etag(etag.removeprefix("W/"))}
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") in wanted:
            return True
    return False


def _with_vary(headers: Mapping[str, str]) -> dict[str, str]:
    out = dict(headers)
    vary = [v.strip() for v in out.get("Vary", "").split(",") if v.strip()]
    if "accept-encoding" not in (v.lower() for v in vary):
        vary.append("Accept-Encoding")
    out["Vary"] = ", ".join(vary)
    return out


def _not_modified(headers: Mapping[str, str], etag: str) -> Response:
    kept = {k: v for k, v in headers.items()
            if k in ("Last-Modified", "Vary", "Content-Disposition")}
    return 304, {**kept, "ETag": etag}, None, None


def chunks(answers: Iterable[bytes]) -> Iterable[bytes]:
    """What the server writes out for Radicale's answers: a `Streamed` body as its chunks."""
    if isinstance(answers, list) and len(answers) == 1 and isinstance(answers[0], Streamed):
        return answers[0]
    return answers


def finish(environ: dict[str, Any], response: Response, notes: RequestNotes) -> Response:
    """The GET answer Radicale built, made conditional and (for a calendar) gzipped from cache."""
    status, headers, answer, xml_request = response
    if status != 200 or not isinstance(headers, Mapping):
        return response
    headers = _with_vary(headers)
    etag = str(headers.get("ETag", ""))
    gzip_wanted = accepts_gzip_header(str(environ.get(ENCODING_HEADER) or ""))
    calendar = notes.not_modified or notes.whole_calendar is not None
    if notes.not_modified or (notes.if_none_match and etag
                              and names_etag(notes.if_none_match, etag)):
        return _not_modified(headers, gzip_etag(etag) if calendar and gzip_wanted else etag)
    if notes.whole_calendar is None or notes.whole_body is None:
        return status, headers, answer, xml_request
    headers["Content-Type"] = CALENDAR_TYPE  # bytes: Radicale adds no charset to them
    body = notes.whole_body
    if not gzip_wanted:
        if isinstance(body, Packed):
            environ[ENCODING_HEADER] = "identity"  # Radicale must not compress the chunks
            return status, headers, body.inflating(), xml_request
        return status, headers, body, xml_request
    if isinstance(body, Packed):
        packed = body.gzipped
    else:
        packed = WHOLE_CALENDARS.gzipped(notes.whole_calendar) or gzip_body(body)  # or: not kept
    environ[ENCODING_HEADER] = "identity"  # already encoded: Radicale must not compress again
    headers["Content-Encoding"] = "gzip"
    if etag:
        headers["ETag"] = gzip_etag(etag)
    return status, headers, packed, xml_request
