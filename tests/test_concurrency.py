"""Races: conflicting moves through both gunicorn workers, bookings from separate
processes, and two clients updating the same event with If-Match."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import icalendar
import pytest
import requests
from davkit import (
    ICS,
    XML,
    basename,
    dav_request,
    moved,
    parse_multistatus,
    sync_collection,
    sync_token_of,
)
from live import (
    LiveServer,
)
from seeding import (
    Seed,
    appointment_row,
    at,
    book_in_process,
    book_job,
    domain,
    fresh_technician,
    items_of,
    personal_event,
)
from sqlalchemy import select

from server import calendars
from server.db import Database
from server.models import Appointment, AppointmentStatus, Change

RACERS = 20
pytestmark = [pytest.mark.slow, pytest.mark.serial]


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
        bodies.append((path, moved(current.text, *target), current.headers["ETag"]))

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
    now_in_target = [b for b in fresh.booked
             if appointment_row(db, b.appointment_id).starts_at == target[0]]
    assert len(now_in_target) == 1
    for booked in fresh.booked:
        if booked is not now_in_target[0]:
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
    context.set_forkserver_preload(["seeding"])  # import once; every racer still opens its own engine
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


def race(count: int, work: Callable[[int], requests.Response]) -> list[requests.Response]:
    """Run work(0..count-1) in threads released together."""
    barrier = threading.Barrier(count)

    def run(index: int) -> requests.Response:
        barrier.wait(timeout=30)
        return work(index)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


def test_same_uid_under_different_hrefs_at_once_is_stored_once(
    live: LiveServer, seed: Seed, db: Database
) -> None:
    account = fresh_technician(db, seed, "uidrace", []).account
    body = personal_event("contested@example.test", "contested", at(3, 6), at(3, 7))
    responses = race(RACERS, lambda i: dav_request(
        live, "PUT", f"/dav/{account.login}/personal/copy-{i}.ics", account.auth, body=body,
        headers=ICS, timeout=60))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * (RACERS - 1), statuses
    stored = [i for i in items_of(db, f"{account.login}/personal").values()
              if i.uid == "contested@example.test"]
    assert len(stored) == 1


def test_concurrent_writes_to_one_calendar_all_reach_a_sync_client(
    live: LiveServer, seed: Seed, db: Database
) -> None:
    account = fresh_technician(db, seed, "syncrace", []).account
    path = f"/dav/{account.login}/personal/"
    start = dav_request(live, "REPORT", path, account.auth, body=sync_collection(),
                        headers=XML)
    token = sync_token_of(start.content)
    responses = race(RACERS, lambda i: dav_request(
        live, "PUT", f"{path}item-{i}.ics", account.auth, headers=ICS, timeout=60,
        body=personal_event(f"item-{i}@example.test", f"item {i}", at(4, 6), at(4, 7))))
    assert [r.status_code for r in responses] == [201] * RACERS
    delta = dav_request(live, "REPORT", path, account.auth, body=sync_collection(token),
                        headers=XML)
    assert delta.status_code == 207
    assert {basename(r.href) for r in parse_multistatus(delta.content)} == {
        f"item-{i}.ics" for i in range(RACERS)}
    with db.read() as session:
        collection = calendars.require_collection(session, f"{account.login}/personal")
        seqs = sorted(session.scalars(select(Change.seq).where(
            Change.collection_id == collection.id)))
    assert seqs == list(range(1, collection.sync_seq + 1)), "the change log has no gaps"


def test_two_phones_answer_one_job_with_the_same_etag(
    live: LiveServer, seed: Seed, db: Database
) -> None:
    fresh = fresh_technician(db, seed, "twophones", [(at(24, 9), at(24, 10))])
    account, booked = fresh.account, fresh.booked[0]
    path = f"/dav/{account.login}/jobs/{booked.href}"
    current = dav_request(live, "GET", path, account.auth)
    etag = current.headers["ETag"]
    calendar = icalendar.Calendar.from_ical(current.text)
    attendee = next(iter(calendar.walk("VEVENT")))["ATTENDEE"]
    assert str(attendee).lower() == f"mailto:{account.email}"
    attendee.params["PARTSTAT"] = "ACCEPTED"
    bodies = [calendar.to_ical(), moved(current.text, at(24, 13), at(24, 14))]
    responses = race(2, lambda i: dav_request(live, "PUT", path, account.auth, body=bodies[i],
                                              headers={**ICS, "If-Match": etag}, timeout=60))
    statuses = [r.status_code for r in responses]
    assert sorted(statuses) == [204, 412], statuses
    row = appointment_row(db, booked.appointment_id)
    if statuses[0] == 204:  # the acceptance won
        assert (row.partstat, row.starts_at) == ("ACCEPTED", booked.starts_at)
    else:
        assert (row.partstat, row.starts_at) == ("NEEDS-ACTION", at(24, 13))
