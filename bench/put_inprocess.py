"""PUT of one new event in process (no HTTP, no gunicorn): CPU time and SQL statements.

`python -m bench.put_inprocess [--events 10000] [--repeats 25] [--postgres URL] [--profile N]`
seeds a scratch database (SQLite, or a scratch PostgreSQL database created on the
server at URL and dropped afterwards), then calls the composed WSGI app through
werkzeug's test client with PUTs of new events (If-None-Match: *), and prints:

- the median CPU time (time.process_time) of one PUT, and its median wall time;
- the SQL statements and transactions of one PUT (counted on the engine);
- the same PUT with the fast path switched off (Radicale's do_PUT over fieldcal's storage),
  measured in the same run for a before/after under the same load;
- the same PUT answered by Radicale over bench.floor's zero-cost storage (the floor);
- the body's two readings alone: Radicale's (vobject, prepare) and the domain's validation.

With `--profile N`, N more PUTs are profiled: their own time grouped by owner, and the top
functions.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from werkzeug.test import Client

from bench.events import generate, new_event
from bench.profiling import partition
from bench.seed import LOGIN, basic_auth, inprocess_app, radicale_config, seed_fieldcal
from bench.sides import scratch_postgres
from plugins.radicale import put_fast
from server.db import get_database

REPO = Path(__file__).resolve().parent.parent
PATH = f"/dav/{LOGIN}/personal/"


@dataclass
class Counter:
    statements: int = 0
    transactions: int = 0
    text: list[str] | None = None

    def attach(self, engine: Engine) -> None:
        @event.listens_for(engine, "before_cursor_execute")
        def on_statement(*args: Any) -> None:
            self.statements += 1
            if self.text is not None:
                self.text.append(" ".join(str(args[2]).split())[:110])

        @event.listens_for(engine, "begin")
        def on_begin(_connection: Any) -> None:
            self.transactions += 1


@dataclass(frozen=True)
class Result:
    cpu_ms: float
    wall_ms: float
    statements: float
    transactions: float


def _measure(put: Callable[[int], None], counter: Counter | None, first: int, repeats: int
             ) -> Result:
    cpu, wall, statements, transactions = [], [], [], []
    for index in range(first, first + repeats):
        if counter is not None:
            counter.statements = counter.transactions = 0
        began_cpu, began = time.process_time(), time.perf_counter()
        put(index)
        cpu.append((time.process_time() - began_cpu) * 1000)
        wall.append((time.perf_counter() - began) * 1000)
        if counter is not None:
            statements.append(counter.statements)
            transactions.append(counter.transactions)
    return Result(statements=statistics.median(statements) if statements else 0,
                  transactions=statistics.median(transactions) if transactions else 0,
                  cpu_ms=statistics.median(cpu), wall_ms=statistics.median(wall))


def _putter(client: Client, prefix: str, password: str) -> Callable[[int], None]:
    headers = {"Authorization": basic_auth(LOGIN, password), "If-None-Match": "*",
               "Content-Type": "text/calendar; charset=utf-8"}

    def put(index: int) -> None:
        item = new_event(index)
        response = client.put(f"{prefix}/{LOGIN}/personal/{item.href}", headers=headers,
                              data=item.to_ics().encode())
        if response.status_code != 201:
            raise RuntimeError(f"PUT answered {response.status_code}: {response.data[:300]!r}")

    return put


def _floor(folder: Path, events: int, password: str) -> Callable[[int], None]:
    from radicale import Application
    from radicale import config as radicale_config_module

    users = folder / "users"
    users.write_text(f"{LOGIN}:{password}\n", encoding="utf-8")
    config_path = folder / "floor.config"
    config_path.write_text(radicale_config(folder, users, "warning", storage="bench.floor"),
                           encoding="utf-8")
    os.environ["BENCH_FLOOR_EVENTS"] = str(events)
    from bench import floor
    floor.calendar(events)
    configuration = radicale_config_module.load([(str(config_path), False)])
    return _putter(Client(Application(configuration)), "", password)


def _parts(repeats: int) -> tuple[float, float]:
    """CPU ms of the two readings of one new event's body, medians: Radicale's (vobject,
    `prepare`, which also make the stored text and the ETag; the floor does it too) and the
    domain's validation (`server.ical.parse_object`)."""
    from radicale import item as radicale_item
    from radicale.app.put import prepare

    from server.ical import parse_object

    text = new_event(0).to_ics()

    def radicale_reading() -> None:
        components = radicale_item.read_components(text)
        items, *_ = prepare(components, PATH + "part.ics", "text/calendar", False, True,
                            len(text) * 2, 0)
        for item in items:
            item.serialize()

    def median_ms(step: Callable[[], object]) -> float:
        step()
        times = []
        for _ in range(repeats):
            began = time.process_time()
            for _ in range(20):
                step()
            times.append((time.process_time() - began) * 1000 / 20)
        return statistics.median(times)

    return median_ms(radicale_reading), median_ms(lambda: parse_object(text))


