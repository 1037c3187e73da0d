"""The feed path, measured (issue: signed ICS subscriptions).

A technician with N appointments (default 10,000). Side by side in one run, same
gunicorn settings:
  - fieldcal GET /feeds/<token>.ics (full body) and its 304 path, vs stock Radicale's
    whole-calendar GET of the same events (multifilesystem);
  - throughput with wrk: the fieldcal feed vs a bare WSGI app serving the same bytes
    from memory.
The feed's byte budget is lifted for the comparison (all N events are served);
the default budget's size is reported too.

    .venv/bin/python -m bench.feeds [--events 10000] [--runs 15] [--wrk-seconds 10]

Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.client
import json
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import func, select

from bench import seed
from bench.servers import GunicornSettings, Server, free_port, start, stop_all
from server import directory, links, scheduling
from server.actors import SYSTEM
from server.calendars import jobs_path
from server.context import Context
from server.db import Database
from server.migrate import upgrade
from server.models import Appointment, CalendarItem, Collection, Role, utcnow
from server.scheduling import appointments

REPO = Path(__file__).resolve().parent.parent
ORGANIZER = "dispatch@bench.test"
LOGIN = seed.LOGIN


def seed_fieldcal(url: str, count: int, key: str) -> str:
    """N back-to-back 20-minute visits inside the feed window; returns the feed token."""
    database = Database(url)
    upgrade(database)
    first = utcnow().replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=20)
    with database.write() as session:
        ctx = Context(session, SYSTEM, ORGANIZER)
        technician = directory.add_user(ctx, LOGIN, name="Bench Technician", email="tech@bench.test",
                                        role=Role.TECHNICIAN)
        customer = directory.add_customer(ctx, "Bench GmbH", email="ops@bench.test",
                                          phone="+49 30 1234567", address="Hafenstraße 1\n10115 Berlin",
                                          compressor_make="Kaeser", compressor_model="SM 15")
        job = directory.add_job(ctx, customer, "Annual compressor service",
                                problem="Check oil, belts and pressure switch.")
        for number in range(count):
            begin = first + dt.timedelta(minutes=20 * number)
            appointments.book(ctx, job, technician, begin, begin + dt.timedelta(minutes=20))
        subject = links.Subject(links.SubjectKind.TECHNICIAN, technician.id, LOGIN)
        link = links.issue(ctx, links.Purpose.FEED, subject)
        token = links.LinkSigner((key,)).dumps(link)
    database.dispose()
    return token


def seed_stock(url: str, work: Path) -> tuple[Path, str]:
    """Stock Radicale gets the very same stored VEVENT texts as files."""
    database = Database(url)
    calendar = work / "collections" / "collection-root" / LOGIN / "jobs"
    calendar.mkdir(parents=True)
    (calendar / ".Radicale.props").write_text(json.dumps({"tag": "VCALENDAR"}), encoding="utf-8")
    with database.read() as session:
        rows = session.execute(
            CalendarItem.__table__.select().with_only_columns(CalendarItem.href, CalendarItem.text)
            .join(Collection.__table__, Collection.id == CalendarItem.collection_id)
            .where(Collection.path == jobs_path(LOGIN)))
        for href, text in rows:
            (calendar / href).write_text(text, encoding="utf-8", newline="")
    database.dispose()
    password = secrets.token_urlsafe(18)
    (work / "users").write_text(f"{LOGIN}:{password}\n", encoding="utf-8")
    config = work / "radicale.config"
    config.write_text(seed.radicale_config(work / "collections", work / "users", "warning"),
                      encoding="utf-8")
    return config, password


def timed(port: int, method: str, path: str, headers: dict[str, str], runs: int,
          expect: int) -> tuple[float, bytes, dict[str, str]]:
    """Median of `runs` timed requests after 2 warm-ups; runs=0: one request, timed, no warm-up."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    samples = []
    body, response_headers = b"", {}
    warmups = 2 if runs else 0
    for attempt in range(max(runs, 1) + warmups):
        began = time.perf_counter()
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        body = response.read()
        elapsed = (time.perf_counter() - began) * 1000
        if response.status != expect:
            raise RuntimeError(f"{method} {path} -> {response.status}, expected {expect}")
        response_headers = dict(response.getheaders())
        if attempt >= warmups:
            samples.append(elapsed)
    connection.close()
    return statistics.median(samples), body, response_headers


def after_a_change(url: str, port: int, path: str, runs: int, etag: str) -> float:
    """Median ms of a feed GET right after one of its visits moved (untimed): the cache-miss
    figure. Each answer must carry a new ETag and show the visit at its new time."""
    database = Database(url)
    samples = []
    try:
        with database.read() as session:
            last_id = session.scalar(select(func.max(Appointment.id)))
        if last_id is None:
            raise RuntimeError("feed after change: the benchmark database holds no appointment")
        for run in range(runs):
            with database.write() as session:
                ctx = Context(session, SYSTEM, ORGANIZER)
                visit = scheduling.get_appointment(session, last_id)
                moved = appointments.reschedule(ctx, visit, visit.starts_at + dt.timedelta(minutes=20),
                                                visit.ends_at + dt.timedelta(minutes=20))
                expected = f"DTSTART:{moved.starts_at:%Y%m%dT%H%M%SZ}".encode()
            ms, body, headers = timed(port, "GET", path, {}, 0, 200)
            if headers["ETag"] == etag or expected not in body:
                raise RuntimeError(f"feed after change {run}: stale answer (ETag {headers['ETag']})")
            etag = headers["ETag"]
            samples.append(ms)
    finally:
        database.dispose()
    return statistics.median(samples)


