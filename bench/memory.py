"""A worker's memory in process: idle RSS, its make-up, and the peak of each CalDAV operation.

`python -m bench.memory [--events 10000 50000] [--postgres SERVER_URL] [--ops ...]` seeds the
benchmark calendar once per N (kept in bench/.work/memory/, reused; on PostgreSQL in a
database of its own on that server, fieldcal_memory_<N>), then starts a fresh
process per measurement. The process builds the WSGI app as gunicorn's worker does
(`wsgi.create_wsgi_app()`), reads its resident set at rest (VmRSS, after a collection),
resets its peak (`/proc/self/clear_refs`, 5) and runs the operation through the app,
reading the body chunk by chunk as a server writes it out (nothing kept), then reads the
peak (VmHWM). "after" operations (e.g. `get-hit`) run their preparation before the reset.

`--imports` prints what the idle worker is made of: the RSS each group of imports adds,
in the order a worker loads them.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

WORK = Path(__file__).resolve().parent / ".work" / "memory"
ROOT = Path(__file__).resolve().parent.parent
PROPFIND_CORPUS = ROOT / "tests" / "data" / "propfind"
PATH = "/dav/tech/personal/"
MIB = 1024 * 1024


def status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def reset_peak() -> None:
    """VmHWM starts again from the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
        refs.write("5")


# ---------------------------------------------------------------------- seeding


def seeded(events: int, postgres: str | None) -> dict[str, str]:
    """The database of N events (seeded once), with the password and audit key to use it."""
    name = f"n{events}" + ("-pg" if postgres else "")
    folder = WORK / name
    stamp = folder / "seeded.json"
    if stamp.exists():
        return dict(json.loads(stamp.read_text()))
    from bench.events import generate
    from bench.seed import seed_fieldcal
    from bench.sides import fresh_postgres
    folder.mkdir(parents=True, exist_ok=True)
    url = (f"sqlite:///{folder / 'fieldcal.sqlite3'}" if postgres is None
           else fresh_postgres(postgres, f"fieldcal_memory_{events}"))  # kept for the next run
    key = secrets.token_urlsafe(32)
    began = time.perf_counter()
    done = seed_fieldcal(url, generate(events), key)
    info = {"url": url, "password": done.password, "audit_key": key, "instance": str(folder),
            "events": str(events)}
    stamp.write_text(json.dumps(info))
    print(f"seeded {events:,} events in {time.perf_counter() - began:.0f} s", file=sys.stderr)
    return info


# ---------------------------------------------------------------------- in the child


def _app(info: dict[str, str]) -> Any:
    from bench.seed import inprocess_app
    return inprocess_app(info["instance"], info["url"], info["audit_key"])


def respond(app: Any, method: str, path: str, body: bytes, headers: dict[str, str],
            take: Callable[[bytes], None]) -> tuple[int, dict[str, str]]:
    """One request through a WSGI app: its status and headers; each chunk of the body, as a
    server writes it out, to `take` (nothing kept here)."""
    from werkzeug.test import EnvironBuilder
    builder = EnvironBuilder(path=path, method=method, data=body, headers=list(headers.items()))
    environ = builder.get_environ()
    builder.close()
    got: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        got["status"] = int(status.split()[0])
        got["headers"] = dict(response_headers)
        return take

    answer = app(environ, start_response)
    try:
        for chunk in answer:
            take(chunk)
    finally:
        close = getattr(answer, "close", None)
        if close is not None:
            close()
    return got["status"], got["headers"]


class Caller:
    """Requests through the WSGI app; the body is read chunk by chunk and dropped."""

    def __init__(self, app: Any, info: dict[str, str]) -> None:
        self.app = app
        token = base64.b64encode(f"tech:{info['password']}".encode()).decode()
        self.auth = f"Basic {token}"
        self.put_index = int(time.time() * 1000) % 1_000_000

    def __call__(self, method: str, path: str, body: bytes = b"",
                 headers: dict[str, str] | None = None) -> tuple[int, int, dict[str, str]]:
        length = 0

        def take(chunk: bytes) -> None:
            nonlocal length
            length += len(chunk)

        status, answered = respond(self.app, method, path, body,
                                   {"Authorization": self.auth, **(headers or {})}, take)
        return status, length, {k.lower(): v for k, v in answered.items()}

    def put(self) -> None:
        from bench.events import new_event
        self.put_index += 1
        event = new_event(self.put_index)
        status, _, _ = self(
            "PUT", PATH + event.href, event.to_ics().encode(),
            {"Content-Type": "text/calendar; charset=utf-8", "If-None-Match": "*"})
        _expect(status, 201, "PUT")


