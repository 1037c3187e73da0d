"""Fixed-window rate limits and markers kept in the database, so every worker and host sees them."""

from __future__ import annotations

import datetime as dt
import math

from sqlalchemy import bindparam, delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from server.errors import FieldcalError
from server.models import RateLimitBucket, utcnow

KEEP = dt.timedelta(days=31)
"""How long a bucket is kept after its window opened: longer than any window or marker
(the login throttle trusts a device for 30 days)."""


class RateLimited(FieldcalError):
    status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"Too many requests. Please try again in {retry_after} seconds.")
        self.retry_after = retry_after


def hit(session: Session, key: str, limit: int, window: dt.timedelta) -> None:
    """Count one request against `key`; RateLimited once `limit` is exceeded in the window.

    Call inside a write transaction (SQLite BEGIN IMMEDIATE / a row lock on PostgreSQL).
    """
    now = utcnow()
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    created = session.execute(
        insert(RateLimitBucket).values(key=key, window_start=now, count=1)
        .on_conflict_do_nothing(index_elements=["key"])
        .returning(RateLimitBucket.key)  # rowcount is -1 here with psycopg
    ).scalar_one_or_none()
    if created is not None:
        return
    bucket = session.get(RateLimitBucket, key, with_for_update=True, populate_existing=True)
    assert bucket is not None
    if now - bucket.window_start >= window:
        bucket.window_start, bucket.count = now, 1
        return
    if bucket.count >= limit:
        remaining = window - (now - bucket.window_start)
        raise RateLimited(max(1, math.ceil(remaining.total_seconds())))
    bucket.count += 1


def waiting(session: Session, keys: list[str], limit: int,
            window: dt.timedelta) -> dict[str, int]:
    """Seconds to wait for each of `keys` already at `limit` in its window (read only)."""
    now = utcnow()
    found: dict[str, int] = {}
    for bucket in session.scalars(select(RateLimitBucket).where(RateLimitBucket.key.in_(keys))):
        remaining = window - (now - bucket.window_start)
        if bucket.count >= limit and remaining > dt.timedelta(0):
            found[bucket.key] = max(1, math.ceil(remaining.total_seconds()))
    return found


# The column alone (no instance loaded into the session), in a statement built once.
NOTED_AT = select(RateLimitBucket.window_start).where(RateLimitBucket.key == bindparam("b_key"))


def noted_at(session: Session, key: str) -> dt.datetime | None:
    """When `note` last wrote `key`."""
    return session.scalar(NOTED_AT, {"b_key": key})


def note(session: Session, key: str) -> None:
    """Remember now under `key` (a marker, e.g. "this address signed in"), in a write transaction."""
    now = utcnow()
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    session.execute(
        insert(RateLimitBucket).values(key=key, window_start=now, count=0)
        .on_conflict_do_update(index_elements=["key"], set_={"window_start": now})
    )


def prune(session: Session, now: dt.datetime, keep: dt.timedelta = KEEP) -> int:
    """Delete buckets and markers whose window opened more than `keep` ago; how many went."""
    gone = session.execute(delete(RateLimitBucket).where(RateLimitBucket.window_start < now - keep))
    return int(getattr(gone, "rowcount", 0) or 0)