@contextmanager
def _database(postgres: str | None, folder: Path) -> Iterator[str]:
    if postgres is None:
        yield f"sqlite:///{folder / 'fieldcal.sqlite3'}"
        return
    with scratch_postgres(postgres, f"fieldcal_put_{secrets.token_hex(4)}") as url:
        yield url


def _profile(put: Callable[[int], None], first: int, count: int) -> str:
    profiler = cProfile.Profile()
    for index in range(first, first + count):
        profiler.enable()
        put(index)
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    shares = sorted(partition(stats, REPO).items(), key=lambda share: share[1], reverse=True)
    total = sum(seconds for _, seconds in shares)
    out.write(f"Own time by owner, {total * 1000 / count:.2f} ms per PUT under cProfile:\n")
    out.writelines(f"  {100 * seconds / total:5.1f}%  {label}\n" for label, seconds in shares)
    stats.sort_stats("cumulative").print_stats(45)
    stats.sort_stats("tottime").print_stats(30)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.put_inprocess", description=__doc__)
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--postgres", default=None, help="a PostgreSQL server URL (scratch db)")
    parser.add_argument("--profile", type=int, default=0)
    parser.add_argument("--profile-slow", action="store_true",
                        help="with --profile: also profile PUTs with the fast path off")
    parser.add_argument("--statements", action="store_true", help="print one PUT's statements")
    parser.add_argument("--no-floor", action="store_true")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    folder = Path(tempfile.mkdtemp(prefix="fieldcal-put-"))
    with _database(args.postgres, folder) as url:
        key = secrets.token_urlsafe(32)
        seeded = seed_fieldcal(url, generate(args.events), key)
        app = inprocess_app(folder, url, key)
        put = _putter(Client(app), "/dav", seeded.password)
        counter = Counter()
        counter.attach(get_database(url).engine)
        for index in range(3):  # warm-up: the strict parser's first load, the pools
            put(index)
        if args.statements:
            counter.text = []
            put(3)
            print("\n".join(counter.text))
            counter.text = None
        result = _measure(put, counter, 10, args.repeats)
        with put_fast.disabled():
            slow = _measure(put, counter, 10 + args.repeats, args.repeats)
        kind = "PostgreSQL" if args.postgres else "SQLite"
        print(f"PUT one new event in process, {args.events:,} events, {kind}, "
              f"medians of {args.repeats}")
        print(f"  fieldcal  CPU {result.cpu_ms:6.2f} ms  wall {result.wall_ms:6.2f} ms  "
              f"{result.statements:g} statements, {result.transactions:g} transactions")
        print(f"  no fast path  CPU {slow.cpu_ms:6.2f} ms  wall {slow.wall_ms:6.2f} ms  "
              f"{slow.statements:g} statements (Radicale's do_PUT over fieldcal's storage)")
        if not args.no_floor:
            floor = _floor(folder, args.events, seeded.password)
            for index in range(3):
                floor(index)
            low = _measure(floor, None, 10, args.repeats)
            print(f"  floor     CPU {low.cpu_ms:6.2f} ms  wall {low.wall_ms:6.2f} ms  "
                  f"(fieldcal / floor CPU {result.cpu_ms / low.cpu_ms:.2f}×)")
        radicale_ms, domain_ms = _parts(args.repeats)
        print(f"  the body read alone: by Radicale (vobject, prepare) CPU {radicale_ms:.2f} ms, "
              f"by the domain (validation) CPU {domain_ms:.2f} ms")
        print(f"  load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
        if args.profile:
            with nullcontext():
                print(_profile(put, 1000, args.profile))
                if args.profile_slow:
                    with put_fast.disabled():
                        print(_profile(put, 5000, args.profile))
        get_database(url).dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