def wrk(url: str, seconds: int, headers: dict[str, str]) -> float:
    """Requests per second (wrk, 2 threads, 8 connections)."""
    command = ["wrk", "-t2", "-c8", f"-d{seconds}s", "--timeout", "30s"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    output = subprocess.run([*command, url], capture_output=True, text=True, timeout=seconds + 60,
                            check=True).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if match is None or "Non-2xx" in output:
        raise RuntimeError(f"wrk: unexpected output\n{output}")
    return float(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="fieldcal-feeds-"))
    url = args.database_url or f"sqlite:///{work / 'feeds.sqlite3'}"
    key = secrets.token_urlsafe(32)
    began = time.perf_counter()
    token = seed_fieldcal(url, args.events, key)
    print(f"seeded {args.events} appointments for one technician in "
          f"{time.perf_counter() - began:.0f} s ({url.split(':')[0]})")
    config, password = seed_stock(url, work)
    settings = GunicornSettings()
    fieldcal_port, stock_port, bare_port = free_port(), free_port(), free_port()
    fieldcal_env = {"FIELDCAL_INSTANCE": str(work), "FIELDCAL_DATABASE_URL": url,
                    "FIELDCAL_SECRET_KEYS": key, "FIELDCAL_FEED_MAX_BYTES": str(1 << 30),
                    "FIELDCAL_BASE_URL": f"http://127.0.0.1:{fieldcal_port}",
                    "FIELDCAL_MANAGE_CUTOFF_HOURS": "0"}
    servers: list[Server] = []
    try:
        servers.append(start("fieldcal", "wsgi:create_wsgi_app()", fieldcal_env, settings,
                             work / "fieldcal.log", port=fieldcal_port, cwd=REPO, ready_path="/healthz"))
        servers.append(start("stock", "radicale:application", {"RADICALE_CONFIG": str(config)}, settings,
                             work / "stock.log", port=stock_port, cwd=REPO))
        feed = f"/feeds/{token}.ics"
        full_ms, body, headers = timed(fieldcal_port, "GET", feed, {}, args.runs, 200)
        not_modified_ms, _, _ = timed(fieldcal_port, "GET", feed, {"If-None-Match": headers["ETag"]},
                                      args.runs, 304)
        miss_ms = after_a_change(url, fieldcal_port, feed, args.runs, headers["ETag"])
        auth = "Basic " + base64.b64encode(f"{LOGIN}:{password}".encode()).decode()
        stock_ms, stock_body, _ = timed(stock_port, "GET", f"/{LOGIN}/jobs/", {"Authorization": auth},
                                        max(3, args.runs // 3), 200)
        events = body.count(b"\r\nBEGIN:VEVENT\r\n")
        stock_events = stock_body.count(b"\nBEGIN:VEVENT")
        if events != args.events or stock_events != args.events:
            raise RuntimeError(f"event counts differ: fieldcal {events}, stock {stock_events}")
        (work / "feed.ics").write_bytes(body)
        servers.append(start("bare", "bench.bare_feed:create_app()",
                             {"BENCH_FEED_FILE": str(work / "feed.ics")}, settings,
                             work / "bare.log", port=bare_port, cwd=REPO))
        feed_rps = wrk(f"http://127.0.0.1:{fieldcal_port}{feed}", args.wrk_seconds, {})
        bare_rps = wrk(f"http://127.0.0.1:{bare_port}/", args.wrk_seconds, {})
        cond_rps = wrk(f"http://127.0.0.1:{fieldcal_port}{feed}", args.wrk_seconds,
                       {"If-None-Match": headers["ETag"]})
        rss = {s.name: max(s.peak_rss_kib().values(), default=0) // 1024 for s in servers}
    finally:
        stop_all(servers)
    budget_note = f"{len(body) / 1e6:.1f} MB for {events} events (budget lifted for this comparison)"
    rows: list[tuple[str, str, str, str]] = [
        ("whole feed / whole-calendar GET", f"{stock_ms:.1f} ms", f"{full_ms:.1f} ms",
         f"{stock_ms / full_ms:.0f}x"),
        ("whole feed right after a change (cache miss)", f"{stock_ms:.1f} ms", f"{miss_ms:.1f} ms",
         f"{stock_ms / miss_ms:.0f}x"),
        ("feed 304 (If-None-Match)", "-", f"{not_modified_ms:.2f} ms", "-"),
        ("wrk: feed 200 vs bare app, req/s", f"{bare_rps:.0f} (bare)", f"{feed_rps:.0f}",
         f"{feed_rps / bare_rps:.2f}x of bare"),
        ("wrk: feed 304, req/s", "-", f"{cond_rps:.0f}", "-"),
    ]
    print(f"\nFeed benchmark, {args.events} appointments, gunicorn {settings.workers} workers, "
          f"median of {args.runs}; body {budget_note}")
    print("| operation | stock Radicale / bare | fieldcal | ratio |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"peak worker RSS: {', '.join(f'{k} {v} MiB' for k, v in rss.items())}")
    targets: list[tuple[str, Callable[[], bool]]] = [
        (">= 50x faster than stock whole GET", lambda: stock_ms / full_ms >= 50),
        (">= 0.8x of the bare app's throughput", lambda: feed_rps / bare_rps >= 0.8),
    ]
    missed = [label for label, check in targets if not check()]
    for label, _check in targets:
        print(f"target {label}: {'NOT met' if label in missed else 'met'}")
    shutil.rmtree(work, ignore_errors=True)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
