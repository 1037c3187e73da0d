"""The outbox worker on a real database: retries with backoff, dead letters, shared queues."""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from server import outbox
from server.db import Database
from server.migrate import upgrade
from server.models import OutboxMessage
from server.worker import DEAD, PENDING, SENT, Delivery, PermanentFailure, RetryPolicy, Worker

PG_ADMIN_URL = os.environ.get(
    "FIELDCAL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
T0 = dt.datetime(2030, 3, 4, 9, 0, tzinfo=dt.UTC)


def postgres_or_skip() -> None:
    try:
        psycopg.connect(PG_ADMIN_URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI and unreachable at {PG_ADMIN_URL}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL}")


@contextmanager
def scratch_postgres() -> Iterator[str]:
    postgres_or_skip()
    name = f"fieldcal_worker_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Database]:
    if request.param == "sqlite":
        db = Database(f"sqlite:///{tmp_path / 'worker.sqlite3'}")
        upgrade(db)
        yield db
        db.dispose()
        return
    with scratch_postgres() as url:
        db = Database(url)
        upgrade(db)
        yield db
        db.dispose()


class Clock:
    def __init__(self, start: dt.datetime = T0) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def enqueue(db: Database, kind: str, count: int = 1, at: dt.datetime = T0) -> list[int]:
    ids = []
    with db.write() as session:
        for n in range(count):
            message = outbox.enqueue(session, kind, {"n": n}, f"{kind}:{uuid.uuid4().hex}")
            message.next_attempt_at = at
            session.flush()
            ids.append(message.id)
    return ids


def row(db: Database, message_id: int) -> OutboxMessage:
    with db.read() as session:
        message = session.get(OutboxMessage, message_id)
        assert message is not None
        return message


def test_failing_twice_then_succeeding_is_retried_with_backoff(database: Database) -> None:
    (message_id,) = enqueue(database, "test.flaky")
    seen: list[Delivery] = []

    def flaky(delivery: Delivery) -> None:
        seen.append(delivery)
        if len(seen) <= 2:
            raise RuntimeError(f"remote said no ({len(seen)})")

    clock = Clock()
    policy = RetryPolicy(base_delay_s=10, max_delay_s=3600, max_attempts=5)
    worker = Worker(database, {"test.flaky": flaky}, policy=policy, clock=clock,
                    rng=random.Random(7))

    assert worker.run_once().retried == 1
    first = row(database, message_id)
    assert (first.status, first.attempts) == (PENDING, 1)
    assert "RuntimeError: remote said no (1)" in first.last_error
    assert T0 + dt.timedelta(seconds=5) <= first.next_attempt_at <= T0 + dt.timedelta(seconds=10)

    assert worker.run_once().processed == 0, "not due yet: must not be retried early"
    assert len(seen) == 1

    clock.now = first.next_attempt_at
    assert worker.run_once().retried == 1
    second = row(database, message_id)
    assert second.attempts == 2
    delay = (second.next_attempt_at - clock.now).total_seconds()
    assert 10 <= delay <= 20, "the second wait doubles"

    clock.now = second.next_attempt_at
    assert worker.run_once().sent == 1
    done = row(database, message_id)
    assert (done.status, done.attempts, done.last_error) == (SENT, 3, "")

    clock.advance(7200)
    assert worker.run_once().processed == 0
    assert [d.attempt for d in seen] == [1, 2, 3]
    assert len({d.idempotency_key for d in seen}) == 1
    assert seen[0].payload == {"n": 0}


def test_dead_letter_after_max_attempts(database: Database) -> None:
    (message_id,) = enqueue(database, "test.broken")
    calls = Counter[int]()

    def broken(delivery: Delivery) -> None:
        calls[delivery.id] += 1
        raise ConnectionError("unreachable")

    clock = Clock()
    worker = Worker(database, {"test.broken": broken}, clock=clock,
                    policy=RetryPolicy(base_delay_s=1, max_delay_s=60, max_attempts=3))
    outcomes = []
    for _ in range(6):
        outcomes.append(worker.run_once())
        clock.advance(3600)
    assert [s.retried for s in outcomes[:2]] == [1, 1]
    assert outcomes[2].dead == 1
    assert sum(s.processed for s in outcomes[3:]) == 0
    dead = row(database, message_id)
    assert (dead.status, dead.attempts) == (DEAD, 3)
    assert "ConnectionError: unreachable" in dead.last_error
    assert calls[message_id] == 3


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(base_delay_s=30, max_delay_s=3600)
    rng = random.Random(1)
    delays = [policy.delay(n, rng).total_seconds() for n in range(1, 20)]
    assert 15 <= delays[0] <= 30
    assert all(1800 <= d <= 3600 for d in delays[8:])


def test_permanent_failure_dead_letters_at_once(database: Database) -> None:
    (message_id,) = enqueue(database, "test.refused")

    def refused(_delivery: Delivery) -> None:
        raise PermanentFailure("410 Gone")

    worker = Worker(database, {"test.refused": refused}, clock=Clock())
    assert worker.run_once().dead == 1
    message = row(database, message_id)
    assert (message.status, message.attempts) == (DEAD, 1)
    assert "410 Gone" in message.last_error


def test_unhandled_kind_stays_pending_and_is_logged_once(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    waiting = enqueue(database, "nobody.handles", count=2)
    (handled,) = enqueue(database, "test.ok")
    delivered: list[int] = []
    worker = Worker(database, {"test.ok": lambda d: delivered.append(d.id)}, clock=Clock(),
                    report_interval_s=0)
    with caplog.at_level(logging.WARNING, logger="fieldcal.worker"):
        assert worker.run_once().sent == 1
        assert worker.run_once().processed == 0
    assert delivered == [handled]
    for message_id in waiting:
        message = row(database, message_id)
        assert (message.status, message.attempts) == (PENDING, 0)
    notes = [r.getMessage() for r in caplog.records if "nobody.handles" in r.getMessage()]
    assert len(notes) == 1 and "2 outbox message(s)" in notes[0]
    assert worker.waiting_without_handler == {"nobody.handles": 2}


def test_abandoned_claim_is_taken_over_after_the_lease(database: Database) -> None:
    (message_id,) = enqueue(database, "test.slow")
    clock = Clock()
    policy = RetryPolicy(lease_s=60)
    delivered: list[int] = []
    first = Worker(database, {"test.slow": lambda d: delivered.append(d.attempt)}, clock=clock,
                   policy=policy)
    second = Worker(database, {"test.slow": lambda d: delivered.append(d.attempt)}, clock=clock,
                    policy=policy)

    (claimed,) = first.claim()  # the first worker claims, then stalls
    assert second.run_once().processed == 0, "a live claim is not taken"
    clock.advance(61)
    assert second.run_once().sent == 1
    assert first.deliver(claimed).lost == 1, "a stale claim must not overwrite the outcome"
    message = row(database, message_id)
    assert (message.status, message.attempts) == (SENT, 2)


def test_run_is_bounded_and_drains_the_queue(database: Database) -> None:
    ids = enqueue(database, "test.ok", count=5, at=dt.datetime.now(dt.UTC))
    delivered: list[int] = []
    worker = Worker(database, {"test.ok": lambda d: delivered.append(d.id)}, batch_size=2,
                    poll_interval_s=0.05)
    started = time.monotonic()
    total = worker.run(stop_after=3.0)  # room for 3 batches on a busy machine
    assert time.monotonic() - started < 10
    assert total.sent == 5 and sorted(delivered) == ids


def test_run_stops_when_asked(database: Database) -> None:
    stop = threading.Event()
    worker = Worker(database, {}, poll_interval_s=10)
    thread = threading.Thread(target=worker.run, kwargs={"stop": stop})
    thread.start()
    time.sleep(0.2)
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_run_survives_an_unreachable_database(
    tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    missing = Database(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'x.sqlite3'}")
    worker = Worker(missing, {"test.ok": lambda _d: None}, poll_interval_s=0.01)
    with caplog.at_level(logging.WARNING, logger="fieldcal.worker"):
        assert worker.run(stop_after=0.3).processed == 0
    assert any("database unavailable" in r.getMessage() for r in caplog.records)
    missing.dispose()


def test_concurrent_workers_deliver_each_message_once(database: Database) -> None:
    ids = enqueue(database, "test.shared", count=40, at=dt.datetime.now(dt.UTC))
    delivered = Counter[int]()
    by_worker = Counter[str]()
    lock = threading.Lock()

    def make_handler(name: str) -> Any:
        def handle(delivery: Delivery) -> None:
            time.sleep(0.005)
            with lock:
                delivered[delivery.id] += 1
                by_worker[name] += 1

        return handle

    # Each worker has its own engine, as separate processes would.
    engines = [Database(database.url) for _ in range(3)]
    workers = [Worker(db, {"test.shared": make_handler(f"w{i}")}, batch_size=3)
               for i, db in enumerate(engines)]
    errors: list[BaseException] = []

    def drain(worker: Worker) -> None:
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with worker.database.read() as session:
                    left = session.scalars(
                        select(OutboxMessage.id).where(OutboxMessage.status != SENT)
                    ).first()
                if left is None:
                    return
                worker.run_once()
        except BaseException as exc:  # surfaced below
            errors.append(exc)
            raise

    threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for db in engines:
        db.dispose()
    assert not errors
    assert sorted(delivered) == ids
    assert set(delivered.values()) == {1}, "a message was delivered twice"
    with database.read() as session:
        statuses = set(session.scalars(select(OutboxMessage.status)))
    assert statuses == {SENT}
