"""Idempotent requests: the first request with a key runs, its answer is kept 24 h.

A request's writes and its stored answer are one transaction, and the unique
(owner, key) index is the claim. A concurrent duplicate's insert waits on the first
request's uncommitted row: when that transaction commits, the duplicate replays its
answer; when it rolls back (a failure worth retrying, or a host that died: the
database ends a lost connection's transaction), the duplicate runs instead. So a key
is never left claimed by a request that no longer runs, on one host or many.
On SQLite the write lock already serialises the two.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from server.errors import Conflict, InvalidInput
from server.models import IdempotentRequest, utcnow

RETENTION = dt.timedelta(hours=24)
IN_FLIGHT_WAIT = "3s"  # how long a duplicate waits for the first request before a 409
MAX_KEY_LENGTH = 255
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE when lock_timeout ends a wait


class RequestInFlight(Conflict):
    def __init__(self, key: str) -> None:
        super().__init__(f"A request with Idempotency-Key {key!r} is still being processed; "
                         "retry in a moment to get its answer.")


class KeyReused(InvalidInput):
    status = 422

    def __init__(self, key: str) -> None:
        super().__init__(f"Idempotency-Key {key!r} was already used for a different request; "
                         "use a new key for a new request.")


@dataclass(frozen=True)
class StoredAnswer:
    status: int
    content_type: str
    body: bytes
    location: str = ""
    etag: str = ""


def check_key(key: str) -> str:
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput(f"An Idempotency-Key is 1 to {MAX_KEY_LENGTH} printable characters, "
                           "e.g. a UUID.")
    return key


def claim(session: Session, owner: str, key: str, fingerprint: str,
          api_key_id: int | None = None) -> StoredAnswer | None:
    """Claim the key for this transaction (None: go ahead) or get the answer the first
    request got. Call `complete` in the same transaction before it commits."""
    now = utcnow()
    session.execute(delete(IdempotentRequest).where(IdempotentRequest.expires_at <= now))
    answer = _stored(session, owner, key, fingerprint)
    if answer is not None:
        return answer
    postgresql = session.get_bind().dialect.name == "postgresql"
    try:
        with session.begin_nested():
            if postgresql:  # bound the wait on a duplicate's uncommitted claim
                session.execute(text(f"SET LOCAL lock_timeout = '{IN_FLIGHT_WAIT}'"))
            session.add(IdempotentRequest(owner=owner, key=key, fingerprint=fingerprint,
                                          api_key_id=api_key_id, created_at=now,
                                          expires_at=now + RETENTION))
            session.flush()
    except IntegrityError:  # the first request committed while this one waited
        answer = _stored(session, owner, key, fingerprint)
        if answer is None:
            raise RequestInFlight(key) from None
        return answer
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        raise RequestInFlight(key) from exc  # the first request is still running
    if postgresql:
        session.execute(text("SET LOCAL lock_timeout = DEFAULT"))
    return None


def _stored(session: Session, owner: str, key: str, fingerprint: str) -> StoredAnswer | None:
    existing = session.scalars(select(IdempotentRequest).where(
        IdempotentRequest.owner == owner, IdempotentRequest.key == key)).first()
    if existing is None:
        return None
    if existing.fingerprint != fingerprint:
        raise KeyReused(key)
    if existing.status is None:  # a claim is answered before it commits; never seen here
        raise RequestInFlight(key)
    return StoredAnswer(existing.status, existing.content_type, existing.body or b"",
                        existing.location, existing.etag)


def complete(session: Session, owner: str, key: str, answer: StoredAnswer) -> None:
    """Store the answer on this transaction's claim."""
    row = session.scalars(select(IdempotentRequest).where(
        IdempotentRequest.owner == owner, IdempotentRequest.key == key)).one()
    row.status = answer.status
    row.content_type = answer.content_type[:100]
    row.body = answer.body
    row.location = answer.location[:500]
    row.etag = answer.etag[:100]
