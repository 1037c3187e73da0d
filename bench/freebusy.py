"""free-busy-query: Radicale's own path vs fieldcal's answer from the database, side by side.

One scratch database per size N (default 1,000 and 10,000): N personal events
(bench.events: random ones over 1.5 years plus weekly series, stored through the
domain write path) and N visits (20 minutes each, spread over the same span) of
one technician. Both answers come from the same process and the same plugins:
"radicale" is `plugins.radicale.application.Application` with the fast path off
(Radicale fetches the items through our storage and expands them with vobject),
"fieldcal" is the same class with it on. Requests go through WSGI in process (no
network), so the numbers are the work of the answer itself.

Timed: the first request of each (cold: nothing cached), then `--rounds` rounds
after one warm-up, the two sides in turn in each round; medians. Every answer is
checked: both sides must show the same busy periods (no buffers are seeded), and
there must be some.

The databases are seeded once into bench/.work/freebusy/ and reused (booking 10,000
visits through the domain takes several minutes on two busy cores; `--fresh` seeds
again). A last row asks one week of a FREQ=MINUTELY series (a row stored before the
recurrence policy) of both sides.

    PYTHONPATH=$PWD .venv/bin/python -m bench.freebusy [--events 1000 10000] [--rounds 7] [--fresh]
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import logging
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import icalendar
from werkzeug.test import Client

from bench import events as bench_events
from bench import seed
from plugins.radicale.application import Application
from server import audit, calendars, directory, migrate
from server.actors import SYSTEM
from server.config import load_settings
from server.context import Context
from server.db import Database
from server.ical import etag_of
from server.models import CalendarItem, Job, Role
from server.scheduling import appointments
from server.web.guards import RadicaleEnviron
from wsgi import radicale_configuration

HEADERS = {"Content-Type": "application/xml; charset=utf-8", "Depth": "1"}
Period = tuple[str, str, str]
AUDIT_KEY = secrets.token_urlsafe(32)  # the scratch databases' own
WORK = Path(__file__).resolve().parent / ".work" / "freebusy"
SEED_FORMAT = "v1"  # bump when seed_database changes
BOOKING_BATCH = 1_000


class RadicaleOnly(Application):
    answer_freebusy = False


def seed_database(url: str, count: int) -> str:
    """The technician, `count` visits, then `count` personal events; returns the password.

    Visits are 20 minutes, from 18:30 and 35 minutes apart, every day of the events'
    span (the personal events lie between 07:00 and 18:15). They are booked first,
    while nothing else is in their way, which keeps seeding short.
    """
    database = Database(url)
    migrate.upgrade(database)
    first = dt.datetime.combine(bench_events.FIRST_DAY, dt.time(18, 30), tzinfo=dt.UTC)
    per_day = -(-count // bench_events.SPAN_DAYS)
    try:
        with database.write() as session:
            ctx = Context(session, SYSTEM, seed.ORGANIZER)
            technician = directory.add_user(ctx, seed.LOGIN, name="Bench Technician",
                                            email="tech@bench.test", role=Role.TECHNICIAN)
            _credential, password = directory.issue_password(ctx, technician, label="bench")
            customer = directory.add_customer(ctx, "Bench GmbH", email="ops@bench.test",
                                              address="Hafenstraße 1, 10115 Berlin")
            job_id = directory.add_job(ctx, customer, "Service", problem="Check the compressor.").id
        for offset in range(0, count, BOOKING_BATCH):
            with database.write() as session:
                ctx = Context(session, SYSTEM, seed.ORGANIZER)
                technician = directory.find_user(session, seed.LOGIN)
                job = session.get(Job, job_id)
                assert job is not None
                for number in range(offset, min(count, offset + BOOKING_BATCH)):
                    begin = first + dt.timedelta(days=number // per_day,
                                                 minutes=35 * (number % per_day))
                    appointments.book(ctx, job, technician, begin, begin + dt.timedelta(minutes=20))
        items = bench_events.generate(count)
        for offset in range(0, count, seed.BATCH):
            with database.write() as session:
                ctx = Context(session, SYSTEM, seed.ORGANIZER)
                collection = calendars.require_collection(session, calendars.personal_path(seed.LOGIN))
                for event in items[offset:offset + seed.BATCH]:
                    calendars.put_item(ctx, collection, event.href, event.to_ics())
    finally:
        database.dispose()
    return password


def app_client(url: str, instance: Path, fast: bool) -> Client:
    settings = load_settings({
        "FIELDCAL_INSTANCE": str(instance), "FIELDCAL_DATABASE_URL": url,
        "FIELDCAL_SECRET_KEYS": "bench-only-key", "FIELDCAL_ORGANIZER_EMAIL": seed.ORGANIZER,
        "FIELDCAL_DAV_AUTH_DELAY": "0", "FIELDCAL_AUDIT_KEYS": AUDIT_KEY,
    })
    application = (Application if fast else RadicaleOnly)(radicale_configuration(settings))
    return Client(RadicaleEnviron(application))


def body(start: dt.datetime, end: dt.datetime) -> bytes:
    return ('<?xml version="1.0" encoding="utf-8"?><C:free-busy-query '
            'xmlns:C="urn:ietf:params:xml:ns:caldav">'
            f'<C:time-range start="{start:%Y%m%dT%H%M%SZ}" end="{end:%Y%m%dT%H%M%SZ}"/>'
            "</C:free-busy-query>").encode()


def periods(answer: bytes) -> list[Period]:
    """Busy periods of an answer (Radicale's FBTYPE=FREE for cancelled events left out)."""
    found: list[Period] = []
    for component in icalendar.Calendar.from_ical(answer.decode()).walk("VFREEBUSY"):
        values = component.get("FREEBUSY", [])
        for prop in values if isinstance(values, list) else [values]:
            fbtype = str(prop.params.get("FBTYPE", "BUSY"))
            for item in getattr(prop, "dts", None) or [prop]:
                start, end = item.dt
                end = end if isinstance(end, dt.datetime) else start + end
                if fbtype != "FREE":
                    found.append((f"{start:%Y%m%dT%H%M%S}", f"{end:%Y%m%dT%H%M%S}", fbtype))
    return sorted(found)


def request(client: Client, path: str, auth: str, payload: bytes) -> Callable[[], bytes]:
    def call() -> bytes:
        response = client.open(path, method="REPORT", data=payload,
                               headers={**HEADERS, "Authorization": auth})
        answer = response.get_data()
        if response.status_code != 200:
            raise SystemExit(f"{path}: {response.status_code} {answer[:300]!r}")
        return answer
    return call


def timed(call: Callable[[], bytes]) -> tuple[float, list[Period]]:
    """Milliseconds to the whole answer, then its periods (read outside the time)."""
    began = time.perf_counter()
    answer = call()
    elapsed = (time.perf_counter() - began) * 1000
    return elapsed, periods(answer)


def seeded(count: int, work: Path, fresh: bool) -> tuple[str, str]:
    """The database of size `count` and the technician's password: seeded once, then reused
    (booking 10,000 visits through the domain takes minutes; the answers never write)."""
    path = work / f"freebusy-{count}-{SEED_FORMAT}.sqlite3"
    done = path.with_suffix(".json")
    url = f"sqlite:///{path}"
    if done.exists() and path.exists() and not fresh:
        saved = json.loads(done.read_text(encoding="utf-8"))
        audit.configure(url, audit.AuditKeys((saved["audit_key"],)))
        print(f"# reusing {path.name} (--fresh seeds it again)", file=sys.stderr)
        return url, str(saved["password"])
    for stale in (path, done):
        stale.unlink(missing_ok=True)
    audit.configure(url, audit.AuditKeys((AUDIT_KEY,)))
    began = time.perf_counter()
    password = seed_database(url, count)
    done.write_text(json.dumps({"password": password, "audit_key": AUDIT_KEY}), encoding="utf-8")
    print(f"# seeded {count} events + {count} visits in {time.perf_counter() - began:.0f} s",
          file=sys.stderr)
    return url, password


def measure(count: int, rounds: int, work: Path, fresh: bool) -> list[str]:
    url, password = seeded(count, work, fresh)
    auth = "Basic " + base64.b64encode(f"{seed.LOGIN}:{password}".encode()).decode()
    week_start, week_end = bench_events.query_window()
    windows = {"1 week": (week_start, week_end),
               "90 days": (week_start - dt.timedelta(days=45), week_end + dt.timedelta(days=38))}
    ours = app_client(url, work, fast=True)
    theirs = app_client(url, work, fast=False)
    header = ours.open(f"/{seed.LOGIN}/jobs/", method="REPORT", data=body(week_start, week_end),
                       headers={**HEADERS, "Authorization": auth}).headers["Content-Type"]
    print(f"# Content-Type: {header!r}", file=sys.stderr)
    assert header == "text/calendar; charset=utf-8", header
    rows = []
    for calendar in ("personal", "jobs"):
        for label, (start, end) in windows.items():
            path = f"/{seed.LOGIN}/{calendar}/"
            sides = {"radicale": request(theirs, path, auth, body(start, end)),
                     "fieldcal": request(ours, path, auth, body(start, end))}
            cold = {name: timed(call) for name, call in sides.items()}
            if cold["radicale"][1] != cold["fieldcal"][1] or not cold["fieldcal"][1]:
                raise SystemExit(f"{calendar} {label}: the answers differ "
                                 f"({len(cold['radicale'][1])} vs {len(cold['fieldcal'][1])} periods)")
            for call in sides.values():
                call()  # warm-up
            samples: dict[str, list[float]] = {name: [] for name in sides}
            for _ in range(rounds):
                for name, call in sides.items():
                    ms, found = timed(call)
                    if found != cold[name][1]:
                        raise SystemExit(f"{calendar} {label}: {name} answered differently")
                    samples[name].append(ms)
            rad, ours_ms = (statistics.median(samples[n]) for n in ("radicale", "fieldcal"))
            rows.append(f"| {count} | {calendar} | {label} | {len(cold['fieldcal'][1])} | "
                        f"{cold['radicale'][0]:.1f} | {cold['fieldcal'][0]:.1f} | "
                        f"{rad:.1f} | {ours_ms:.1f} | {rad / ours_ms:.1f}x |")
            print(rows[-1], file=sys.stderr)
    return rows


DENSE = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//fieldcal//bench//EN\r\nBEGIN:VEVENT\r\n"
         "UID:bench-dense\r\nDTSTAMP:20250101T000000Z\r\nDTSTART:20250106T080000Z\r\n"
         "DTEND:20250106T080100Z\r\nRRULE:FREQ=MINUTELY\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


def dense_row(work: Path, rounds: int) -> str:
    """One FREQ=MINUTELY series stored before the recurrence policy (written to the table as it
    was), asked for one week: Radicale walks it up to its occurrence limit, we do not walk it."""
    url = f"sqlite:///{work / 'freebusy-dense.sqlite3'}"
    audit.configure(url, audit.AuditKeys((AUDIT_KEY,)))
    database = Database(url)
    migrate.upgrade(database)
    try:
        with database.write() as session:
            ctx = Context(session, SYSTEM, seed.ORGANIZER)
            user = directory.add_user(ctx, seed.LOGIN, name="Bench Technician",
                                      email="tech@bench.test", role=Role.TECHNICIAN)
            _credential, password = directory.issue_password(ctx, user, label="bench")
            collection = calendars.require_collection(session, calendars.personal_path(seed.LOGIN))
            session.add(CalendarItem(collection_id=collection.id, href="dense.ics", uid="bench-dense",
                                     component="VEVENT", text=DENSE, etag=etag_of(DENSE),
                                     dtstart=dt.datetime(2025, 1, 5, tzinfo=dt.UTC), dtend=None,
                                     transparent=False))
    finally:
        database.dispose()
    auth = "Basic " + base64.b64encode(f"{seed.LOGIN}:{password}".encode()).decode()
    start, end = bench_events.query_window()
    payload = body(start, end)
    path = f"/{seed.LOGIN}/personal/"
    results = {}
    logging.getLogger("radicale").setLevel(logging.CRITICAL)  # its 400s log a traceback each
    for name, fast in (("radicale", False), ("fieldcal", True)):
        client = app_client(url, work, fast=fast)
        samples, statuses = [], set()
        for _ in range(rounds):
            began = time.perf_counter()
            response = client.open(path, method="REPORT", data=payload,
                                   headers={**HEADERS, "Authorization": auth})
            samples.append((time.perf_counter() - began) * 1000)
            statuses.add(response.status_code)
        results[name] = (statistics.median(samples), statuses)
    if results["fieldcal"][1] != {200}:
        raise SystemExit(f"dense rule: fieldcal answered {results['fieldcal'][1]}")
    rad, ours = results["radicale"][0], results["fieldcal"][0]
    return (f"| - | personal: 1 FREQ=MINUTELY series | 1 week | radicale status "
            f"{sorted(results['radicale'][1])} | | | {rad:.1f} | {ours:.1f} | {rad / ours:.1f}x |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--fresh", action="store_true", help="seed the databases again")
    options = parser.parse_args(argv)
    rows = []
    WORK.mkdir(parents=True, exist_ok=True)
    for count in options.events:
        rows += measure(count, options.rounds, WORK, options.fresh)
    with tempfile.TemporaryDirectory(prefix="fieldcal-freebusy-") as folder:
        rows.append(dense_row(Path(folder), options.rounds))
    print("| N | calendar | window | periods | radicale cold ms | fieldcal cold ms | "
          "radicale median ms | fieldcal median ms | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nload average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{options.rounds} rounds after 1 warm-up, medians; SQLite, in process (WSGI)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
