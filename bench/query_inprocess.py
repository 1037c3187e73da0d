"""calendar-query REPORT in process (no HTTP, no gunicorn): CPU time per request.

`python -m bench.query_inprocess [--events 1000 10000] [--repeats 25] [--profile]`
seeds a scratch SQLite database per size with `bench.events.generate` (the standard
queried week: 20 appointments and 4 occurrences of weekly series) plus a dense week
of DENSE events (so ~400 hits at every size), and calls the composed WSGI app through
werkzeug's test client with the benchmark's calendar-query (`getetag` +
`calendar-data`, one VEVENT time-range):

- "fast, warm": plugins.radicale.query_fast with its fragments cached;
- "fast, cold": the same with the fragment cache emptied before each call;
- "Radicale on fieldcal's storage": the fast path switched off.

The answers are checked equal (parsed, whitespace aside) and the hit count checked
before anything is timed. Times are CPU time (time.process_time) of the whole
request, medians of interleaved rounds (each variant at each size once per round);
`--profile` prints a cProfile of the warm fast path and of Radicale's path at the
largest size.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import os
import pstats
import secrets
import statistics
import sys
import tempfile
import time
import xml.etree.ElementTree as ET  # our own answers, parsed for the check
from collections.abc import Callable
from pathlib import Path
from typing import Any

from werkzeug.test import Client

from bench.events import DENSE, DENSE_MONDAY, dense_week, generate
from bench.seed import LOGIN, basic_auth, inprocess_app, seed_fieldcal
from plugins.radicale import query_fast
from server import audit

PATH = f"/dav/{LOGIN}/personal/"
STANDARD = (dt.datetime(2025, 10, 6, tzinfo=dt.UTC), 24)



def query_body(monday: dt.datetime) -> bytes:
    end = monday + dt.timedelta(weeks=1)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
        "<D:prop><D:getetag/><C:calendar-data/></D:prop>"
        '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
        f'<C:time-range start="{monday:%Y%m%dT%H%M%SZ}" end="{end:%Y%m%dT%H%M%SZ}"/>'
        "</C:comp-filter></C:comp-filter></C:filter>"
        "</C:calendar-query>"
    ).encode()


def _cpu_ms(calls: dict[str, Callable[[], bytes]], repeats: int) -> dict[str, float]:
    """Median CPU ms of each call; rounds call each once, in turn, so load falls on all alike."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            began = time.process_time()
            call()
            samples[name].append((time.process_time() - began) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def _canonical(element: ET.Element) -> tuple[Any, ...]:
    return (element.tag, (element.text or "").strip(), tuple(_canonical(c) for c in element))


def _profile(call: Callable[[], bytes], title: str) -> None:
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(10):
        call()
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(18)
    print(f"--- profile: {title} (10 calls, own time)\n{out.getvalue()}")


def prepare(events: int, profile: bool) -> dict[tuple[int, int, str], Callable[[], bytes]]:
    """Seed a calendar of `events`, check the answers; the calls to time, by (events, hits, way)."""
    folder = Path(tempfile.mkdtemp(prefix="fieldcal-query-"))
    url = f"sqlite:///{folder / 'fieldcal.sqlite3'}"
    key = secrets.token_urlsafe(32)
    audit.configure(url, audit.AuditKeys((key,)))
    seeded = seed_fieldcal(url, generate(events - DENSE) + dense_week(), key)
    app = inprocess_app(folder, url, key)
    client = Client(app)
    headers = {"Authorization": basic_auth(LOGIN, seeded.password), "Depth": "1",
               "Content-Type": "application/xml; charset=utf-8"}
    calls: dict[tuple[int, int, str], Callable[[], bytes]] = {}
    for monday, hits in (STANDARD, (DENSE_MONDAY, DENSE + 1)):
        body = query_body(monday)

        def report(body: bytes = body) -> bytes:
            response = client.open(PATH, method="REPORT", headers=headers, data=body)
            if response.status_code != 207:
                raise RuntimeError(f"REPORT answered {response.status_code}")
            return response.data

        def cold(report: Callable[[], bytes] = report) -> bytes:
            query_fast.FRAGMENTS.clear()
            return report()

        def radicale(report: Callable[[], bytes] = report) -> bytes:
            with query_fast.disabled():
                return report()

        reference = radicale()
        found = ET.fromstring(reference)
        if len(found) != hits or _canonical(ET.fromstring(report())) != _canonical(found):
            raise RuntimeError(f"{hits} hits expected, Radicale {len(found)}, or answers differ")
        calls.update({(events, hits, "radicale"): radicale, (events, hits, "cold"): cold,
                      (events, hits, "warm"): report})
        if profile:
            _profile(report, f"{events:,} events, {hits} hits, fast path warm")
            _profile(radicale, f"{events:,} events, {hits} hits, Radicale's path")
    return calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.query_inprocess", description=__doc__)
    parser.add_argument("--events", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    rows = ["| events | hits | Radicale path | fast, cold | fast, warm | Radicale / warm |",
            "|---:|---:|---:|---:|---:|---:|"]
    calls: dict[tuple[int, int, str], Callable[[], bytes]] = {}
    for events in args.events:
        calls.update(prepare(events, args.profile and events == max(args.events)))
    before = query_fast.COUNTS.answered
    ms = _cpu_ms({f"{k}": call for k, call in calls.items()}, args.repeats)
    fast_calls = query_fast.COUNTS.answered - before
    for events, hits in sorted({(k[0], k[1]) for k in calls}):
        radicale_ms, cold_ms, warm_ms = (ms[str((events, hits, way))]
                                         for way in ("radicale", "cold", "warm"))
        rows.append(f"| {events:,} | {hits} | {radicale_ms:.1f} | {cold_ms:.1f} | {warm_ms:.1f} "
                    f"| {radicale_ms / warm_ms:.1f}× |")
    print(f"calendar-query REPORT in process, SQLite, CPU ms, medians of {args.repeats}")
    print("\n".join(rows))
    print(f"fast path answered {fast_calls} of {args.repeats * len(calls)} timed calls "
          f"(expected {args.repeats * len(calls) * 2 // 3})")
    print(f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
