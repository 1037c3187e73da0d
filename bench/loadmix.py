"""The load mix of a business (issue 13, "Many hosts"), open loop, with a knee search.

One gunicorn as `fieldcal serve` runs it (threaded workers, enough for the dispatchers'
streams). The business, per real second:
  - 500 technicians' phones syncing every 15 min: CalDAV sync-collection REPORT, and a
    PUT of a new event on one sync in ten;
  - 5,000 feed subscribers polling hourly: GET /feeds/<token>.ics with If-None-Match
    (304 unless the feed changed);
  - 30 dispatchers on the console: 30 change streams held open for the whole run, a write
    (POST /api/v1/customers with a dispatcher key) every 5 s each;
  - 2,000 bookings a day in 10 busy hours: half POST /api/v1/appointments, half through
    the booking page, the whole journey of a new customer (loadmix_booking.py: details,
    free times, hold, hold page, confirm; its latency is the journey's).
`--scale X` multiplies every rate (the streams stay 30: people, not requests), so a
run of N seconds carries N x X seconds of the business. Arrivals are Poisson and open
loop: a request is sent at its scheduled time whether or not earlier ones have answered,
and its latency counts from that time (no coordinated omission).

A knee search runs steps of `--seconds` at scale X, 2X, 4X, ... (at most `--steps`),
stopping after the first step where the p95 of some class exceeds `--bound-ms` or a
request fails. Sampled every second during each step: the host's CPU (busy share of all
cores, /proc/stat) and load average, and on PostgreSQL pg_stat_activity (active
backends, their wait event types) and pg_locks (requests not granted).

    python -m bench.loadmix [--seconds 20] [--scale 1] [--steps 6] [--target sqlite|postgresql|three-hosts]

`three-hosts` reuses the many-host tests' topology (tests/topology.py: three `fieldcal serve`
hosts in network namespaces behind HAProxy with TLS, one scratch PostgreSQL database).

Every run stops by itself: steps x (seconds + at most DRAIN_S for answers in flight).
"""

from __future__ import annotations

import argparse
import datetime as dt
import enum
import math
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import feeds, loadmix_booking, stream
from bench.loadmix_sampling import Samples, mean, sampling
from server import apikeys, directory
from server.actors import SYSTEM
from server.api.stream import STREAMS_PER_WORKER
from server.context import Context
from server.models import Job, Role

DISPATCHERS = 30
DRAIN_S = 15.0
TIMEOUT_S = 10.0
CLIENT_THREADS = 256
# Behind the three hosts' proxy every simulated customer comes from this one machine: the
# per-address booking limit (20 POSTs a minute) would measure the guard, not the pages.
GUARDS_RAISED = {"FIELDCAL_BOOKING_RATE": "1000000"}


class Kind(enum.Enum):
    SYNC = "phone sync-collection REPORT"
    PUT = "phone PUT (1 sync in 10)"
    FEED = "feed GET, If-None-Match"
    WRITE = "console write (API, dispatcher key)"
    BOOK_API = "booking via API"
    BOOK_PAGE = "booking page journey (details, hold, confirm)"


# Requests per real second of the business (scale 1).
RATES: dict[Kind, float] = {
    Kind.SYNC: 500 / 900,
    Kind.PUT: 500 / 900 / 10,
    Kind.FEED: 5000 / 3600,
    Kind.WRITE: DISPATCHERS / 5,
    Kind.BOOK_API: 2000 / 2 / (10 * 3600),
    Kind.BOOK_PAGE: 2000 / 2 / (10 * 3600),
}


def percentile(values: list[float], share: float) -> float:
    return stream.percentile(values, share) if values else math.nan


