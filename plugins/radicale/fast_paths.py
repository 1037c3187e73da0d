"""What the fast paths (PROPFIND listings, calendar-queries, sync reports) share: the
guard on the request body's encoding, the switch that hands every request to Radicale,
and the spool a big answer is written into (kept as its gzip beyond SPOOL_PLAIN_LIMIT, or
beyond GZIP_SPOOL_LIMIT for a client that takes gzip, which is then sent that gzip; a
client that does not is sent the answer inflated as it is written out)."""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from server.bodycache import FAST_LEVEL, GZIP_LEVEL, GzipChunks, PlainChunks, Spool, Streamed

IDENTITY = ("", "identity")
SPOOL_PLAIN_LIMIT = 2 * 1024 * 1024  # a bigger answer is held as its gzip until it is sent
GZIP_SPOOL_LIMIT = 64 * 1024  # for a client that takes gzip, which it is made for anyway


def plain_utf8(environ: dict[str, Any]) -> bool:
    """Whether the request body is sent as is (no Content-Encoding) and in UTF-8."""
    if environ.get("HTTP_CONTENT_ENCODING", "").strip().lower() not in IDENTITY:
        return False
    content_type = environ.get("CONTENT_TYPE", "")
    charset = content_type.lower().partition("charset=")[2].split(";")[0].strip().strip('"')
    return charset in ("", "utf-8", "utf8")


@contextmanager
def switched_off(enabled: contextvars.ContextVar[bool]) -> Iterator[None]:
    """Within this context the fast path behind `enabled` leaves every request to Radicale."""
    token = enabled.set(False)
    try:
        yield
    finally:
        enabled.reset(token)


def radicale_compresses(environ: dict[str, Any]) -> bool:
    """Whether Radicale will gzip the answer (its own rule: `gzip` among the listed
    encodings, parameters not read), which needs the answer as one bytes object."""
    listed = environ.get("HTTP_ACCEPT_ENCODING", "").split(",")
    return "gzip" in (encoding.strip() for encoding in listed)


def spool(environ: dict[str, Any]) -> Spool:
    """Where an answer is written: compressed as Radicale would compress it for a client
    that takes gzip (so that the gzip is sent as it is), else as fast as zlib can."""
    if radicale_compresses(environ):
        return Spool(GZIP_SPOOL_LIMIT, GZIP_LEVEL)
    return Spool(SPOOL_PLAIN_LIMIT, FAST_LEVEL)


def spooled(environ: dict[str, Any], headers: dict[str, str],
            body: bytes | PlainChunks | GzipChunks) -> bytes | Streamed:
    """The answer body of a finished spool: plain bytes for Radicale (which gzips them for a
    client that asks), or the gzip made as Radicale makes it (Radicale must not compress it
    again), or the plain answer inflated chunk by chunk as it is written out."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, PlainChunks):  # bytes for Radicale to gzip, else written as they are
        return b"".join(body.chunks) if radicale_compresses(environ) else body
    if radicale_compresses(environ):
        environ["HTTP_ACCEPT_ENCODING"] = "identity"
        headers["Content-Encoding"] = "gzip"
        return body
    return body.inflating()


def plain(body: bytes | PlainChunks | GzipChunks) -> Iterable[bytes]:
    """A finished spool's plain answer, chunk by chunk."""
    if isinstance(body, bytes):
        return [body]
    return body if isinstance(body, PlainChunks) else body.inflating()


def joined(body: bytes | PlainChunks | GzipChunks) -> bytes:
    """A finished spool's plain answer as one bytes object (for answers edited after)."""
    return body if isinstance(body, bytes) else b"".join(plain(body))
