"""An Idempotency-Key is claimed by the request's own transaction: a duplicate replays the
answer once the first commits, and runs anew when the first left nothing behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from server import idempotency
from server.db import Database
from server.migrate import upgrade

OWNER = "key:1"
FINGERPRINT = "f" * 64
ANSWER = idempotency.StoredAnswer(201, "application/json", b'{"id": 7}', "/api/v1/jobs/7")
POSTGRESQL_ONLY = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)


@pytest.fixture(scope="module")
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    upgrade(db)
    yield db
    db.dispose()


def _first_request(database: Database, key: str, claimed: threading.Event,
                   finish: threading.Event, commit: bool = True) -> threading.Thread:
    """A request that claims `key`, works until `finish` is set, then answers (or fails)."""

    def run() -> None:
        try:
            with database.write() as session:
                assert idempotency.claim(session, OWNER, key, FINGERPRINT) is None
                claimed.set()
                finish.wait(10)
                if not commit:
                    raise RuntimeError("the first request failed")
                idempotency.complete(session, OWNER, key, ANSWER)
        except RuntimeError:
            pass

    thread = threading.Thread(target=run)
    thread.start()
    assert claimed.wait(10)
    return thread


def test_a_duplicate_waits_for_the_first_request_and_replays_its_answer(database: Database) -> None:
    claimed, finish = threading.Event(), threading.Event()
    first = _first_request(database, "replayed", claimed, finish)
    threading.Timer(0.3, finish.set).start()
    started = time.monotonic()
    with database.write() as session:
        answer = idempotency.claim(session, OWNER, "replayed", FINGERPRINT)
    first.join()
    assert answer == ANSWER
    assert time.monotonic() - started >= 0.25  # it waited for the first request to answer


def test_a_key_whose_first_request_failed_runs_again(database: Database) -> None:
    claimed, finish = threading.Event(), threading.Event()
    first = _first_request(database, "failed", claimed, finish, commit=False)
    finish.set()
    first.join()
    with database.write() as session:
        assert idempotency.claim(session, OWNER, "failed", FINGERPRINT) is None
        idempotency.complete(session, OWNER, "failed", ANSWER)
    with database.write() as session:
        assert idempotency.claim(session, OWNER, "failed", FINGERPRINT) == ANSWER


def test_the_same_key_for_another_request_is_refused(database: Database) -> None:
    with database.write() as session:
        assert idempotency.claim(session, OWNER, "reused", FINGERPRINT) is None
        idempotency.complete(session, OWNER, "reused", ANSWER)
    with database.write() as session, pytest.raises(idempotency.KeyReused, match="reused"):
        idempotency.claim(session, OWNER, "reused", "e" * 64)


@POSTGRESQL_ONLY
def test_a_duplicate_of_a_long_request_gets_a_409_after_a_bounded_wait(
        database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(idempotency, "IN_FLIGHT_WAIT", "200ms")
    claimed, finish = threading.Event(), threading.Event()
    first = _first_request(database, "long", claimed, finish)
    started = time.monotonic()
    try:
        with database.write() as session, pytest.raises(idempotency.RequestInFlight,
                                                        match="still being processed"):
            idempotency.claim(session, OWNER, "long", FINGERPRINT)
        assert 0.15 <= time.monotonic() - started < 3
    finally:
        finish.set()
        first.join()
    with database.write() as session:  # the wait's bound does not outlive the claim
        assert session.execute(text("SHOW lock_timeout")).scalar_one() == "0"


@POSTGRESQL_ONLY
def test_a_claim_of_a_host_that_died_passes_on_at_once(database: Database) -> None:
    """A killed host's connections close, the database rolls its transaction back, and the
    retry on another host runs instead of waiting or being refused."""
    claimed, finish = threading.Event(), threading.Event()
    backend: list[int] = []

    def doomed() -> None:
        try:
            with database.write() as session:
                backend.append(session.execute(text("SELECT pg_backend_pid()")).scalar_one())
                idempotency.claim(session, OWNER, "orphan", FINGERPRINT)
                claimed.set()
                finish.wait(10)
                idempotency.complete(session, OWNER, "orphan", ANSWER)
        except DBAPIError:  # its connection was terminated, as a dead host's is
            pass

    thread = threading.Thread(target=doomed)
    thread.start()
    assert claimed.wait(10)
    with database.write() as session:
        session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend[0]})
    with database.write() as session:
        assert idempotency.claim(session, OWNER, "orphan", FINGERPRINT) is None
    finish.set()
    thread.join()