@dataclass
class Target:
    base: str
    login: str
    password: str
    feed_path: str
    dispatcher_key: str
    job_id: int
    feed_etag: str = ""
    sync_token: str = ""
    _numbers: Iterator[int] = field(default_factory=lambda: iter(range(1, 10**9)))
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _local: threading.local = field(default_factory=threading.local)
    _rng: random.Random = field(default_factory=lambda: random.Random(7))

    def client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(timeout=TIMEOUT_S)
            self._local.client = client
        return client

    def number(self) -> int:
        with self._lock:
            return next(self._numbers)

    def sync(self) -> bool:
        body = ('<?xml version="1.0"?><d:sync-collection xmlns:d="DAV:">'
                f'<d:sync-token>{self.sync_token}</d:sync-token><d:sync-level>1</d:sync-level>'
                '<d:prop><d:getetag/></d:prop></d:sync-collection>')
        answer = self.client().request(
            "REPORT", f"{self.base}/dav/{self.login}/personal/", content=body,
            auth=(self.login, self.password),
            headers={"Depth": "1", "Content-Type": "application/xml"})
        if answer.status_code != 207:
            return False
        text = answer.text
        token = text.split("sync-token>", 1)[1].split("<", 1)[0] if "sync-token>" in text else ""
        with self._lock:
            self.sync_token = token or self.sync_token
        return True

    def put(self) -> bool:
        uid = uuid.uuid4().hex
        begin = dt.datetime(2027, 1, 4, 8, tzinfo=dt.UTC) + dt.timedelta(hours=self.number())
        ics = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//loadmix//EN\r\nBEGIN:VEVENT\r\n"
               f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{begin:%Y%m%dT%H%M%SZ}\r\n"
               f"DTEND:{begin + dt.timedelta(minutes=30):%Y%m%dT%H%M%SZ}\r\nSUMMARY:Parts pickup\r\n"
               "END:VEVENT\r\nEND:VCALENDAR\r\n")
        answer = self.client().put(f"{self.base}/dav/{self.login}/personal/{uid}.ics", content=ics,
                                   auth=(self.login, self.password),
                                   headers={"If-None-Match": "*", "Content-Type": "text/calendar"})
        return answer.status_code == 201

    def feed(self) -> bool:
        answer = self.client().get(self.base + self.feed_path, headers={"If-None-Match": self.feed_etag})
        if answer.status_code == 200:
            self.feed_etag = answer.headers.get("ETag", "")
        return answer.status_code in (200, 304)

    def write(self) -> bool:
        answer = self.client().post(f"{self.base}/api/v1/customers",
                                    json={"name": f"Walk-in {self.number()}"},
                                    headers={"Authorization": f"Bearer {self.dispatcher_key}"})
        return answer.status_code == 201

    def book_api(self) -> bool:
        begin = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0) + dt.timedelta(
            days=400, hours=2 * self.number())
        answer = self.client().post(
            f"{self.base}/api/v1/appointments",
            json={"job_id": self.job_id, "technician": "booker", "starts_at": begin.isoformat(),
                  "duration_minutes": 60},
            headers={"Authorization": f"Bearer {self.dispatcher_key}"})
        return answer.status_code == 201

    def book_page(self) -> bool:
        return loadmix_booking.journey(self.client(), self.base, self.number(), self._rng)

    def call(self, kind: Kind) -> Callable[[], bool]:
        return {Kind.SYNC: self.sync, Kind.PUT: self.put, Kind.FEED: self.feed, Kind.WRITE: self.write,
                Kind.BOOK_API: self.book_api, Kind.BOOK_PAGE: self.book_page}[kind]


@dataclass
class Step:
    scale: float
    latencies: dict[Kind, list[float]]
    errors: Counter[Kind]
    samples: Samples
    late_ms: float  # p95 of how late the generator sent requests (the client's own limit)
    unanswered: int  # still in flight DRAIN_S after the step
    generator_cores: float  # CPU of this process (generator + stream threads), in cores
    reasons: Counter[str]


def arrivals(scale: float, seconds: float, rng: random.Random) -> list[tuple[float, Kind]]:
    found: list[tuple[float, Kind]] = []
    for kind, rate in RATES.items():
        at = rng.expovariate(rate * scale)
        while at < seconds:
            found.append((at, kind))
            at += rng.expovariate(rate * scale)
    return sorted(found, key=lambda pair: pair[0])


