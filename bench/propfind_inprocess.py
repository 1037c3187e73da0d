"""PROPFIND Depth 1 in process (no HTTP, no gunicorn): where the fast path's time goes.

`python -m bench.propfind_inprocess [--events 10000] [--repeats 9]` seeds a scratch
SQLite database and calls the composed WSGI app through werkzeug's test client:

- "fast, warm": plugins.radicale.propfind_fast with its fragments cached;
- "fast, cold": the same with the fragment cache emptied before each call (the first
  listing a worker answers after it starts);
- "Radicale on fieldcal's storage": the fast path switched off (what fieldcal did before).

Both answers are checked equal (parsed) before anything is timed. Prints medians and ratios.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
import xml.etree.ElementTree as ET  # our own answers, parsed for the check
from collections.abc import Callable
from pathlib import Path

from werkzeug.test import Client

from bench.caldav_bench import PROPFIND_BODY
from bench.events import generate
from bench.seed import LOGIN, basic_auth, inprocess_app, seed_fieldcal
from plugins.radicale import propfind_fast
from server import audit

PATH = f"/dav/{LOGIN}/personal/"


def _timed(call: Callable[[], bytes], repeats: int) -> tuple[float, bytes]:
    samples: list[float] = []
    body = b""
    for _ in range(repeats):
        began = time.perf_counter()
        body = call()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples), body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.propfind_inprocess", description=__doc__)
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    folder = Path(tempfile.mkdtemp(prefix="fieldcal-propfind-"))
    url = f"sqlite:///{folder / 'fieldcal.sqlite3'}"
    key = secrets.token_urlsafe(32)
    audit.configure(url, audit.AuditKeys((key,)))
    seeded = seed_fieldcal(url, generate(args.events), key)
    app = inprocess_app(folder, url, key)
    client = Client(app)
    headers = {"Authorization": basic_auth(LOGIN, seeded.password), "Depth": "1",
               "Content-Type": "application/xml; charset=utf-8"}

    def listing() -> bytes:
        response = client.open(PATH, method="PROPFIND", headers=headers, data=PROPFIND_BODY)
        if response.status_code != 207:
            raise RuntimeError(f"PROPFIND answered {response.status_code}")
        return response.data

    def cold() -> bytes:
        propfind_fast.FRAGMENTS.clear()
        return listing()

    def radicale() -> bytes:
        with propfind_fast.disabled():
            return listing()

    before = propfind_fast.COUNTS.answered
    reference = radicale()
    if ET.canonicalize(listing()) != ET.canonicalize(reference) or len(
            ET.fromstring(reference)) != args.events + 1:
        raise RuntimeError("the fast path's answer differs from Radicale's")
    warm_ms, _ = _timed(listing, args.repeats)
    cold_ms, _ = _timed(cold, args.repeats)
    radicale_ms, _ = _timed(radicale, args.repeats)
    if propfind_fast.COUNTS.answered - before != 1 + 2 * args.repeats:
        raise RuntimeError("the fast path did not answer every fast call")
    print(f"PROPFIND Depth 1 in process, {args.events:,} events, SQLite, medians of {args.repeats}")
    print(f"  Radicale on fieldcal's storage  {radicale_ms:9.1f} ms")
    print(f"  fast, cold fragment cache       {cold_ms:9.1f} ms  ({radicale_ms / cold_ms:.1f}× faster)")
    print(f"  fast, warm fragment cache       {warm_ms:9.1f} ms  ({radicale_ms / warm_ms:.1f}× faster)")
    print(f"  fragment cache: {propfind_fast.FRAGMENTS.size / 1e6:.1f} MB for one listing")
    print(f"  load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