def _expect(status: int, wanted: int, what: str) -> None:
    if status != wanted:
        raise RuntimeError(f"{what} answered {status}, not {wanted}")


XML = {"Content-Type": 'application/xml; charset="utf-8"'}


def _gzip(wanted: bool) -> dict[str, str]:
    """The header of a client that takes gzip (most do), or none."""
    return {"Accept-Encoding": "gzip"} if wanted else {}


def _operations(call: Caller) -> dict[str, tuple[Callable[[], object] | None, Callable[[], object]]]:
    """name -> (preparation before the peak is reset, the measured operation)."""
    from bench.caldav_bench import PROPFIND_BODY, query_body, sync_body

    def report(body: bytes, gzip: bool = False) -> Callable[[], object]:
        def run() -> object:
            status, length, _ = call("REPORT", PATH, body, {**XML, "Depth": "1", **_gzip(gzip)})
            _expect(status, 207, "REPORT")
            return length
        return run

    def propfind(body: bytes, gzip: bool = False) -> Callable[[], object]:
        def run() -> object:
            status, length, _ = call("PROPFIND", PATH, body, {**XML, "Depth": "1", **_gzip(gzip)})
            _expect(status, 207, "PROPFIND")
            return length
        return run

    def get(gzip: bool) -> Callable[[], object]:
        def run() -> object:
            status, length, headers = call("GET", PATH, b"", {"Accept-Encoding": "gzip"} if gzip else {})
            _expect(status, 200, "GET")
            if gzip and headers.get("content-encoding") != "gzip":
                raise RuntimeError("GET with Accept-Encoding: gzip came uncompressed")
            return length
        return run

    ops: dict[str, tuple[Callable[[], object] | None, Callable[[], object]]] = {
        "idle": (None, lambda: None),
        "put": (None, call.put),
        "put-second": (call.put, call.put),
        "calendar-query": (None, report(query_body())),
        "sync-empty": (None, report(sync_body(""))),
        "sync-empty-gzip": (None, report(sync_body(""), gzip=True)),
        "propfind": (None, propfind(PROPFIND_BODY)),
        "propfind-warm": (propfind(PROPFIND_BODY), propfind(PROPFIND_BODY)),
        "propfind-gzip": (None, propfind(PROPFIND_BODY, gzip=True)),
        "get-miss": (None, get(False)),
        "get-hit": (get(False), get(False)),
        "get-gzip-miss": (None, get(True)),
        "get-gzip-hit": (get(True), get(True)),
    }
    for file in sorted(PROPFIND_CORPUS.glob("*.xml")):
        ops[f"propfind:{file.stem}"] = (None, propfind(file.read_bytes()))
    return ops


def child(info: dict[str, str], operation: str) -> dict[str, Any]:
    start_rss = status_kib("VmRSS")
    app = _app(info)
    call = Caller(app, info)
    gc.collect()
    idle = status_kib("VmRSS")
    prepare, measured = _operations(call)[operation]
    if prepare is not None:
        prepare()
        gc.collect()
    before = status_kib("VmRSS")
    reset_peak()
    began = time.process_time()
    answer = measured()
    cpu = time.process_time() - began
    peak = status_kib("VmHWM")
    gc.collect()
    return {"operation": operation, "python_kib": start_rss, "idle_kib": idle, "before_kib": before,
            "peak_kib": peak, "after_kib": status_kib("VmRSS"), "cpu_s": round(cpu, 3),
            "answer_bytes": answer if isinstance(answer, int) else None}


def sequence(info: dict[str, str], operations: list[str]) -> list[dict[str, Any]]:
    """One process, the operations one after the other (a worker's life): peak after each."""
    app = _app(info)
    call = Caller(app, info)
    ops = _operations(call)
    gc.collect()
    out = [{"operation": "idle", "peak_kib": status_kib("VmHWM"), "rss_kib": status_kib("VmRSS")}]
    for name in operations:
        ops[name][1]()
        out.append({"operation": name, "peak_kib": status_kib("VmHWM"), "rss_kib": status_kib("VmRSS")})
    return out


# ---------------------------------------------------------------------- imports

IMPORT_GROUPS = (
    ("SQLAlchemy", ("sqlalchemy", "sqlalchemy.orm", "sqlalchemy.ext.hybrid")),
    ("Flask (werkzeug, jinja2)", ("flask", "werkzeug", "jinja2")),
    ("Radicale (vobject, defusedxml)", ("radicale", "radicale.app", "vobject")),
    ("icalendar, dateutil", ("icalendar", "dateutil.rrule", "dateutil.tz")),
    ("the models", ("server.models",)),
    ("the rest of the app", ("server.app", "plugins.radicale.application", "feeds.routes")),
    ("wsgi.py", ("wsgi",)),
)


