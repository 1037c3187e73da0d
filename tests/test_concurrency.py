"""Races: conflicting moves through both gunicorn workers, bookings from separate
processes, and two clients updating the same event with If-Match."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor

import icalendar
import pytest
import requests
from live import (
    ICS,
    LiveServer,
    Seed,
    appointment_row,
    at,
    book_in_process,
    book_job,
    dav_request,
    domain,
    fresh_technician,
    items_of,
    personal_event,
)
from sqlalchemy import select

from server.db import Database
from server.models import Appointment, AppointmentStatus

RACERS = 20
pytestmark = pytest.mark.slow


def moved_text(text: str, start: object, end: object) -> bytes:
    calendar = icalendar.Calendar.from_ical(text)
    event = next(iter(calendar.walk("VEVENT")))
    for name, value in (("DTSTART", start), ("DTEND", end)):
        event.pop(name, None)
        event.add(name, value)
    return calendar.to_ical()


def in_slot(db: Database, technician_login: str, start: object, end: object) -> list[int]:
    from server import directory

    with db.read() as session:
        technician = directory.find_user(session, technician_login)
        return list(session.scalars(select(Appointment.id).where(
            Appointment.technician_id == technician.id,
            Appointment.status != AppointmentStatus.CANCELLED,
            Appointment.starts_at < end,
            Appointment.ends_at > start,
        )))


def test_twenty_conflicting_moves_one_wins(live: LiveServer, seed: Seed, db: Database) -> None:
    slots = [(at(21, 0, 30 * i), at(21, 0, 30 * i + 20)) for i in range(RACERS)]
    fresh = fresh_technician(db, seed, "race", slots)
    account = fresh.account
    target = (at(22, 9), at(22, 10))
    bodies: list[tuple[str, bytes, str]] = []
    for booked in fresh.booked:
        path = f"/dav/{account.login}/jobs/{booked.href}"
        current = dav_request(live, "GET", path, account.auth)
        assert current.status_code == 200
        bodies.append((path, moved_text(current.text, *target), current.headers["ETag"]))

    barrier = threading.Barrier(RACERS)

    def move(job: tuple[str, bytes, str]) -> requests.Response:
        path, body, etag = job
        barrier.wait(timeout=30)
        return dav_request(live, "PUT", path, account.auth, body=body,
                           headers={**ICS, "If-Match": etag}, timeout=60)

    with ThreadPoolExecutor(RACERS) as pool:
        responses = list(pool.map(move, bodies))

    statuses = sorted(r.status_code for r in responses)
    winners = [r for r in responses if 200 <= r.status_code < 300]
    assert len(winners) == 1, statuses
    assert all(r.status_code in (403, 409) for r in responses if r not in winners), statuses
    assert len(in_slot(db, account.login, *target)) == 1
    moved = [b for b in fresh.booked
             if appointment_row(db, b.appointment_id).starts_at == target[0]]
    assert len(moved) == 1
    for booked in fresh.booked:
        if booked is not moved[0]:
            row = appointment_row(db, booked.appointment_id)
            assert (row.starts_at, row.ends_at) == (booked.starts_at, booked.ends_at)


def test_twenty_bookings_from_separate_processes_one_wins(seed: Seed, db: Database) -> None:
    fresh = fresh_technician(db, seed, "book", [])
    login = fresh.account.login
    start, end = at(23, 9), at(23, 11)
    with domain(db) as ctx:
        job_ids = [
            book_job(ctx, None, seed.customer_ids[0], f"race booking {i}", at(30 + i, 9),
                     at(30 + i, 10)).job_id
            for i in range(RACERS)
        ]
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["live"])  # import once; every racer still opens its own engine
    barrier = context.Manager().Barrier(RACERS)
    with context.Pool(RACERS) as pool:
        pending = [pool.apply_async(book_in_process, (seed.url, job_id, login, start, end, barrier))
                   for job_id in job_ids]
        outcomes = [p.get(timeout=120) for p in pending]
    assert sorted(outcomes) == ["booked"] + ["taken"] * (RACERS - 1)
    assert len(in_slot(db, login, start, end)) == 1


def test_lost_update_is_prevented_by_if_match(live: LiveServer, seed: Seed, db: Database) -> None:
    fresh = fresh_technician(db, seed, "lost", [])
    account = fresh.account
    path = f"/dav/{account.login}/personal/shared.ics"
    created = dav_request(live, "PUT", path, account.auth, headers=ICS,
                          body=personal_event("shared@example.test", "original", at(2, 6), at(2, 7)))
    assert created.status_code == 201
    first_get = dav_request(live, "GET", path, account.auth)
    second_get = dav_request(live, "GET", path, account.auth)
    etag = first_get.headers["ETag"]
    assert second_get.headers["ETag"] == etag

    barrier = threading.Barrier(2)

    def update(summary: str) -> tuple[str, int]:
        body = personal_event("shared@example.test", summary, at(2, 6), at(2, 7))
        barrier.wait(timeout=30)
        response = dav_request(live, "PUT", path, account.auth, body=body,
                               headers={**ICS, "If-Match": etag})
        return summary, response.status_code

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(update, ["from phone", "from laptop"]))
    statuses = sorted(status for _, status in results)
    assert statuses in ([204, 412], [200, 412]), results
    winner = next(summary for summary, status in results if status != 412)
    stored = items_of(db, f"{account.login}/personal")["shared.ics"].text
    assert f"SUMMARY:{winner}" in stored
    served = dav_request(live, "GET", path, account.auth).text
    assert f"SUMMARY:{winner}" in served
