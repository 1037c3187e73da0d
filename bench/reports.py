"""Reports and exports on 100,000 visits, SQLite and PostgreSQL side by side.

Generates the data of bench/reports_data.py (bulk insert), then times every report over
the whole year the visits span (one untimed warm-up, then --runs rounds; p50 and p95),
checks each answer against what the generator counted, and exports all visits as CSV and
NDJSON (and iCalendar with --ics) with `fieldcal export` in a fresh process each
(bench/export_rss.py), reporting that process's peak RSS beside its RSS before the export
(the interpreter and the command line's imports).

    .venv/bin/python -m bench.reports [--visits 100000] [--runs 20] [--no-postgres] [--ics]

Targets: every report p95 < 300 ms; an export's peak RSS < 100 MB. Exit status 1 when a
target is missed or an answer is wrong.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from bench.reports_data import START, TECHNICIANS, Expected, generate
from bench.sides import scratch_postgres
from server import audit, reports
from server.audit import AuditKeys
from server.db import Database
from server.migrate import upgrade
from server.reports import Filters, Metric, Report

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
P95_TARGET_MS = 300.0
RSS_TARGET_MB = 100.0
BENCH_AUDIT_KEY = "bench-reports-audit-key-not-a-secret"
ZONE = "Europe/Berlin"


def checks(expected: Expected) -> dict[Metric, Callable[[Report], bool]]:
    return {
        Metric.VISITS: lambda r: r.summary == {"booked": expected.visits,
                                               "completed": expected.completed_entries,
                                               "cancelled": expected.cancelled, "rescheduled": 0,
                                               "holds_lapsed": 0},
        Metric.NO_SHOWS: lambda r: r.rows[0][:2] == (expected.live, expected.live - expected.attended),
        Metric.TIME_TO_SERVICE: lambda r: r.summary["jobs"] == expected.jobs,
        Metric.FIRST_TIME_FIX: lambda r: r.rows[0][0] == expected.completed_jobs,
        Metric.ON_TIME: lambda r: r.rows[0][0] == expected.windows,
        Metric.UTILISATION: lambda r: len(r.rows) == TECHNICIANS and all(
            isinstance(row[3], float) and row[3] > 0 for row in r.rows),
        Metric.BOOKING_HOURS: lambda r: r.summary == {"visits": expected.live},
        Metric.INTEGRATION_HEALTH: lambda r: r.summary["messages"] == expected.outbox,
    }


def time_reports(database: Database, filters: Filters, expected: Expected, runs: int
                 ) -> dict[Metric, tuple[float, float, bool]]:
    found: dict[Metric, tuple[float, float, bool]] = {}  # p50, p95, every answer right
    judge = checks(expected)
    now = expected.end + dt.timedelta(days=1)
    for metric in Metric:
        timings = []
        right = True
        for run in range(runs + 1):
            with database.read() as session:
                began = time.perf_counter()
                report = reports.run(session, metric, filters, business_zone=ZONE, now=now)
                elapsed = (time.perf_counter() - began) * 1000
            right = right and judge[metric](report)
            if run:
                timings.append(elapsed)
        p95 = statistics.quantiles(timings, n=20)[-1] if len(timings) > 1 else timings[0]
        found[metric] = (statistics.median(timings), p95, right)
    return found


def measure_export(url: str, mode: str, fmt: str, folder: Path, visits: int
                   ) -> tuple[float, float, float, bool]:
    target = folder / f"visits.{fmt}"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "FIELDCAL_DATABASE_URL": url, "FIELDCAL_INSTANCE": str(folder / "instance"),
           "FIELDCAL_AUDIT_KEYS": BENCH_AUDIT_KEY, "FIELDCAL_SECRET_KEYS": BENCH_AUDIT_KEY,
           "FIELDCAL_BUSINESS_PHONE": "+49 30 555 0100", "FIELDCAL_TIMEZONE": ZONE}
    done = subprocess.run([sys.executable, "-m", "bench.export_rss", mode, fmt, str(target)],
                          check=True, capture_output=True, text=True, env=env, timeout=1800)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    with target.open("rb") as handle:
        if fmt == "csv":
            count = sum(1 for _ in handle) - 1
        elif fmt == "ndjson":
            count = sum(1 for _ in handle)
        else:
            count = sum(1 for line in handle if line.startswith(b"BEGIN:VEVENT"))
    target.unlink()
    return result["before_mb"], result["peak_mb"], result["seconds"], count == visits


Timings = dict[Metric, tuple[float, float, bool]]


def load() -> str:
    return "/".join(f"{n:.1f}" for n in os.getloadavg())


def summary(found: dict[str, tuple[Timings, str]]) -> None:
    """Every report on every database side by side: p50 / p95 and p95 against the target."""
    names = list(found)
    print("\n| report | " + " | ".join(f"{n} p50 / p95 ms | {n} p95 ÷ target" for n in names) + " |")
    print("|---|" + "---:|---:|" * len(names))
    for metric in Metric:
        cells = []
        for name in names:
            p50, p95, right = found[name][0][metric]
            cells += [f"{p50:.0f} / {p95:.0f}" + ("" if right else " WRONG"), f"{p95 / P95_TARGET_MS:.2f}"]
        print(f"| {metric.value} | " + " | ".join(cells) + " |")
    print("\nload average (1/5/15 min) while the reports ran: "
          + "; ".join(f"{name} {found[name][1]}" for name in names))


def run_backend(name: str, url: str, args: argparse.Namespace, folder: Path,
                found: dict[str, tuple[Timings, str]]) -> bool:
    database = Database(url)
    upgrade(database)
    began = time.perf_counter()
    expected = generate(database, args.visits)
    print(f"\n## {name}: {args.visits:,} visits, {expected.jobs:,} jobs, {expected.outbox:,} outbox rows "
          f"generated in {time.perf_counter() - began:.1f} s")
    if database.engine.dialect.name == "postgresql":  # what autovacuum does after a bulk load
        with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM ANALYZE")
    filters = Filters(START - dt.timedelta(days=14), expected.end + dt.timedelta(days=1))
    print(f"range {filters.start.date()} to {filters.end.date()} (all visits); {args.runs} runs each\n")
    print(f"| report | p50 ms | p95 ms | answer | target p95 < {P95_TARGET_MS:.0f} ms |")
    print("|---|---:|---:|---|---|")
    ok = True
    before = load()
    timings = time_reports(database, filters, expected, args.runs)
    found[name] = (timings, f"{before} before, {load()} after")
    for metric, (p50, p95, right) in timings.items():
        met = p95 < P95_TARGET_MS
        ok = ok and met and right
        print(f"| {metric.value} | {p50:.0f} | {p95:.0f} | {'right' if right else 'WRONG'} | "
              f"{'met' if met else 'NOT met'} ({p95 / P95_TARGET_MS:.2f} of target) |")
    database.dispose()
    print(f"\n| export of all visits | process | RSS before MB | peak RSS MB | export's own MB | "
          f"seconds | rows | target peak < {RSS_TARGET_MB:.0f} MB |")
    print("|---|---|---:|---:|---:|---:|---|---|")
    for fmt in ("csv", "ndjson", *(("ics",) if args.ics else ())):
        for mode in ("core", "cli"):
            rss_before, peak, seconds, right = measure_export(url, mode, fmt, folder, args.visits)
            ok = ok and right
            met = peak < RSS_TARGET_MB  # both: `fieldcal export` imports only what the export needs
            ok = ok and met
            verdict = f"{'met' if met else 'NOT met'} ({peak / RSS_TARGET_MB:.2f} of target)"
            print(f"| {fmt} | {'export path' if mode == 'core' else 'fieldcal export'} | {rss_before:.0f} | "
                  f"{peak:.0f} | {peak - rss_before:.0f} | {seconds:.1f} | {'right' if right else 'WRONG'} | "
                  f"{verdict} |")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--visits", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, metavar="SERVER_URL")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--ics", action="store_true", help="also export as iCalendar (slow)")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="fieldcal-reports-"))
    sqlite_url = f"sqlite:///{folder / 'bench.sqlite3'}"
    audit.configure(sqlite_url, AuditKeys((BENCH_AUDIT_KEY,)))
    found: dict[str, tuple[Timings, str]] = {}
    ok = run_backend("SQLite", sqlite_url, args, folder, found)
    if not args.no_postgres:
        with ExitStack() as stack:
            name = f"fieldcal_reports_{secrets.token_hex(3)}"
            url = stack.enter_context(scratch_postgres(args.postgres, name))
            audit.configure(url, AuditKeys((BENCH_AUDIT_KEY,)))
            ok = run_backend("PostgreSQL", url, args, folder, found) and ok
    summary(found)
    print(f"\n{'all targets met' if ok else 'a target was missed or an answer was wrong'}")
    return 0 if ok else 1  # a missed target fails the run


if __name__ == "__main__":
    sys.exit(main())
