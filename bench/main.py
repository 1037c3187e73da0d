"""Seed, serve, time, check, profile and print: the side-by-side CalDAV benchmark."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import report
from bench.caldav_bench import Operations, Plan, Timing, measure
from bench.client import BenchError, Client, Reply
from bench.events import Event, dense_window, expected_in_window, with_dense_week
from bench.profile_run import profile_operations
from bench.servers import GunicornSettings, Server, start, stop_all
from bench.sides import Side, fieldcal_side, floor_side, scratch_postgres, stock_side

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / ".work"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
Step = Callable[[], tuple[Reply, int]]
FIRST_SYNC = "first sync, empty token (cold, 1 run)"
PROPFIND = "PROPFIND depth 1"
PUT = "PUT one event"
INITIAL_SYNC = "sync-collection, empty token (warm)"
GET_GZIP = "GET whole calendar, gzip"
DENSE_QUERY = "calendar-query (1 week, ~400 items)"
FLOOR = "floor"
LARGE = 50_000
LARGE_REPEATS = 5
FLOOR_OPERATIONS = frozenset({PROPFIND, PUT})  # what Radicale itself costs over no storage

OPERATIONS: list[tuple[str, Callable[[Operations], Step]]] = [
    (PUT, lambda ops: ops.put_new),
    ("calendar-query (1 week)", lambda ops: ops.calendar_query),
    (DENSE_QUERY, lambda ops: ops.calendar_query_dense),
    ("sync-collection (1 change)", lambda ops: ops.sync_after_change),
    (PROPFIND, lambda ops: ops.propfind),
    ("GET whole calendar", lambda ops: ops.get_all),
    (GET_GZIP, lambda ops: ops.get_all_gzip),
    (INITIAL_SYNC, lambda ops: ops.initial_sync),
    ("GET whole calendar after a change (cache miss)", lambda ops: ops.get_all_after_change),
]


@dataclass(frozen=True)
class Options:
    sizes: list[int]
    plan: Plan
    postgres_url: str | None
    profile: bool
    stock_only: bool
    cold_stock: bool
    log_level: str
    gunicorn: GunicornSettings


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="bench/run.sh", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="1,000 events only, fewer repetitions, no profile")
    parser.add_argument("--events", type=int, nargs="+", help="calendar sizes (default 1000 10000)")
    parser.add_argument("--large", action="store_true",
                        help=f"also {LARGE:,} events (memory target; at most {LARGE_REPEATS} "
                             "timed runs there)")
    parser.add_argument("--repeats", type=int, help="timed runs per operation (default 15)")
    parser.add_argument("--warmups", type=int, help="untimed runs first (default 2)")
    parser.add_argument("--postgres", nargs="?", const=DEFAULT_POSTGRES, metavar="SERVER_URL",
                        help=f"fieldcal on a scratch PostgreSQL database (default server "
                             f"{DEFAULT_POSTGRES}) instead of SQLite")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiles")
    parser.add_argument("--stock-only", action="store_true", help="stock Radicale alone")
    parser.add_argument("--cold-stock", action="store_true",
                        help=f"at {LARGE:,} events too, leave stock's item cache to its first "
                             "request (by default it is built at seeding there: the cold first "
                             "request alone takes stock more than 15 minutes)")
    parser.add_argument("--log-level", default="warning",
                        help="stock Radicale's [logging] level (default warning, as fieldcal's "
                             "radicale.config)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (both servers)")
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    return Options(
        sizes=(args.events or ([1000] if quick else [1000, 10000])) + ([LARGE] if args.large else []),
        plan=Plan(warmups=args.warmups if args.warmups is not None else (1 if quick else 2),
                  repeats=args.repeats or (5 if quick else 15)),
        postgres_url=args.postgres,
        profile=not (args.no_profile or quick),
        stock_only=bool(args.stock_only),
        cold_stock=bool(args.cold_stock),
        log_level=args.log_level,
        gunicorn=GunicornSettings(workers=args.workers),
    )


def _serve(side: Side, options: Options, work: Path) -> Server:
    return start(side.name, side.app, side.env, options.gunicorn, work / f"{side.name}.log",
                 port=side.port, cwd=REPO, ready_path=f"{side.prefix}/")


def _check(timings: list[Timing], expected: dict[str, int], size: int) -> None:
    """Every server must give the expected number of items; the read-only floor has no PUTs."""
    for timing in timings:
        want = (size + 1 if timing.server == FLOOR and timing.operation == PROPFIND
                else expected.get(timing.operation))
        if want is not None and timing.items != want:
            raise BenchError(f"{timing.server}: {timing.operation} gave {timing.items} items, "
                             f"expected {want}")


def _time_operations(sides: list[Side], servers: list[Server], events: list[Event],
                     plan: Plan) -> tuple[list[Timing], int]:
    """Every operation on every server in turn; returns the timings and the events created."""
    ops = [Operations(Client(side.name, server.port, "tech", side.password, side.prefix), events)
           for side, server in zip(sides, servers, strict=True)]
    timings: list[Timing] = []
    try:
        for op in ops:
            if op.client.name == FLOOR:
                continue
            reply, items = op.initial_sync()
            timings.append(Timing(FIRST_SYNC, op.client.name, [reply.ms], items))
            print(f"   {op.client.name:>8}  {FIRST_SYNC:<38} {reply.ms:10.2f} ms", flush=True)
        for name, pick in OPERATIONS:
            steps = {op.client.name: pick(op) for op in ops
                     if op.client.name != FLOOR or name in FLOOR_OPERATIONS}
            for timing in measure(name, steps, plan):
                timings.append(timing)
                print(f"   {timing.server:>8}  {name:<38} {timing.median_ms:10.2f} ms",
                      flush=True)
    finally:
        for op in ops:
            op.client.close()
    return timings, ops[0].created


def run_size(size: int, options: Options) -> tuple[report.RunResult, str]:
    work = WORK / f"n{size}"
    shutil.rmtree(work, ignore_errors=True)
    for name in ("stock", "fieldcal", FLOOR):
        (work / name).mkdir(parents=True)
    events = with_dense_week(size)
    print(f"\n== {size:,} events: seeding", flush=True)
    warm = size >= LARGE and not options.cold_stock
    stock = stock_side(work / "stock", events, options.log_level, warm_cache=warm)
    if warm:
        print("   stock: item cache built at seeding (its first sync is not cold)", flush=True)
    sides = [stock]
    profile_text = ""
    with ExitStack() as stack:
        if not options.stock_only:
            if options.postgres_url:
                url = stack.enter_context(scratch_postgres(options.postgres_url,
                                                           f"fieldcal_bench_{size}_{os.getpid()}"))
            else:
                url = f"sqlite:///{work / 'fieldcal' / 'fieldcal.sqlite3'}"
            sides.append(fieldcal_side(work / "fieldcal", events, url))
            sides.append(floor_side(stock, work / FLOOR, size, options.log_level))
        for side in sides:
            print(f"   {side.name}: seeded in {side.seed_s:.1f} s", flush=True)
        servers: list[Server] = []
        stack.callback(stop_all, servers)
        for side in sides:
            servers.append(_serve(side, options, work))
        plan = options.plan
        if size >= LARGE:  # bounded: stock Radicale takes seconds per request here
            plan = Plan(warmups=min(plan.warmups, 1), repeats=min(plan.repeats, LARGE_REPEATS))
        timings, created = _time_operations(sides, servers, events, plan)
        _check(timings, {
            FIRST_SYNC: size,
            "calendar-query (1 week)": expected_in_window(events),
            DENSE_QUERY: expected_in_window(events, dense_window()),
            "sync-collection (1 change)": 1,
            PUT: 1,
            GET_GZIP: size + created,
            INITIAL_SYNC: size + created,
            PROPFIND: size + 1 + created,
            "GET whole calendar": size + created,
            "GET whole calendar after a change (cache miss)": size + created,
        }, size)
        peak = {srv.name: max(srv.peak_rss_kib().values()) for srv in servers}
        stop_all(servers)
        if options.profile and size == max(options.sizes):
            print("   profiling", flush=True)
            profile_text = profile_operations(sides, events, options.gunicorn, work, REPO)
    result = report.RunResult(size, timings, {s.name: s.seed_s for s in sides}, peak)
    (work / "timings.json").write_text(json.dumps([asdict(t) for t in timings], indent=1))
    return result, profile_text


def _exit_on_term(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds, so every server is stopped


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_term)
    options = parse(sys.argv[1:] if argv is None else argv)
    if not options.stock_only and not (REPO / "wsgi.py").is_file():
        print("wsgi.py is missing: run with --stock-only", file=sys.stderr)
        return 2
    load_before = os.getloadavg()[0]
    results: list[report.RunResult] = []
    profiles: list[str] = []
    for size in options.sizes:
        result, profile_text = run_size(size, options)
        results.append(result)
        if profile_text:
            profiles.append(profile_text)
    machine = (f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, 1-minute load average "
               f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after the run")
    text = report.render(results, profiles, options.stock_only,
                         "PostgreSQL" if options.postgres_url else "SQLite", options.gunicorn,
                         machine)
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "results.md").write_text(text, encoding="utf-8")
    print("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
