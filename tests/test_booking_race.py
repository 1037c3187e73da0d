"""No double booking through the pages: many customers race for one slot through gunicorn."""

from __future__ import annotations

import datetime as dt
import json
import secrets
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
from live import LiveServer

from server.db import Database
from server.links import LinkSigner
from server.migrate import upgrade
from server.models import Appointment, AppointmentStatus, utcnow

pytestmark = pytest.mark.slow

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


def _run_together(requests_to_send: list[tuple[str, dict[str, str]]]) -> tuple[list[Outcome], float]:
    """POST all at once (threads released by one barrier); outcomes and seconds until the last answer."""
    barrier = threading.Barrier(len(requests_to_send) + 1)
    outcomes: list[Outcome | None] = [None] * len(requests_to_send)

    def send(index: int, url: str, form: dict[str, str]) -> None:
        with requests.Session() as session:
            barrier.wait(timeout=TIMEOUT_S)
            response = session.post(url, data=form, allow_redirects=False, timeout=TIMEOUT_S)
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
        first = requests.post(race.server.url(f"/book/{slug}/details"), data=details(email),
                              timeout=TIMEOUT_S)
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

    outcomes, seconds = _run_together(posts)
    _record("reschedule-10", seconds, database_url)

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
