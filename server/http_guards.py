"""WSGI middlewares in front of the whole app and in front of Radicale.

- `BodyLimit`: bodies over the limit get 413 before they are read; chunked
  bodies (no Content-Length) are read up to the limit and handed on with a
  Content-Length, since Radicale only reads bodies of known length.
- `XmlGuard`: XML bodies with a DOCTYPE or ENTITY declaration (entity bombs,
  XXE) and non-UTF-8 XML get 400 at once, before any XML parser sees them.
- `RadicaleEnviron`: a UTF-8 PATH_INFO for Radicale, and a prefix that survives
  Radicale stripping its mount prefix a second time when X-Forwarded-* headers
  are present.
- `WellKnownCaldav`: /.well-known/caldav redirects to the CalDAV root.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from typing import Any

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

READ_CHUNK = 64 * 1024
XML_METHODS = frozenset({"PROPFIND", "PROPPATCH", "REPORT", "MKCALENDAR", "MKCOL", "LOCK",
                         "ACL", "SEARCH"})
DECLARATION = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
FORWARDED_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PROTO",
                     "HTTP_X_FORWARDED_SERVER")


def plain(start_response: StartResponse, status: str, message: str,
          extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    body = (message.rstrip("\n") + "\n").encode("utf-8")
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    start_response(status, headers + (extra or []))
    return [body]


def _read_at_most(stream: Any, limit: int) -> bytes:
    """Up to limit + 1 bytes of a stream (one more than allowed tells it is too long)."""
    parts: list[bytes] = []
    total = 0
    while total <= limit:
        chunk = stream.read(min(READ_CHUNK, limit + 1 - total))
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)


class BodyLimit:
    def __init__(self, app: WSGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self, start_response: StartResponse) -> list[bytes]:
        return plain(start_response, "413 Request Entity Too Large",
                     f"The request body is larger than {self.max_bytes} bytes.",
                     [("Connection", "close")])

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        declared = environ.get("CONTENT_LENGTH") or ""
        if declared:
            try:
                length = int(declared)
            except ValueError:
                return plain(start_response, "400 Bad Request", "Content-Length is not a number.")
            if length < 0:
                return plain(start_response, "400 Bad Request", "Content-Length is negative.")
            if length > self.max_bytes:
                return self._too_large(start_response)
            return self.app(environ, start_response)
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            body = _read_at_most(environ["wsgi.input"], self.max_bytes)
            if len(body) > self.max_bytes:
                return self._too_large(start_response)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        return self.app(environ, start_response)


class XmlGuard:
    """Refuse XML with declarations; runs behind BodyLimit (the body has a bounded length)."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    @staticmethod
    def _is_xml(environ: Environ) -> bool:
        if environ.get("REQUEST_METHOD", "").upper() in XML_METHODS:
            return True
        return "xml" in environ.get("CONTENT_TYPE", "").lower()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length <= 0 or not self._is_xml(environ):
            return self.app(environ, start_response)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)
        if body.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in body:
            return plain(start_response, "400 Bad Request", "XML request bodies must be UTF-8.")
        if DECLARATION.search(body):
            return plain(start_response, "400 Bad Request",
                         "XML with DOCTYPE or ENTITY declarations is not accepted.")
        return self.app(environ, start_response)


def public_prefix(environ: Environ) -> str:
    """Where the proxy says the app lives (X-Forwarded-Prefix / X-Script-Name), without '/'."""
    prefix = environ.get("HTTP_X_FORWARDED_PREFIX") or environ.get("HTTP_X_SCRIPT_NAME") or ""
    prefix = "/" + prefix.strip().strip("/") if prefix.strip().strip("/") else ""
    return prefix


class RadicaleEnviron:
    """In front of Radicale mounted at SCRIPT_NAME.

    PATH_INFO: WSGI servers hand it over as latin-1; Radicale expects the
    decoded UTF-8 path (its own server does that), so unicode hrefs work.

    Prefix: Radicale takes its base prefix from X-Script-Name or SCRIPT_NAME
    and, when X-Forwarded-* headers are present, removes that prefix from
    PATH_INFO (which the mount already removed). Tell it the full public
    prefix and give it a PATH_INFO that starts with it, so exactly one prefix
    is removed.
    """

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            environ["PATH_INFO"] = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")
        except UnicodeError:
            return plain(start_response, "400 Bad Request", "The request path is not UTF-8.")
        mount = environ.get("SCRIPT_NAME", "").rstrip("/")
        base = public_prefix(environ) + mount
        environ.pop("HTTP_X_SCRIPT_NAME", None)
        if base != mount:
            environ["HTTP_X_SCRIPT_NAME"] = base
        if base and any(environ.get(name) for name in FORWARDED_HEADERS):
            environ["PATH_INFO"] = base + environ.get("PATH_INFO", "")
        return self.app(environ, start_response)


class WellKnownCaldav:
    def __init__(self, app: WSGIApp, target: str = "/dav/") -> None:
        self.app = app
        self.target = target

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "").rstrip("/")
        if path != "/.well-known/caldav":
            return self.app(environ, start_response)
        location = public_prefix(environ) + environ.get("SCRIPT_NAME", "").rstrip("/") + self.target
        return plain(start_response, "301 Moved Permanently", f"CalDAV lives at {location}",
                     [("Location", location)])
