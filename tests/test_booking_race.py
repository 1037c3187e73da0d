"""No double booking through the pages: many customers race for one slot through gunicorn."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from bookkit import (
    BookingSeed,
    confirmed_booking,
    details,
    free_starts,
    hidden,
    live_in,
    seed_booking,
    slot_values,
)
from live import AUDIT_KEY, LiveServer
from sqlalchemy import func, select

from server.db import Database
from server.links import LinkSigner
from server.migrate import upgrade
from server.models import (
    Appointment,
    AppointmentStatus,
    AuditEntry,
    CalendarItem,
    Change,
    Customer,
    Job,
    OutboxMessage,
    ShareLink,
    Site,
    utcnow,
)

pytestmark = [pytest.mark.slow, pytest.mark.serial]

KEYS = secrets.token_urlsafe(32)
WORKERS = 4
HOLDERS = 50
MOVERS = 10
TIMEOUT_S = 60
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


@dataclass
class Race:
    server: LiveServer
    db: Database
    seed: BookingSeed
    signer: LinkSigner


@pytest.fixture(scope="module")
def race(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Race]:
    db = Database(database_url)
    upgrade(db)
    seed = seed_booking(db, prefix="race-")
    server = LiveServer(database_url, tmp_path_factory.mktemp("race"), {
        "FIELDCAL_SECRET_KEYS": KEYS,
        "FIELDCAL_BOOKING_RATE": "100000",
        "FIELDCAL_TRUSTED_PROXIES": "1",  # so a test can speak from a client address of its own
    }, workers=WORKERS)
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield Race(server, db, seed, LinkSigner((KEYS,)))
    finally:
        server.stop()
        db.dispose()


@dataclass(frozen=True)
class Outcome:
    status: int
    text: str
    location: str
    finished: float


def _run_together(requests_to_send: list[tuple[str, dict[str, str]]],
                  headers: dict[str, str] | None = None) -> tuple[list[Outcome], float]:
    """POST all at once (threads released by one barrier); outcomes and seconds until the last answer."""
    barrier = threading.Barrier(len(requests_to_send) + 1)
    outcomes: list[Outcome | None] = [None] * len(requests_to_send)

    def send(index: int, url: str, form: dict[str, str]) -> None:
        with requests.Session() as session:
            barrier.wait(timeout=TIMEOUT_S)
            response = session.post(url, data=form, headers=headers, allow_redirects=False,
                                    timeout=TIMEOUT_S)
            outcomes[index] = Outcome(response.status_code, response.text,
                                      response.headers.get("Location", ""), time.perf_counter())

    threads = [threading.Thread(target=send, args=(i, url, form), daemon=True)
               for i, (url, form) in enumerate(requests_to_send)]
    for thread in threads:
        thread.start()
    barrier.wait(timeout=TIMEOUT_S)
    started = time.perf_counter()
    for thread in threads:
        thread.join(timeout=TIMEOUT_S)
    assert all(o is not None for o in outcomes), "every request was answered in time"
    done = [o for o in outcomes if o is not None]
    return done, max(o.finished for o in done) - started


COUNTED = (Customer, Site, Job, Appointment, CalendarItem, AuditEntry, OutboxMessage, Change,
           ShareLink)


def _counts(db: Database) -> dict[str, int]:
    with db.read() as session:
        return {model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
                for model in COUNTED}


def _growth(db: Database, before: dict[str, int]) -> dict[str, int]:
    return {name: count - before[name] for name, count in _counts(db).items()}


def _audit_verifies(race: Race) -> None:
    """`fieldcal audit verify` against the server's own instance still exits 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDCAL_")}
    env.update({"FIELDCAL_INSTANCE": str(race.server.instance),
                "FIELDCAL_DATABASE_URL": race.server.database_url,
                "FIELDCAL_SECRET_KEYS": KEYS, "FIELDCAL_BASE_URL": race.server.base,
                "FIELDCAL_AUDIT_KEYS": AUDIT_KEY, "FIELDCAL_BUSINESS_PHONE": "+49 30 555 0100"})
    done = subprocess.run([str(Path(sys.executable).parent / "fieldcal"), "audit", "verify"],
                          env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, (done.stdout, done.stderr)


def _record(name: str, seconds: float, database_url: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    kind = database_url.split(":", 1)[0]
    path = ARTIFACTS / f"race-{name}-{kind}.json"
    path.write_text(json.dumps({"race": name, "database": kind, "workers": WORKERS,
                                "seconds": round(seconds, 3)}) + "\n")
    print(f"\n{name} race on {kind} through {WORKERS} gunicorn workers resolved in {seconds:.3f} s")


def test_fifty_customers_race_for_one_slot(race: Race, database_url: str) -> None:
    slug = race.seed.repair
    forms: list[dict[str, str]] = []
    slot = ""
    for index in range(HOLDERS):
        email = f"racer{index}-{secrets.token_hex(3)}@example.test"
        first = requests.post(race.server.url(f"/book/{slug}/details"), timeout=TIMEOUT_S,
                              data=details(email, phone=f"+49 30 7000{index:03d}"))
        assert first.status_code == 200, first.text[:500]
        if not slot:
            monday = dt.date.fromisoformat(hidden(first.text, "week")) + dt.timedelta(days=7)
            next_week = requests.post(race.server.url(f"/book/{slug}/slots"), timeout=TIMEOUT_S,
                                      data={"details": hidden(first.text, "details"),
                                            "week": monday.isoformat()})
            slot = slot_values(next_week.text)[3]
        forms.append({"details": hidden(first.text, "details"), "key": hidden(first.text, "key"),
                      "slot": slot})
    assert len({f["key"] for f in forms}) == HOLDERS, "each customer has their own idempotency key"

    # What one uncontested hold writes (its own customer, at another time): the yardstick.
    solo_email = f"solo-{secrets.token_hex(3)}@example.test"
    # its own phone too: a contact's new hold replaces its open one, and phones count as contacts
    solo = requests.post(race.server.url(f"/book/{slug}/details"), timeout=TIMEOUT_S,
                         data=details(solo_email, phone="+49 30 7999999"))
    solo_form = {"details": hidden(solo.text, "details"), "key": hidden(solo.text, "key"),
                 "slot": slot_values(next_week.text)[12]}
    before = _counts(race.db)
    solo_hold = requests.post(race.server.url(f"/book/{slug}/hold"), data=solo_form,
                              allow_redirects=False, timeout=TIMEOUT_S)
    assert solo_hold.status_code == 303, solo_hold.text[:500]
    one_hold = _growth(race.db, before)
    assert one_hold["customer"] == one_hold["job"] == one_hold["appointment"] == 1, one_hold

    before = _counts(race.db)
    outcomes, seconds = _run_together([(race.server.url(f"/book/{slug}/hold"), f) for f in forms])
    _record("hold-50", seconds, database_url)

    won = [o for o in outcomes if o.status == 303]
    lost = [o for o in outcomes if o.status == 409]
    assert len(won) == 1, [o.status for o in outcomes]
    assert len(lost) == HOLDERS - 1, [o.status for o in outcomes]
    assert "/book/hold/" in won[0].location
    for outcome in lost:
        assert "That time was just taken" in outcome.text
        alternatives = slot_values(outcome.text)
        assert alternatives and slot not in alternatives
    starts_at = dt.datetime.fromisoformat(slot)
    held = live_in(race.db, starts_at, race.seed.technician)
    assert len(held) == 1 and held[0].status == AppointmentStatus.TENTATIVE
    with race.db.read() as session:
        rows = session.query(Appointment).filter(Appointment.starts_at == starts_at).all()
        assert len(rows) == 1, "the losers left no rows behind"
        winner = session.get(Job, rows[0].job_id)
        assert winner is not None and winner.customer.email.startswith("racer")
    assert _growth(race.db, before) == one_hold, "the tables grew by the winner's rows only"
    _audit_verifies(race)


def _spaced(starts: list[dt.datetime], count: int, gap: dt.timedelta) -> list[dt.datetime]:
    chosen: list[dt.datetime] = []
    for start in starts:
        if all(abs(start - other) >= gap for other in chosen):
            chosen.append(start)
        if len(chosen) == count:
            return chosen
    raise AssertionError(f"only {len(chosen)} spaced free starts")


def test_ten_bookings_race_into_one_free_slot(race: Race, database_url: str) -> None:
    slug = race.seed.repair
    now = utcnow()
    starts = [s for s in free_starts(race.db, slug, now) if s > now + dt.timedelta(days=3)]
    *origins, target = _spaced(starts, MOVERS + 1, dt.timedelta(hours=2))
    bookings = [
        confirmed_booking(race.db, race.signer, slug, start,
                          f"mover{i}-{secrets.token_hex(3)}@example.test", secrets.token_urlsafe(18))
        for i, start in enumerate(origins)
    ]
    posts: list[tuple[str, dict[str, str]]] = []
    for _appointment_id, token in bookings:
        page = requests.get(race.server.url(f"/m/{token}"), timeout=TIMEOUT_S)
        assert page.status_code == 200
        assert target.isoformat() in page.text or "Move to another time" in page.text
        posts.append((race.server.url(f"/m/{token}/reschedule"),
                      {"csrf": hidden(page.text, "csrf"), "slot": target.isoformat()}))

    # What one uncontested move writes: the yardstick for the race below.
    solo_start, solo_target = _spaced([s for s in starts if s > target + dt.timedelta(days=1)], 2,
                                      dt.timedelta(hours=2))
    _solo_id, solo_token = confirmed_booking(
        race.db, race.signer, slug, solo_start, f"solo-mover-{secrets.token_hex(3)}@example.test",
        secrets.token_urlsafe(18))
    solo_page = requests.get(race.server.url(f"/m/{solo_token}"), timeout=TIMEOUT_S)
    before = _counts(race.db)
    solo = requests.post(race.server.url(f"/m/{solo_token}/reschedule"), allow_redirects=False,
                         data={"csrf": hidden(solo_page.text, "csrf"), "slot": solo_target.isoformat()},
                         timeout=TIMEOUT_S)
    assert solo.status_code == 303, solo.text[:500]
    one_move = _growth(race.db, before)
    assert one_move["audit_entry"] >= 1 and one_move["appointment"] == 0, one_move

    before = _counts(race.db)
    outcomes, seconds = _run_together(posts)
    _record("reschedule-10", seconds, database_url)
    assert _growth(race.db, before) == one_move, "the tables grew by the winner's rows only"
    _audit_verifies(race)

    won = [o for o in outcomes if o.status == 303]
    lost = [o for o in outcomes if o.status == 409]
    assert len(won) == 1 and len(lost) == MOVERS - 1, [o.status for o in outcomes]
    for outcome in lost:
        assert "That time was just taken" in outcome.text
        assert target.isoformat() not in slot_values(outcome.text)
    assert len(live_in(race.db, target, race.seed.technician)) == 1
    with race.db.read() as session:
        stayed = [session.get(Appointment, a).starts_at for a, _ in bookings]  # type: ignore[union-attr]
    moved = [i for i, start in enumerate(stayed) if start == target]
    assert len(moved) == 1
    assert all(stayed[i] == origins[i] for i in range(MOVERS) if i not in moved)


def test_ten_identical_submits_at_once_book_once(race: Race) -> None:
    """A double-clicking customer (or a retrying browser): 10 identical hold POSTs at once,
    then 10 identical confirm POSTs at once, leave one confirmed visit, confirmed once."""
    slug = race.seed.repair
    email = f"clicker-{secrets.token_hex(3)}@example.test"
    # The customer's own connection: the holds other tests left open from the test
    # client's address count against that address, not against this customer.
    own = {"X-Forwarded-For": "198.51.100.77"}
    first = requests.post(race.server.url(f"/book/{slug}/details"), data=details(email),
                          headers=own, timeout=TIMEOUT_S)
    monday = dt.date.fromisoformat(hidden(first.text, "week")) + dt.timedelta(days=14)
    picker = requests.post(race.server.url(f"/book/{slug}/slots"), timeout=TIMEOUT_S,
                           data={"details": hidden(first.text, "details"), "week": monday.isoformat()})
    form = {"details": hidden(first.text, "details"), "key": hidden(first.text, "key"),
            "slot": slot_values(picker.text)[5]}

    held, _ = _run_together([(race.server.url(f"/book/{slug}/hold"), form)] * 10, own)
    assert {o.status for o in held} == {303}, [o.status for o in held]
    # Every submit lands on the one hold: one signed payload (signed at different seconds).
    assert len({o.location.split(".", 1)[0] for o in held}) == 1, [o.location for o in held]
    hold_url = race.server.url(held[0].location) if held[0].location.startswith("/") else held[0].location
    hold_page = requests.get(hold_url, timeout=TIMEOUT_S)
    assert hold_page.status_code == 200

    before = _counts(race.db)
    with race.db.read() as session:
        last_entry = session.scalar(select(func.max(AuditEntry.id))) or 0
    confirmed, _ = _run_together([(hold_url + "/confirm", {"csrf": hidden(hold_page.text, "csrf")})] * 10,
                                 own)
    assert all(o.status < 500 for o in confirmed), [o.status for o in confirmed]
    assert any(o.status == 303 for o in confirmed), [o.status for o in confirmed]
    with race.db.read() as session:
        visits = session.scalars(select(Appointment).join(Job, Job.id == Appointment.job_id)
                                 .join(Customer, Customer.id == Job.customer_id)
                                 .where(Customer.email == email)).all()
        assert len(visits) == 1 and visits[0].status == AppointmentStatus.CONFIRMED
        confirms = session.scalars(select(AuditEntry).where(
            AuditEntry.entity == "appointment", AuditEntry.entity_id == str(visits[0].id),
            AuditEntry.action == "appointment.confirm")).all()
        assert len(confirms) == 1, "confirmed once, whatever the number of submits"
    growth = _growth(race.db, before)
    assert growth["appointment"] == growth["customer"] == growth["job"] == 0, growth
    with race.db.read() as session:
        written = [(e.action, e.entity, e.entity_id) for e in session.scalars(
            select(AuditEntry).where(AuditEntry.id > last_entry))]
    assert len(written) == growth["audit_entry"] == len(set(written)), written
    assert growth["outbox_message"] >= 1, growth
    _audit_verifies(race)