LATER = (
    ("the API's schemas and endpoints (pydantic, spectree)", "server.api.endpoints"),
    ("the strict iCalendar parser (first PUT)", "ical.calendar_stream"),
)


def import_makeup(info: dict[str, str]) -> list[tuple[str, int]]:
    import importlib
    out = [("Python", status_kib("VmRSS"))]
    for label, modules in IMPORT_GROUPS:
        before = status_kib("VmRSS")
        for module in modules:
            try:
                importlib.import_module(module)
            except ImportError:
                pass
        gc.collect()
        out.append((label, status_kib("VmRSS") - before))
    before = status_kib("VmRSS")
    _app(info)
    gc.collect()
    out.append(("building the app (create_wsgi_app)", status_kib("VmRSS") - before))
    out.append(("total at rest", status_kib("VmRSS")))
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in (
        "pydantic", "spectree", "psycopg", "cryptography", "httpx", "PIL", "ical", "icalendar"))
    tops = sorted({name.split(".")[0] for name in loaded})
    out.append((f"loaded heavy packages: {', '.join(tops) or 'none'}", 0))
    for label, module in LATER:
        before = status_kib("VmRSS")
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        gc.collect()
        out.append((f"later, on first use: {label}", status_kib("VmRSS") - before))
    return out


# ---------------------------------------------------------------------- driver


def _run_child(info: dict[str, str], operation: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--child", operation, "--info", json.dumps(info)],
        cwd=ROOT, capture_output=True, text=True, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    if done.returncode != 0:
        raise RuntimeError(f"{operation}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


DEFAULT_OPS = ("idle", "put", "put-second", "calendar-query", "sync-empty", "sync-empty-gzip",
               "propfind", "propfind-warm", "propfind-gzip", "get-miss", "get-hit",
               "get-gzip-miss", "get-gzip-hit")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--events", type=int, nargs="+", default=[10000, 50000])
    parser.add_argument("--postgres", metavar="SERVER_URL",
                        help="a PostgreSQL server: the data goes into a database of its own "
                             "there, fieldcal_memory_<N> (made anew when seeded, then kept)")
    parser.add_argument("--ops", nargs="+", default=list(DEFAULT_OPS),
                        help="operations (propfind:<corpus file> for one body of tests/data/propfind)")
    parser.add_argument("--corpus", action="store_true", help="also every PROPFIND corpus body")
    parser.add_argument("--imports", action="store_true", help="the idle worker's make-up")
    parser.add_argument("--sequence", action="store_true", help="also all ops in one process")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--info", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.child:
        info = json.loads(args.info)
        if args.child == "@imports":
            print(json.dumps(import_makeup(info)))
        elif args.child == "@sequence":
            print(json.dumps(sequence(info, [op for op in DEFAULT_OPS if op != "idle"])))
        else:
            print(json.dumps(child(info, args.child)))
        return 0
    ops = list(args.ops)
    if args.corpus:
        ops += [f"propfind:{file.stem}" for file in sorted(PROPFIND_CORPUS.glob("*.xml"))]
    results: dict[str, Any] = {}
    for events in args.events:
        info = seeded(events, args.postgres)
        if args.imports:
            lines = _run_child(info, "@imports")
            print(f"\nIdle worker make-up (VmRSS, MiB), {events:,} events:")
            for label, kib in lines:
                print(f"  {label:40} {kib / 1024:7.1f}" if kib else f"  {label}")
        print(f"\n{events:,} events ({'PostgreSQL' if args.postgres else 'SQLite'}): MiB "
              "(idle, before, peak, after; fresh process each)")
        rows = []
        for operation in ops:
            row = _run_child(info, operation)
            rows.append(row)
            print(f"  {operation:28} idle {row['idle_kib'] / 1024:6.1f}  before "
                  f"{row['before_kib'] / 1024:6.1f}  peak {row['peak_kib'] / 1024:6.1f}  after "
                  f"{row['after_kib'] / 1024:6.1f}  cpu {row['cpu_s']:6.2f} s"
                  + (f"  {row['answer_bytes'] / 1e6:6.1f} MB" if row["answer_bytes"] else ""),
                  flush=True)
        results[str(events)] = rows
        if args.sequence:
            steps = _run_child(info, "@sequence")
            print("  one process, in turn (VmHWM / VmRSS MiB):")
            for step in steps:
                print(f"    {step['operation']:26} {step['peak_kib'] / 1024:6.1f} / "
                      f"{step['rss_kib'] / 1024:6.1f}")
            results[f"{events}-sequence"] = steps
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(f"\nload average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