def run_step(target: Target, scale: float, seconds: float, pg_url: str | None, seed: int) -> Step:
    latencies: dict[Kind, list[float]] = {kind: [] for kind in Kind}
    errors: Counter[Kind] = Counter()
    reasons: Counter[str] = Counter()  # exceptions behind the errors (the rest: a wrong status)
    late: list[float] = []
    lock = threading.Lock()
    schedule = arrivals(scale, seconds, random.Random(seed))

    def one(kind: Kind, due: float) -> None:
        try:
            ok = target.call(kind)()
        except httpx.HTTPError as error:
            ok = False
            with lock:
                reasons[type(error).__name__] += 1
        took = (time.monotonic() - due) * 1000
        with lock:
            latencies[kind].append(took)
            if not ok:
                errors[kind] += 1

    cpu_began = time.process_time()
    with sampling(pg_url) as samples, ThreadPoolExecutor(CLIENT_THREADS) as pool:
        began = time.monotonic()
        for offset, kind in schedule:
            due = began + offset
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            late.append(max(0.0, time.monotonic() - due) * 1000)
            pool.submit(one, kind, due)
        pool.shutdown(wait=False, cancel_futures=False)
        deadline = time.monotonic() + DRAIN_S
        while sum(map(len, latencies.values())) < len(schedule) and time.monotonic() < deadline:
            time.sleep(0.05)
        with lock:
            answered = sum(map(len, latencies.values()))
        cores = (time.process_time() - cpu_began) / (time.monotonic() - began)
    return Step(scale, latencies, errors, samples, percentile(late, 0.95), len(schedule) - answered, cores,
                reasons)


