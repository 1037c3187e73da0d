"""What the console's settings screens share: a write as the signed-in dispatcher, local
times, and the vault the instance's credential keys open."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from zoneinfo import ZoneInfo

from server.console.routes import request_id
from server.console.session import member
from server.context import Context
from server.vault import Vault
from server.web.context import database, settings


@contextmanager
def writing() -> Iterator[Context]:
    """One transaction on behalf of the signed-in dispatcher (routes are `dispatcher_only`)."""
    signed_in = member()
    assert signed_in is not None  # dispatcher_only
    with database().write() as session:
        yield Context(session, signed_in.actor(request_id()), settings().organizer)


def vault() -> Vault:
    return Vault(settings().credential_keys)


def zone() -> ZoneInfo:
    signed_in = member()
    return ZoneInfo(signed_in.timezone if signed_in and signed_in.timezone else settings().timezone)


def when(moment: dt.datetime | None, never: str = "never") -> str:
    """A stored UTC time as the dispatcher reads it."""
    if moment is None:
        return never
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return f"{moment.astimezone(zone()):%a %d %b %Y %H:%M}"
