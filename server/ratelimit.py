"""Fixed-window rate limits kept in the database, so every worker and host sees the same counts."""

from __future__ import annotations

import datetime as dt
import math

from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from server.errors import FieldcalError
from server.models import RateLimitBucket, utcnow


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
