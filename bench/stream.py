"""Change streams, measured (GET /api/v1/changes/stream).

One gunicorn as `fieldcal serve` runs it (threaded workers; enough of them for 100
streams at `STREAMS_PER_WORKER` each). A technician with 300 visits, a feed link and a
CalDAV password. Measured:
  - the time from a committed change (a customer added in this process) to its arrival
    at every one of 1, 10 and 100 open streams: p50/p95 over changes x streams;
  - the feed (GET /feeds/<token>.ics) and a CalDAV PROPFIND (Depth 1 on the visits'
    calendar): p95 with no stream open (before and after) vs with 100 open streams
    receiving a change every half second (held by a second process, as browsers would be).
Targets: p95 < 1 s at 100 streams; feed and PROPFIND p95 with 100 streams within 1.2x
of the no-stream figure. Exit status 1 when one is missed.

    .venv/bin/python -m bench.stream [--postgres | --database-url URL] [--changes 20] [--runs 100]
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from sqlalchemy import func, select

from bench import feeds
from bench.servers import free_port
from server import apikeys, audit, directory
from server.actors import SYSTEM
from server.api.stream import STREAMS_PER_WORKER
from server.context import Context
from server.db import Database
from server.models import AuditEntry
from server.serve import ServeOptions, gunicorn_command

REPO = Path(__file__).resolve().parents[1]
STREAM = "/api/v1/changes/stream"
COUNTS = (1, 10, 100)
TARGET_S = 1.0
TARGET_RATIO = 1.2
VISITS = 300
AUDIT_KEY = secrets.token_urlsafe(32)
PROPFIND = ('<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:getetag/>'
            '<d:resourcetype/></d:prop></d:propfind>')


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


@dataclass
class Streams:
    """`count` streams, each in its own thread and connection; arrivals by customer id."""

    base: str
    key: str
    count: int
    after: int  # the change log position the streams start after
    arrivals: dict[str, list[float]] = field(default_factory=dict)
    refused: int = 0  # 503s (a worker's streams were all taken) retried, as a browser does
    lost: int = 0  # connections lost and resumed from the last id
    _open: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _clients: list[httpx.Client] = field(default_factory=list)

    def _follow(self) -> None:
        """One EventSource: reconnects after a refusal or a lost connection, from its last id."""
        client = httpx.Client(timeout=httpx.Timeout(10, read=60))
        with self._lock:
            self._clients.append(client)
        last, counted = self.after, False
        while not self._stop.is_set():
            try:
                with client.stream("GET", self.base + STREAM, params={"after": str(last)},
                                   headers={"Authorization": f"Bearer {self.key}"}) as answer:
                    if answer.status_code != 200:
                        with self._lock:
                            self.refused += 1
                        time.sleep(0.2)
                        continue
                    if not counted:
                        with self._lock:
                            self._open += 1
                        counted = True
                    for line in answer.iter_lines():
                        if line.startswith("id: "):
                            last = int(line[4:])
                        elif line.startswith("data: ") and '"kind": "customer"' in line:
                            entity = line.split('"id": "', 1)[1].split('"', 1)[0]
                            with self._lock:
                                self.arrivals.setdefault(entity, []).append(time.monotonic())
            except (httpx.HTTPError, RuntimeError):
                if self._stop.is_set():
                    return
                with self._lock:
                    self.lost += 1
                time.sleep(0.2)

    @contextmanager
    def opened(self) -> Iterator[Streams]:
        threads = [threading.Thread(target=self._follow, daemon=True) for _ in range(self.count)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 120
        while self._open < self.count and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._open < self.count:
            raise SystemExit(f"only {self._open} of {self.count} streams opened")
        time.sleep(0.5)  # each stream has sent its backlog (none: it starts at the end)
        try:
            yield self
        finally:
            self._stop.set()
            for client in list(self._clients):
                client.close()


def last_position(database: Database) -> int:
    with database.read() as session:
        return session.scalar(select(func.max(AuditEntry.id))) or 0


def add_customer(database: Database, name: str) -> str:
    with database.write() as session:
        customer = directory.add_customer(Context(session, SYSTEM, feeds.ORGANIZER), name,
                                          email=f"{secrets.token_hex(4)}@stream.bench.test")
        session.flush()
        return str(customer.id)


def delays(database: Database, streams: Streams, changes: int) -> list[float]:
    """Seconds from each commit to its arrival, for every (change, stream)."""
    found: list[float] = []
    for number in range(changes):
        entity = add_customer(database, f"Stream {streams.count}-{number}")
        committed = time.monotonic()
        deadline = committed + 10
        while len(streams.arrivals.get(entity, [])) < streams.count and time.monotonic() < deadline:
            time.sleep(0.002)
        arrived = streams.arrivals.get(entity, [])
        if len(arrived) < streams.count:
            raise SystemExit(f"change {entity} reached {len(arrived)} of {streams.count} streams in 10 s")
        found += [max(0.0, at - committed) for at in arrived]
        time.sleep(0.2)
    return found


@dataclass
class Probes:
    base: str
    feed_path: str
    login: str
    password: str
    feed_bytes: int = 0

    def feed(self, client: httpx.Client) -> float:
        began = time.perf_counter()
        answer = client.get(self.base + self.feed_path)
        took = time.perf_counter() - began
        assert answer.status_code == 200 and answer.text.count("BEGIN:VEVENT") >= VISITS, answer.status_code
        self.feed_bytes = len(answer.content)
        return took

    def propfind(self, client: httpx.Client) -> float:
        began = time.perf_counter()
        answer = client.request("PROPFIND", f"{self.base}/dav/{self.login}/jobs/", content=PROPFIND,
                                auth=(self.login, self.password),
                                headers={"Depth": "1", "Content-Type": "application/xml"})
        took = time.perf_counter() - began
        assert answer.status_code == 207 and answer.text.count("<D:href>") + \
            answer.text.count("<href>") >= VISITS, answer.status_code
        return took


def sample(probe: Callable[[httpx.Client], float], runs: int) -> list[float]:
    with httpx.Client(timeout=60) as client:
        probe(client)  # warm-up
        return [probe(client) for _ in range(runs)]


@contextmanager
def ticking(database: Database, every_s: float) -> Iterator[None]:
    """A change every `every_s` seconds in the background (dispatchers at work)."""
    stop = threading.Event()

    def run() -> None:
        number = 0
        while not stop.wait(every_s):
            number += 1
            add_customer(database, f"Tick {number}")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


@contextmanager
def scratch_postgres() -> Iterator[str]:
    admin = os.environ.get("FIELDCAL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"fieldcal_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urllib.parse.urlunsplit(urllib.parse.urlsplit(admin)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                               (name,))
            connection.execute(f'DROP DATABASE IF EXISTS "{name}"')


@contextmanager
def server(url: str, instance: Path, workers: int,
           extra_env: dict[str, str] | None = None) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDCAL_")}
    env.update({"FIELDCAL_INSTANCE": str(instance), "FIELDCAL_DATABASE_URL": url,
                "FIELDCAL_SECRET_KEYS": KEY, "FIELDCAL_AUDIT_KEYS": AUDIT_KEY,
                "FIELDCAL_BASE_URL": base, "FIELDCAL_ORGANIZER_EMAIL": feeds.ORGANIZER,
                "FIELDCAL_BUSINESS_PHONE": "+49 30 555 0100", "PYTHONPATH": str(REPO),
                "FIELDCAL_FEED_MAX_BYTES": "10000000", **(extra_env or {})})
    options = ServeOptions(host="127.0.0.1", port=port, workers=workers, worker=False)
    with (instance / "gunicorn.log").open("ab") as log:
        process = subprocess.Popen(gunicorn_command(options, ("--graceful-timeout", "3")), cwd=REPO,
                                   env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise SystemExit(f"gunicorn did not start; see {instance / 'gunicorn.log'}")
            time.sleep(0.3)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


KEY = secrets.token_urlsafe(32)


def seed_all(url: str) -> tuple[Database, str, str, str]:
    """(database, feed path, CalDAV password, readonly API key)."""
    audit.configure(url, audit.AuditKeys((AUDIT_KEY,)))
    token = feeds.seed_fieldcal(url, VISITS, KEY)
    database = Database(url)
    with database.write() as session:
        ctx = Context(session, SYSTEM, feeds.ORGANIZER)
        user = directory.find_user(session, feeds.LOGIN)
        _credential, password = directory.issue_password(ctx, user, label="bench")
        _key, readonly = apikeys.issue_key(ctx, "stream bench", apikeys.ApiRole.READONLY)
    return database, f"/feeds/{token}.ics", password, readonly


def hold(argv: list[str]) -> int:
    """The child of `held_streams`: 100 streams and a change every half second, until stdin closes."""
    base, key, after, url = argv
    audit.configure(url, audit.AuditKeys((os.environ["BENCH_AUDIT_KEY"],)))
    database = Database(url)
    with Streams(base, key, max(COUNTS), int(after)).opened(), ticking(database, 0.5):
        print("ready", flush=True)
        sys.stdin.read()
    database.dispose()
    return 0


@contextmanager
def held_streams(url: str, base: str, key: str, after: int) -> Iterator[None]:
    """100 open streams receiving a change every 0.5 s, held by another process (so that
    their threads do not compete with the probes' client for this process's GIL)."""
    env = {**os.environ, "BENCH_AUDIT_KEY": AUDIT_KEY, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-m", "bench.stream", "--hold", base, key, str(after), url],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    assert child.stdin is not None and child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        child.kill()
        raise SystemExit("the process holding the streams did not start them")
    try:
        yield
    finally:
        child.stdin.close()
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()


def main(argv: list[str]) -> int:
    if argv[:1] == ["--hold"]:
        return hold(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--database-url", help="an empty database (default: SQLite in a temporary folder)")
    where.add_argument("--postgres", action="store_true",
                       help="a scratch database on FIELDCAL_TEST_POSTGRES_URL's server, dropped after")
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fieldcal-stream-") as folder:
        if args.postgres:
            with scratch_postgres() as url:
                return run(url, Path(folder), args.changes, args.runs)
        return run(args.database_url or f"sqlite:///{folder}/bench.sqlite3", Path(folder), args.changes,
                   args.runs)


def run(url: str, folder: Path, changes: int, runs: int) -> int:
    database, feed_path, password, key = seed_all(url)
    workers = math.ceil(max(COUNTS) / STREAMS_PER_WORKER) + 1
    kind = url.split(":", 1)[0].split("+", 1)[0]
    print(f"change streams on {kind}: one gunicorn, {workers} workers x {STREAMS_PER_WORKER} streams; "
          f"{changes} changes per stream count; {runs} runs per probe (os.cpu_count()={os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f})")
    missed: list[str] = []
    with server(url, folder, workers) as base:
        probes = Probes(base, feed_path, feeds.LOGIN, password)
        print("\n| open streams | p50 (ms) | p95 (ms) | max (ms) | refused, lost | target p95 |")
        print("|---:|---:|---:|---:|---:|---|")
        for count in COUNTS:
            streams = Streams(base, key, count, last_position(database))
            with streams.opened():
                found = delays(database, streams, changes)
            p95 = percentile(found, 0.95)
            print(f"| {count} | {percentile(found, 0.5) * 1000:.0f} | {p95 * 1000:.0f} | "
                  f"{max(found) * 1000:.0f} | {streams.refused}, {streams.lost} | < {TARGET_S * 1000:.0f} |")
            if count == max(COUNTS) and p95 >= TARGET_S:
                missed.append(f"change to {count} streams p95 {p95 * 1000:.0f} ms")
        quiet: dict[str, list[float]] = {"feed": sample(probes.feed, runs),
                                         "PROPFIND": sample(probes.propfind, runs)}
        with held_streams(url, base, key, last_position(database)):
            loaded = {"feed": sample(probes.feed, runs), "PROPFIND": sample(probes.propfind, runs)}
        quiet["feed"] += sample(probes.feed, runs)
        quiet["PROPFIND"] += sample(probes.propfind, runs)
    print(f"\n| probe | no stream p50 / p95 (ms) | {max(COUNTS)} streams p50 / p95 (ms) "
          "| p95 ratio | target |")
    print("|---|---:|---:|---:|---|")
    for name in ("feed", "PROPFIND"):
        before, during = quiet[name], loaded[name]
        ratio = percentile(during, 0.95) / percentile(before, 0.95)
        print(f"| {name} | {percentile(before, 0.5) * 1000:.1f} / {percentile(before, 0.95) * 1000:.1f} | "
              f"{percentile(during, 0.5) * 1000:.1f} / {percentile(during, 0.95) * 1000:.1f} | "
              f"{ratio:.2f}x | <= {TARGET_RATIO}x |")
        if ratio > TARGET_RATIO:
            missed.append(f"{name} p95 {ratio:.2f}x with streams open")
    print(f"\nfeed body: {probes.feed_bytes:,} bytes, {VISITS} visits")
    database.dispose()
    if missed:
        print("MISSED: " + "; ".join(missed))
        return 1
    print("all targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
