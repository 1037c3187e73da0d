"""The database-held rate limits: counting, waiting and pruning old counters (both databases)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from server import ratelimit
from server.db import Database
from server.migrate import upgrade
from server.models import RateLimitBucket, utcnow

WINDOW = dt.timedelta(minutes=1)


@pytest.fixture(scope="module")
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    upgrade(database)
    try:
        yield database
    finally:
        database.dispose()


def test_a_key_is_refused_past_its_limit_and_says_how_long_to_wait(db: Database) -> None:
    for _ in range(3):
        with db.write() as session:
            ratelimit.hit(session, "test:limit", 3, WINDOW)
    with pytest.raises(ratelimit.RateLimited) as refused, db.write() as session:
        ratelimit.hit(session, "test:limit", 3, WINDOW)
    assert refused.value.status == 429 and 1 <= refused.value.retry_after <= 60
    with db.read() as session:
        assert ratelimit.waiting(session, ["test:limit", "test:other"], 3, WINDOW).keys() == {"test:limit"}


def test_old_counters_and_markers_are_pruned_and_recent_ones_kept(db: Database) -> None:
    now = utcnow()
    with db.write() as session:
        ratelimit.hit(session, "test:recent", 5, WINDOW)
        ratelimit.note(session, "test:marker")
        session.add(RateLimitBucket(key="test:stale", window_start=now - dt.timedelta(days=40), count=9))
    with db.write() as session:
        assert ratelimit.prune(session, now) == 1
    with db.read() as session:
        left = set(session.scalars(select(RateLimitBucket.key).where(RateLimitBucket.key.like("test:%"))))
    assert {"test:recent", "test:marker"} <= left and "test:stale" not in left
    with db.write() as session:
        assert ratelimit.prune(session, now) == 0
