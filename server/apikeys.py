"""API keys: issue (shown once), list, revoke, and sign in with one.

A key is 256 random bits, so one SHA-256 of it is a safe and fast verifier: the
lookup goes by the digest's unique index and the stored digest is compared in
constant time. What each role may do is declared here, so every face that
accepts a principal (a key, or later a console session) grants the same rights.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from server import audit
from server.actions import Action
from server.context import Context, operation
from server.errors import InvalidInput, NotFound
from server.models import ApiKey, utcnow
from server.text import one_line

KEY_PREFIX = "fck_"
KEY_BYTES = 32
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)


class ApiRole(enum.StrEnum):
    DISPATCHER = "dispatcher"  # everything
    READONLY = "readonly"  # reads only (GET), audit trail included
    INTEGRATION = "integration"  # reads (not the audit trail) + customers, jobs, appointments


class Scope(enum.StrEnum):
    READ = "read"  # technicians, teams, customers, jobs, appointments, availability, changes...
    AUDIT = "audit"  # the audit trail and its export
    BOOK = "book"  # create customers and jobs; book, move, reassign, cancel, set status
    ADMIN = "admin"  # people, teams, links, settings, integrations and webhooks
    OVERRIDE = "override"  # book against area, working hours or personal time (with a reason)


ROLE_SCOPES: dict[ApiRole, frozenset[Scope]] = {
    ApiRole.DISPATCHER: frozenset(Scope),
    ApiRole.READONLY: frozenset({Scope.READ, Scope.AUDIT}),
    ApiRole.INTEGRATION: frozenset({Scope.READ, Scope.BOOK}),
}


class KeyRefused(Exception):
    """The presented key does not sign anyone in; `reason` is safe to show its holder."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class KeyHolder:
    key_id: int
    name: str
    role: ApiRole
    use_is_stale: bool = False  # last_used_at is due for an update (see `note_use`)

    @property
    def actor_name(self) -> str:
        return f"apikey:{self.name}"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def parse_role(text: str) -> ApiRole:
    try:
        return ApiRole(text)
    except ValueError as exc:
        allowed = ", ".join(r.value for r in ApiRole)
        raise InvalidInput(f"Unknown API role {text!r}; use one of {allowed}.") from exc


@operation
def issue_key(ctx: Context, name: str, role: ApiRole,
              expires_at: dt.datetime | None = None) -> tuple[ApiKey, str]:
    """A new key; the clear key is returned once and never stored."""
    name = one_line(name)
    if not name or len(name) > 100:
        raise InvalidInput("An API key needs a name of 1 to 100 characters (who or what uses it).")
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidInput("The expiry must be in the future.")
    key = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    row = ApiKey(name=name, role=role, key_hash=digest(key), prefix=key[:10],
                 created_by=ctx.actor.name, expires_at=expires_at)
    ctx.session.add(row)
    ctx.session.flush()
    audit.record(ctx.session, ctx.actor, Action.APIKEY_ISSUE, "api_key", row.id,
                 after={"name": name, "role": role.value,
                        "expires_at": expires_at.isoformat() if expires_at else None})
    return row, key


@operation
def revoke_key(ctx: Context, key_id: int) -> ApiKey:
    row = ctx.session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"No API key #{key_id}.")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        audit.record(ctx.session, ctx.actor, Action.APIKEY_REVOKE, "api_key", row.id,
                     after={"name": row.name})
    return row


def list_keys(session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def sign_in(session: Session, key: str) -> KeyHolder:
    """Who this key belongs to, or KeyRefused (unknown, revoked or expired)."""
    wanted = digest(key)
    row = session.execute(
        select(ApiKey.id, ApiKey.name, ApiKey.role, ApiKey.key_hash, ApiKey.expires_at,
               ApiKey.revoked_at, ApiKey.last_used_at).where(ApiKey.key_hash == wanted)
    ).first()
    if row is None or not hmac.compare_digest(row.key_hash, wanted):
        raise KeyRefused("The API key is not known. Create one with `fieldcal apikey new`.")
    now = utcnow()
    if row.revoked_at is not None:
        raise KeyRefused(f"The API key {row.name!r} was revoked; ask for a new one.")
    if row.expires_at is not None and row.expires_at <= now:
        raise KeyRefused(f"The API key {row.name!r} expired on {row.expires_at:%Y-%m-%d}; "
                         "ask for a new one.")
    stale = row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION
    return KeyHolder(row.id, row.name, ApiRole(row.role), stale)


def note_use(session: Session, key_id: int) -> None:
    """Record when a key was last used (callers do it at most once a minute per key)."""
    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))
