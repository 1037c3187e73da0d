"""The API under concurrency, through gunicorn: duplicate POSTs and a 50-way race for a slot."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from apikit import Keys, live_server, make_keys
from live import LiveServer
from seeding import Seed, at, domain, fresh_technician
from sqlalchemy import func, select

from server import directory
from server.db import Database
from server.models import Appointment, AuditEntry, Job, OutboxMessage

pytestmark = [pytest.mark.slow, pytest.mark.serial]
TIMEOUT_S = 60


@pytest.fixture(scope="module")
def live(seed: object, database_url: str,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from live_server(database_url, tmp_path_factory.mktemp("api-live"))


@pytest.fixture(scope="module")
def keys(db: Database) -> Keys:
    return make_keys(db)


def all_at_once(count: int, send: Any) -> list[requests.Response]:
    """`count` threads, released together, each sending one request."""
    barrier = threading.Barrier(count)
    answers: list[requests.Response | BaseException] = [RuntimeError("not run")] * count

    def run(index: int) -> None:
        with requests.Session() as session:
            barrier.wait()
            try:
                answers[index] = send(session, index)
            except requests.RequestException as exc:
                answers[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT_S)
    failures = [a for a in answers if isinstance(a, BaseException)]
    assert not failures, failures[:3]
    return [a for a in answers if isinstance(a, requests.Response)]


def test_twenty_identical_posts_create_one_job(live: LiveServer, keys: Keys, seed: Seed,
                                               db: Database) -> None:
    body = {"customer_id": seed.customer_ids[0], "title": "Twenty at once"}
    headers = keys.headers("integration", **{"Idempotency-Key": "twenty-at-once"})
    answers = all_at_once(20, lambda s, _i: s.post(live.url("/api/v1/jobs"), json=body,
                                                   headers=headers, timeout=TIMEOUT_S))
    statuses = Counter(a.status_code for a in answers)
    assert set(statuses) <= {201, 409}, statuses
    assert statuses[201] >= 1
    assert len({a.json()["id"] for a in answers if a.status_code == 201}) == 1
    assert all("still being processed" in a.json()["detail"]
               for a in answers if a.status_code == 409)
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Job)
                              .where(Job.title == "Twenty at once")) == 1


def test_fifty_bookings_for_one_slot(live: LiveServer, keys: Keys, seed: Seed,
                                     db: Database) -> None:
    login = fresh_technician(db, seed, "api-race", []).account.login
    with domain(db) as ctx:
        customer = directory.find_customer(ctx.session, seed.customer_ids[0])
        job_ids = [directory.add_job(ctx, customer, f"race job {i}").id for i in range(50)]

    def send(session: requests.Session, index: int) -> requests.Response:
        return session.post(live.url("/api/v1/appointments"), timeout=TIMEOUT_S,
                            headers=keys.headers("dispatcher"),
                            json={"job_id": job_ids[index], "technician": login,
                                  "starts_at": at(30, 9).isoformat(), "duration_minutes": 90})

    answers = all_at_once(50, send)
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {201: 1, 409: 49}, (statuses, live.log_tail())
    winner = next(a.json() for a in answers if a.status_code == 201)
    for loser in (a for a in answers if a.status_code == 409):
        assert loser.headers["Content-Type"] == "application/problem+json"
        assert loser.json()["blocking"] in ([winner["id"]], None)
    with db.read() as session:
        booked = list(session.scalars(select(Appointment).where(Appointment.job_id.in_(job_ids))))
        assert [a.id for a in booked] == [winner["id"]]
        entries = session.scalar(select(func.count()).select_from(AuditEntry).where(
            AuditEntry.action == "appointment.book",
            AuditEntry.entity_id.in_([str(a.id) for a in booked])))
        assert entries == 1
        statuses_left = Counter(session.scalars(select(Job.status).where(Job.id.in_(job_ids))))
        assert statuses_left == {"new": 49, "scheduled": 1}
        pushed = session.scalar(select(func.count()).select_from(OutboxMessage).where(
            OutboxMessage.idempotency_key.like(f"appointment:{winner['id']}:%")))
        assert pushed == 1
