"""The dispatch API's own cost: the same operations over HTTP (gunicorn) and in-process.

Seeds the availability benchmark's data (20 technicians x 30 days, 2,000 visits), then
measures, side by side:
  - GET /api/v1/availability (30 days) vs free_slots() in a read transaction;
  - POST /api/v1/appointments vs scheduling.book() in a write transaction;
  - 1,000 appointments as 5 pages of 200 (GET /api/v1/appointments, following `next`)
    vs list_appointments() x 5 turned into JSON the way the CLI does.
Prints p50/p95 (wall) and the mean CPU per call (client + server worker, read from
/proc: robust on a busy machine) and what HTTP adds; exits 1 when it adds 2 ms or more
at p50.

    .venv/bin/python -m bench.api [--database-url URL] [--runs 40]
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlsplit

from bench.availability import DAYS, monday_after, seed
from server import apikeys, directory, scheduling
from server.actors import SYSTEM
from server.cli.views import appointment_json
from server.context import Context
from server.db import Database
from server.migrate import upgrade
from server.models import Job, Role, utcnow
from server.scheduling import booking
from server.scheduling.availability import free_slots
from server.scheduling.listing import AppointmentFilter, list_appointments

REPO = Path(__file__).resolve().parents[1]
ORGANIZER = "dispatch@bench.test"
TARGET_MS = 2.0
PAGE = 200
PAGES = 5


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def process_cpu_ms(pid: int) -> float:
    """CPU time (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_MS


def workers_of(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


@dataclass
class Sides:
    api: list[float] = field(default_factory=list)  # wall ms per call
    domain: list[float] = field(default_factory=list)
    api_cpu_ms: float = 0.0  # mean CPU per call: client + server worker
    domain_cpu_ms: float = 0.0


def paired(runs: int, api: Callable[[int], None], domain: Callable[[int], None],
           server: int) -> Sides:
    """Both sides in turns, so that a busy machine slows them alike; CPU time besides."""
    api(-1)  # warm-up
    domain(-1)
    sides = Sides()
    workers = workers_of(server)
    for number in range(runs):
        server_before = sum(process_cpu_ms(pid) for pid in workers)
        cpu, began = time.process_time(), time.perf_counter()
        api(number)
        sides.api.append((time.perf_counter() - began) * 1000)
        sides.api_cpu_ms += (time.process_time() - cpu) * 1000
        sides.api_cpu_ms += sum(process_cpu_ms(pid) for pid in workers) - server_before
        cpu, began = time.process_time(), time.perf_counter()
        domain(number)
        sides.domain.append((time.perf_counter() - began) * 1000)
        sides.domain_cpu_ms += (time.process_time() - cpu) * 1000
    sides.api_cpu_ms /= runs
    sides.domain_cpu_ms /= runs
    return sides


class Client:
    """One keep-alive-less HTTP/1.1 client, as most integrations are."""

    def __init__(self, base: str, key: str) -> None:
        parts = urlsplit(base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: object = None) -> tuple[int, dict]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
        try:
            connection.request(method, path, json.dumps(body) if body is not None else None,
                               self.headers)
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        finally:
            connection.close()


def start_server(url: str, instance: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDCAL_")}
    env.update({"FIELDCAL_INSTANCE": str(instance), "FIELDCAL_DATABASE_URL": url,
                "FIELDCAL_SECRET_KEYS": secrets.token_urlsafe(32),
                "FIELDCAL_BASE_URL": f"http://127.0.0.1:{port}",
                "FIELDCAL_ORGANIZER_EMAIL": ORGANIZER, "FIELDCAL_TIMEZONE": "Europe/Berlin"})
    log = (instance / "gunicorn.log").open("ab")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-w", "1", "-b", f"127.0.0.1:{port}",
         "--timeout", "120", "--no-control-socket", "wsgi:create_wsgi_app()"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            time.sleep(0.3)
    process.terminate()
    raise SystemExit(f"gunicorn did not start; see {instance / 'gunicorn.log'}")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def report(name: str, sides: Sides) -> bool:
    api, domain = sides.api, sides.domain
    added = statistics.median(api) - statistics.median(domain)
    met = added < TARGET_MS
    print(f"{name:<34} API p50 {statistics.median(api):7.2f} p95 {percentile(api, .95):7.2f} | "
          f"domain p50 {statistics.median(domain):7.2f} p95 {percentile(domain, .95):7.2f} | "
          f"adds {added:+6.2f} ms ({statistics.median(api) / statistics.median(domain):.2f}x) "
          f"[{'met' if met else 'NOT met'}]\n{'':<34} CPU per call: API {sides.api_cpu_ms:.2f} ms "
          f"(client + server), domain {sides.domain_cpu_ms:.2f} ms, adds "
          f"{sides.api_cpu_ms - sides.domain_cpu_ms:+.2f} ms")
    return met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="fieldcal-api-bench-"))
    url = args.database_url or f"sqlite:///{folder / 'bench.sqlite3'}"
    database = Database(url)
    upgrade(database)
    start = monday_after(dt.datetime.now(dt.UTC))
    seed(database, start)
    with database.write() as session:
        ctx = Context(session, SYSTEM, ORGANIZER)
        _, key = apikeys.issue_key(ctx, "bench", apikeys.ApiRole.DISPATCHER)
        directory.add_user(ctx, "booker", name="Bench Booker", email="booker@bench.test",
                           role=Role.TECHNICIAN, timezone="Europe/Berlin")
        job_id = session.query(Job.id).first()[0]  # type: ignore[index]
    port = free_port()
    server = start_server(url, folder, port)
    client = Client(f"http://127.0.0.1:{port}", key)
    end = start + dt.timedelta(days=DAYS)
    results = []
    try:
        def api_availability(_n: int) -> None:
            status, body = client.call("GET", f"/api/v1/availability?service=repair&from="
                                       f"{quote(start.isoformat())}&to={quote(end.isoformat())}"
                                       "&limit=1000")
            assert status == 200 and body["items"], body

        def domain_availability(_n: int) -> None:
            with database.read() as session:
                service = booking.service_type_by_slug(session, "repair")
                assert free_slots(session, service, start=start, end=end, now=utcnow())

        results.append(report("GET availability (20 techs x 30 d)",
                              paired(args.runs, api_availability, domain_availability, server.pid)))

        far = start + dt.timedelta(days=400)

        def api_book(number: int) -> None:
            begin = far + dt.timedelta(hours=2 * (number + 1))
            status, body = client.call("POST", "/api/v1/appointments", {
                "job_id": job_id, "technician": "booker", "starts_at": begin.isoformat(),
                "duration_minutes": 60})
            assert status == 201, body

        def domain_book(number: int) -> None:
            begin = far + dt.timedelta(days=100, hours=2 * (number + 1))
            with database.write() as session:
                ctx = Context(session, SYSTEM, ORGANIZER)
                job = session.get(Job, job_id)
                if job is None:
                    raise LookupError(f"job {job_id} is not in the benchmark database")
                technician = directory.find_user(session, "booker")
                scheduling.book(ctx, job, technician, begin, begin + dt.timedelta(hours=1))

        results.append(report("POST appointments", paired(args.runs, api_book, domain_book, server.pid)))

        def api_list(_n: int) -> None:
            path: str | None = f"/api/v1/appointments?limit={PAGE}"
            count = 0
            for _ in range(PAGES):
                assert path is not None
                status, body = client.call("GET", path)
                assert status == 200, body
                count += len(body["items"])
                path = body["next"] and urlsplit(body["next"])._replace(scheme="", netloc="").geturl()
            assert count == PAGE * PAGES

        def domain_list(_n: int) -> None:
            after = None
            count = 0
            for _ in range(PAGES):
                with database.read() as session:
                    rows = list_appointments(session, AppointmentFilter(), limit=PAGE, after=after)
                    json.dumps([appointment_json(a) for a in rows])
                after = (rows[-1].starts_at, rows[-1].id)
                count += len(rows)
            assert count == PAGE * PAGES

        list_runs = max(5, args.runs // 4)
        results.append(report("1,000 appointments (5 pages x 200)",
                              paired(list_runs, api_list, domain_list, server.pid)))
    finally:
        server.terminate()
        server.wait(timeout=15)
        database.dispose()
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