def print_step(step: Step, seconds: float, bound_ms: float) -> str | None:
    """Prints the step's table; returns what broke the bound, if anything."""
    s = step.samples
    total = sum(map(len, step.latencies.values()))
    print(f"\n### scale {step.scale:g}: {total} requests in {seconds:g} s ({total / seconds:.1f} req/s), "
          f"host CPU busy mean {100 * mean(s.cpu_busy):.0f} % / "
          f"max {100 * max(s.cpu_busy, default=0):.0f} %, "
          f"load average {mean(s.load):.1f}; the generator used {step.generator_cores:.2f} cores, sent "
          f"p95 {step.late_ms:.0f} ms late; {step.unanswered} unanswered {DRAIN_S:g} s after the step")
    if s.pg_active:
        waits = ", ".join(f"{name} {count}" for name, count in s.pg_waits.most_common())
        print(f"PostgreSQL: active backends mean {mean(s.pg_active):.1f} / max {max(s.pg_active)}; "
              f"active samples by wait: {waits or 'none'}; lock requests not granted: "
              f"max {max(s.pg_lock_waits)}, in {sum(1 for n in s.pg_lock_waits if n)} of "
              f"{len(s.pg_lock_waits)} samples ({', '.join(f'{k} {v}' for k, v in s.pg_lock_kinds.items())})")
    print("| class | rate (req/s) | requests | p50 (ms) | p95 (ms) | p99 (ms) | errors |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    if step.reasons:
        print("errors that were exceptions: " + ", ".join(f"{k} {v}" for k, v in step.reasons.items()))
    broke = f"{step.unanswered} requests unanswered" if step.unanswered else None
    for kind in Kind:
        found = step.latencies[kind]
        p95 = percentile(found, 0.95)
        print(f"| {kind.value} | {RATES[kind] * step.scale:.2f} | {len(found)} | "
              f"{percentile(found, 0.5):.0f} | {p95:.0f} | {percentile(found, 0.99):.0f} | "
              f"{step.errors[kind]} |")
        if step.errors[kind] and broke is None:
            broke = f"{kind.value}: {step.errors[kind]} errors"
        if found and p95 > bound_ms and broke is None:
            broke = f"{kind.value}: p95 {p95:.0f} ms > {bound_ms:g} ms"
    return broke


def prepare(url: str) -> tuple[str, str, str, int]:
    """(feed path, CalDAV password, dispatcher key, job id) on an empty database."""
    database, feed_path, password, _readonly = stream.seed_all(url)
    with database.write() as session:
        ctx = Context(session, SYSTEM, feeds.ORGANIZER)
        _key, dispatcher = apikeys.issue_key(ctx, "load mix", apikeys.ApiRole.DISPATCHER)
        directory.add_user(ctx, "booker", name="Bench Booker", email="booker@bench.test",
                           role=Role.TECHNICIAN, timezone="Europe/Berlin")
        loadmix_booking.seed(ctx)
        job_id = session.query(Job.id).order_by(Job.id).first()[0]  # type: ignore[index]
    database.dispose()
    return feed_path, password, dispatcher, job_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each step")
    parser.add_argument("--scale", type=float, default=1.0, help="the first step's scale")
    parser.add_argument("--steps", type=int, default=6, help="at most this many steps, the scale doubling")
    parser.add_argument("--bound-ms", type=float, default=1000.0, help="the knee: p95 of a class above this")
    parser.add_argument("--target", choices=("sqlite", "postgresql", "three-hosts"), default="sqlite")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fieldcal-loadmix-") as folder:
        if args.target == "three-hosts":
            return run_hosts(Path(folder), args)
        where = stream.scratch_postgres() if args.target == "postgresql" else nullcontext(
            f"sqlite:///{folder}/bench.sqlite3")
        with where as url:
            return run(url, Path(folder), args)


def run_hosts(folder: Path, args: argparse.Namespace) -> int:
    """Three hosts behind HAProxy (TLS) on one scratch PostgreSQL database: the many-host
    tests' topology (tests/topology.py), reused as it is."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from topology import Topology  # tests' kit (on sys.path here)

    workers = math.ceil(DISPATCHERS / STREAMS_PER_WORKER / 3) + 1
    topology = Topology(folder / "hosts", host_count=3, worker_count=1, web_workers=workers,
                        env={"FIELDCAL_SECRET_KEYS": stream.KEY, "FIELDCAL_AUDIT_KEYS": stream.AUDIT_KEY,
                             "FIELDCAL_FEED_MAX_BYTES": "10000000", **GUARDS_RAISED})
    try:
        topology.start()
        assert topology.ca_file is not None
        os.environ["SSL_CERT_FILE"] = str(topology.ca_file)  # httpx clients trust the proxy
        label = f"three hosts ({topology.isolation.name}) behind HAProxy, {workers} workers each"
        return drive(topology.database_url, topology.base, args, label, workers * 3)
    finally:
        topology.stop()


def run(url: str, folder: Path, args: argparse.Namespace) -> int:
    workers = math.ceil(DISPATCHERS / STREAMS_PER_WORKER) + 1
    with stream.server(url, folder, workers, {**loadmix_booking.SERVER_ENV, **GUARDS_RAISED}) as base:
        return drive(url, base, args, f"one gunicorn (fieldcal serve), {workers} workers", workers)


def drive(url: str, base: str, args: argparse.Namespace, label: str, workers: int) -> int:
    feed_path, password, key, job_id = prepare(url)
    pg_url = url if url.startswith("postgresql") else None
    print(f"load mix on {args.target}: {label} x {STREAMS_PER_WORKER} streams ({workers} processes); "
          f"{DISPATCHERS} streams open; steps of {args.seconds:g} s; "
          f"knee bound p95 {args.bound_ms:g} ms or any error; os.cpu_count()={os.cpu_count()}, "
          f"load average before {os.getloadavg()[0]:.1f}")
    target = Target(base, feeds.LOGIN, password, feed_path, key, job_id)
    target.sync()
    target.feed()
    streams = stream.Streams(base, key, DISPATCHERS, 0)
    with streams.opened():
        scale, knee = args.scale, None
        for number in range(args.steps):
            step = run_step(target, scale, args.seconds, pg_url, seed=number)
            broke = print_step(step, args.seconds, args.bound_ms)
            if broke:
                knee = (scale, broke, step)
                break
            scale *= 2
    print(f"\nstreams: {DISPATCHERS} held; refused {streams.refused}, lost {streams.lost}")
    if knee is None:
        print(f"no knee up to scale {scale / 2:g}")
    else:
        print(f"knee: scale {knee[0]:g} ({knee[1]}); host CPU busy mean "
              f"{100 * mean(knee[2].samples.cpu_busy):.0f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
