"""The streams of one process read the change log once per wake-up, not once each."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from live import use_audit_key
from mailkit import add_customer, domain

from server import changes
from server.api.stream_reads import SharedReader
from server.db import Database
from server.migrate import upgrade

STREAMS = 8


@pytest.fixture(scope="module")
def database(database_url: str) -> Iterator[Database]:
    use_audit_key(database_url)
    db = Database(database_url)
    upgrade(db)
    yield db
    db.dispose()


def _last(db: Database) -> int:
    with db.read() as session:
        found = changes.events(session, 0, 100_000)
    return found[-1].id if found else 0


def test_streams_woken_together_share_one_read(database: Database) -> None:
    with domain(database) as ctx:
        add_customer(ctx, "Before")
    start = _last(database)
    with domain(database) as ctx:
        add_customer(ctx, "Woke them")
    reader = SharedReader(database, limit=500)
    woke = time.monotonic()
    barrier = threading.Barrier(STREAMS)
    got: list[list[int]] = []

    def stream() -> None:
        barrier.wait(timeout=10)
        found, _uids = reader.read(start, woke)
        got.append([e.id for e in found])

    threads = [threading.Thread(target=stream) for _ in range(STREAMS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    with database.read() as session:
        expected = [e.id for e in changes.events(session, start, 500)]
    assert expected and got == [expected] * STREAMS
    assert reader.queries == 1


def test_a_read_that_started_before_a_stream_woke_is_not_reused(database: Database) -> None:
    reader = SharedReader(database, limit=500)
    start = _last(database)
    assert reader.read(start, time.monotonic()) == ([], {})
    with domain(database) as ctx:
        add_customer(ctx, "Later")
    found, _uids = reader.read(start, time.monotonic())  # woke after the first read began
    assert [e.entity for e in found] and reader.queries == 2
    behind, _uids = reader.read(0, time.monotonic() - 60)  # far behind: reads for itself
    assert len(behind) > len(found) and reader.queries == 3
