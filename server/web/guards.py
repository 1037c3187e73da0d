"""WSGI middlewares in front of the whole app and in front of Radicale.

- `BodyLimit`: bodies over the limit get 413 before they are read; every other
  body is read here, whole, and handed on in memory with a Content-Length
  (Radicale only reads bodies of known length). A body that stops arriving
  (the server's socket read deadline, see server/web/gunicorn_worker.py) gets
  408 here, so no app behind ever waits on a client or sees a read error.
- `XmlGuard`: XML bodies with a DOCTYPE or ENTITY declaration (entity bombs,
  XXE), non-UTF-8 XML, XML nested deeper than `MAX_XML_DEPTH` and elements
  outside any namespace get 400 at once, before any recursive XML code sees
  them (Radicale deep-copies request trees recursively: 1,000 levels raise
  RecursionError, 200,000 crash the process). The depth is measured with
  expat's streaming callbacks: no tree is built and nothing recurses.
- `RadicaleEnviron`: a UTF-8 PATH_INFO for Radicale, and a prefix that survives
  Radicale stripping its mount prefix a second time when X-Forwarded-* headers
  are present. Basic credentials Radicale could not decode (not base64, no
  colon) get 401 and an unknown request charset 400, instead of Radicale's 500.
- `WellKnownCaldav`: /.well-known/caldav and /.well-known/carddav redirect to the DAV root.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import io
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from xml.parsers import expat

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

READ_CHUNK = 64 * 1024
XML_METHODS = frozenset({"PROPFIND", "PROPPATCH", "REPORT", "MKCALENDAR", "MKCOL", "LOCK",
                         "ACL", "SEARCH"})
DECLARATION = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)
MAX_XML_DEPTH = 100  # CalDAV's deepest requests (filters in a REPORT) nest about 10 levels
FORWARDED_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_HOST", "HTTP_X_FORWARDED_PROTO",
                     "HTTP_X_FORWARDED_SERVER")


def plain(start_response: StartResponse, status: str, message: str,
          extra: list[tuple[str, str]] | None = None) -> list[bytes]:
    body = (message.rstrip("\n") + "\n").encode("utf-8")
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    start_response(status, headers + (extra or []))
    return [body]


class _Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def xml_refusal(body: bytes, max_depth: int = MAX_XML_DEPTH) -> str | None:
    """Why an XML request body is refused: elements nested deeper than `max_depth`, or
    an element outside any namespace (Radicale fails on those with a 500); else None.

    expat reports start and end tags as it streams; counting them needs no
    tree and no recursion, and parsing stops at the first refused element.
    Malformed XML is not judged here: the XML reader behind says what is wrong.
    """
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    depth = 0

    def start(name: str, _attributes: Any) -> None:
        nonlocal depth
        depth += 1
        if depth > max_depth:
            raise _Refused(f"XML elements nested more than {max_depth} levels deep are not "
                           "accepted.")
        if " " not in name:
            raise _Refused(f"The XML element <{name[:60]}> has no namespace; WebDAV elements "
                           'belong to one (e.g. xmlns="DAV:").')

    def end(_name: str) -> None:
        nonlocal depth
        depth -= 1

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    try:
        parser.Parse(body, True)
    except _Refused as refused:
        return refused.reason
    except (LookupError, ValueError) as unknown:  # encoding="utf-6" (unknown), "utf-7" (multi-byte)
        return f"The XML declaration names an encoding this server cannot read ({unknown}); use UTF-8."
    except expat.ExpatError:
        return None
    return None


def _read_at_most(stream: Any, limit: int, *, probe: bool = True) -> bytes:
    """Up to `limit` bytes of a stream, and with `probe` one more (it tells the body is too long)."""
    parts: list[bytes] = []
    total = 0
    wanted = limit + 1 if probe else limit
    while total < wanted:
        chunk = stream.read(min(READ_CHUNK, wanted - total))
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)


class BodyLimit:
    """Bodies up to `max_bytes`; the exact paths in `larger` (forms with photos) take their own."""

    def __init__(self, app: WSGIApp, max_bytes: int,
                 larger: Mapping[str, int] | None = None) -> None:
        self.app = app
        self.default_max_bytes = max_bytes
        self.larger = dict(larger or {})

    def _too_large(self, start_response: StartResponse, limit: int) -> list[bytes]:
        return plain(start_response, "413 Request Entity Too Large",
                     f"The request body is larger than {limit} bytes.",
                     [("Connection", "close")])

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        limit = self.larger.get(environ.get("PATH_INFO", ""), self.default_max_bytes)
        return _LimitedCall(self.app, limit, self._too_large)(environ, start_response)


class _LimitedCall:
    def __init__(self, app: WSGIApp, max_bytes: int,
                 too_large: Callable[[StartResponse, int], list[bytes]]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.too_large = too_large

    def _too_large(self, start_response: StartResponse) -> list[bytes]:
        return self.too_large(start_response, self.max_bytes)

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
            if length == 0:
                return self.app(environ, start_response)
            return self._buffered(environ, start_response, length)
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            return self._buffered(environ, start_response, None)
        return self.app(environ, start_response)

    def _buffered(self, environ: Environ, start_response: StartResponse,
                  length: int | None) -> Iterable[bytes]:
        """Read the whole body (`length` bytes, or a chunked body up to the limit), then go on."""
        try:
            if length is None:
                body = _read_at_most(environ["wsgi.input"], self.max_bytes)
            else:
                body = _read_at_most(environ["wsgi.input"], length, probe=False)
        except TimeoutError:
            return plain(start_response, "408 Request Timeout",
                         "The request body did not arrive in time; please send it again.",
                         [("Connection", "close")])
        except OSError:
            return plain(start_response, "400 Bad Request",
                         "The connection closed before the whole request body arrived.",
                         [("Connection", "close")])
        if length is None and len(body) > self.max_bytes:
            return self._too_large(start_response)
        if length is not None and len(body) < length:
            return plain(start_response, "400 Bad Request",
                         f"The request body is shorter than its Content-Length ({length} bytes).",
                         [("Connection", "close")])
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)


class XmlGuard:
    """Refuse XML with declarations or deep nesting; runs behind BodyLimit (the body is in memory)."""

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
        refusal = xml_refusal(body)
        if refusal is not None:
            return plain(start_response, "400 Bad Request", refusal)
        return self.app(environ, start_response)


def basic_credentials_malformed(header: str) -> bool:
    """Whether an Authorization header Radicale reads as Basic is not base64 of `login:password`."""
    if not header.startswith("Basic"):
        return False
    encoded = header[len("Basic"):].strip()
    try:
        decoded = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        return True
    return b":" not in decoded


def unknown_charset(content_type: str) -> str | None:
    """The charset a Content-Type names when Python knows no such codec."""
    if "charset=" not in content_type:
        return None
    name = content_type.split("charset=")[1].split(";")[0].strip()
    try:
        codecs.lookup(name)
    except LookupError:
        return name
    return None


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
        if basic_credentials_malformed(environ.get("HTTP_AUTHORIZATION", "")):
            return plain(start_response, "401 Unauthorized",
                         "The Authorization header is not valid Basic credentials "
                         "(base64 of login:password).",
                         [("WWW-Authenticate", 'Basic realm="fieldcal"')])
        charset = unknown_charset(environ.get("CONTENT_TYPE", ""))
        if charset is not None:
            return plain(start_response, "400 Bad Request",
                         f"The request names an unknown charset {charset[:40]!r}; use UTF-8.")
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
        if path not in ("/.well-known/caldav", "/.well-known/carddav"):
            return self.app(environ, start_response)
        location = public_prefix(environ) + environ.get("SCRIPT_NAME", "").rstrip("/") + self.target
        face = "CalDAV" if path.endswith("caldav") else "CardDAV"
        return plain(start_response, "301 Moved Permanently", f"{face} lives at {location}",
                     [("Location", location)])
