"""gzip for text responses of the web pages (HTML, CSS, JSON, SVG), as an `after_request` hook.

Only when the client accepts gzip, the body is worth it and the response is not
already encoded. Calendars (feeds, CalDAV GET) are left to their own routes, which keep
their gzip beside the cached body; they share `accepts_gzip` and `gzip_etag` from here.
A strong ETag of a compressed body gets a `-gzip` suffix (the bytes differ), and the
request's conditional headers are applied again, so a revalidation still ends in 304.
"""

from __future__ import annotations

import gzip

from flask import Request, Response
from werkzeug.http import parse_accept_header

MIN_BYTES = 512
LEVEL = 6
COMPRESSIBLE = frozenset({"text/html", "text/css", "text/plain", "text/javascript",
                          "application/javascript", "application/json", "image/svg+xml"})


def accepts_gzip(request: Request) -> bool:
    """Accept-Encoding names gzip (or *) with a quality above 0."""
    return request.accept_encodings["gzip"] > 0


def accepts_gzip_header(accept_encoding: str) -> bool:
    """The same for a raw Accept-Encoding header (a WSGI environ's)."""
    return parse_accept_header(accept_encoding)["gzip"] > 0


def gzip_etag(etag: str) -> str:
    """The compressed body's ETag: the bytes differ, so the tag does."""
    return f'{etag[:-1]}-gzip"' if etag.endswith('"') else f"{etag}-gzip"


def compress(request: Request, response: Response) -> Response:
    """The response gzipped when that helps; unchanged otherwise."""
    if (response.mimetype not in COMPRESSIBLE or response.status_code < 200
            or response.status_code in (204, 206, 304) or "Content-Encoding" in response.headers
            or request.method == "HEAD"):
        return response
    response.vary.add("Accept-Encoding")
    if not accepts_gzip(request):
        return response
    if response.is_streamed and not response.direct_passthrough:
        return response  # a generator: leave it streaming
    response.direct_passthrough = False  # static files: read them here (they are small)
    body = response.get_data()
    if len(body) < MIN_BYTES:
        return response
    response.set_data(gzip.compress(body, compresslevel=LEVEL, mtime=0))
    response.headers["Content-Encoding"] = "gzip"
    etag, weak = response.get_etag()
    if etag:
        response.set_etag(f"{etag}-gzip", weak=bool(weak))
        response.make_conditional(request)
    return response
