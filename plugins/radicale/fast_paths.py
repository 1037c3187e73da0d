"""What the fast paths (PROPFIND listings, calendar-queries) share: the guard on the
request body's encoding, and the switch that hands every request to Radicale."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

IDENTITY = ("", "identity")


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
