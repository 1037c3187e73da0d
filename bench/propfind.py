"""PROPFIND Depth 1 alone: fieldcal's fast path against Radicale's floor and stock Radicale.

`python -m bench.propfind [--events 1000 10000] [--repeats 15] [--postgres]` seeds the
three servers of bench/run.sh (stock Radicale on multifilesystem, fieldcal on SQLite or
PostgreSQL, Radicale over bench.floor's zero-cost storage), starts them under gunicorn
with the same settings and times, side by side in rounds:

- "unchanged": the benchmark's listing body (resourcetype, getetag, getcontenttype) on an
  unchanged calendar, on all three servers;
- "after a change": one event changed (an untimed PUT) before each listing, on stock and
  fieldcal (the floor is read-only): what a client that saw a new ctag asks next.

Every answer is checked before its time counts: N + 1 responses, each 200, each item
with an ETag. Prints medians, the ratios to fieldcal and the load average.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import shutil
import signal
import statistics
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from bench.caldav_bench import CALENDAR_PATH, PROPFIND_BODY, XML, Operations
from bench.client import DAV, BenchError, Client, Reply
from bench.events import Event, generate
from bench.servers import GunicornSettings, Server, start, stop_all
from bench.sides import Side, fieldcal_side, floor_side, scratch_postgres, stock_side
from server import audit

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / ".work" / "propfind"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
Step = Callable[[], Reply]


def _listing(client: Client, size: int) -> Reply:
    reply = client.request("PROPFIND", CALENDAR_PATH, PROPFIND_BODY, {**XML, "Depth": "1"},
                           expect=(207,))
    responses = reply.responses()
    if len(responses) != size + 1:
        raise BenchError(f"{client.name}: {len(responses)} responses, expected {size + 1}")
    for response in responses[1:]:
        if not response.findtext(f".//{DAV}getetag") or " 200 " not in (
                response.findtext(f".//{DAV}status") or ""):
            raise BenchError(f"{client.name}: {response.findtext(f'{DAV}href')} without 200 ETag")
    return reply


def _listing_step(client: Client, size: int) -> Step:
    def step() -> Reply:
        return _listing(client, size)
    return step


def _after_change(ops: Operations, size: int) -> Step:
    def step() -> Reply:
        event = ops.events[(ops.changed * 7919) % len(ops.events)]
        ops.changed += 1
        revised = event.revised(ops.changed)
        ops.client.request("PUT", f"{CALENDAR_PATH}{event.href}", revised.to_ics().encode(),
                           {"Content-Type": "text/calendar; charset=utf-8"}, expect=(201, 204))
        reply = _listing(ops.client, size)
        wanted = f"{CALENDAR_PATH.strip('/').split('/')[-1]}/{event.href}"
        if not any((h.text or "").endswith(wanted) for h in reply.xml().iter(f"{DAV}href")):
            raise BenchError(f"{ops.client.name}: the changed event is not listed")
        return reply
    return step


def _rounds(steps: dict[str, Step], warmups: int, repeats: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for index in range(warmups + repeats):
        for name, step in steps.items():
            reply = step()
            if index >= warmups:
                samples[name].append(reply.ms)
    return {name: statistics.median(values) for name, values in samples.items()}


def _serve(side: Side, work: Path) -> Server:
    return start(side.name, side.app, side.env, GunicornSettings(), work / f"{side.name}.log",
                 port=side.port, cwd=REPO, ready_path=f"{side.prefix}/")


def run_size(size: int, events: list[Event], postgres: str | None, warmups: int,
             repeats: int) -> list[str]:
    work = WORK / f"n{size}"
    shutil.rmtree(work, ignore_errors=True)
    for name in ("stock", "fieldcal", "floor"):
        (work / name).mkdir(parents=True)
    lines: list[str] = []
    with ExitStack() as stack:
        stock = stock_side(work / "stock", events, "warning")
        url = (stack.enter_context(scratch_postgres(postgres, f"fieldcal_propfind_{size}"))
               if postgres else f"sqlite:///{work / 'fieldcal' / 'fieldcal.sqlite3'}")
        key = secrets.token_urlsafe(32)  # the audit trail of this scratch database only
        audit.configure(url, audit.AuditKeys((key,)))
        fieldcal = fieldcal_side(work / "fieldcal", events, url)
        fieldcal = dataclasses.replace(fieldcal, env={**fieldcal.env, "FIELDCAL_AUDIT_KEYS": key})
        sides = [stock, fieldcal, floor_side(stock, work / "floor", size, "warning")]
        servers: list[Server] = []
        stack.callback(stop_all, servers)
        for side in sides:
            servers.append(_serve(side, work))
        clients = {side.name: Client(side.name, server.port, "tech", side.password, side.prefix)
                   for side, server in zip(sides, servers, strict=True)}
        for client in clients.values():
            stack.callback(client.close)
        unchanged = _rounds({name: _listing_step(client, size)
                             for name, client in clients.items()}, warmups, repeats)
        changed = _rounds({name: _after_change(Operations(clients[name], events), size)
                           for name in ("stock", "fieldcal")}, warmups, repeats)
    fast = unchanged["fieldcal"]
    lines.append(f"| {size:,} | unchanged | {unchanged['stock']:.1f} | {unchanged['floor']:.1f} | "
                 f"{fast:.1f} | {unchanged['floor'] / fast:.1f}× | {unchanged['stock'] / fast:.1f}× |")
    after = changed["fieldcal"]
    lines.append(f"| {size:,} | after a change | {changed['stock']:.1f} | — | {after:.1f} | "
                 f"{unchanged['floor'] / after:.1f}× | {changed['stock'] / after:.1f}× |")
    return lines


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    parser = argparse.ArgumentParser(prog="python -m bench.propfind", description=__doc__)
    parser.add_argument("--events", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmups", type=int, default=3)
    parser.add_argument("--postgres", nargs="?", const=DEFAULT_POSTGRES, metavar="SERVER_URL")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    load_before = os.getloadavg()
    rows: list[str] = []
    for size in args.events:
        print(f"== {size:,} events", flush=True)
        rows += run_size(size, generate(size), args.postgres, args.warmups, args.repeats)
    database = "PostgreSQL" if args.postgres else "SQLite"
    text = "\n".join([
        f"PROPFIND Depth 1, medians of {args.repeats} rounds (ms); fieldcal on {database}",
        "",
        "| events | calendar | stock | floor | fieldcal | floor / fieldcal | stock / fieldcal |",
        "|---:|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"{os.cpu_count()} CPUs; 1/5/15-minute load average {' '.join(f'{v:.1f}' for v in load_before)}"
        f" before, {' '.join(f'{v:.1f}' for v in os.getloadavg())} after",
    ])
    print("\n" + text)
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "results.md").write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
