"""PUT rounds alone over gunicorn: stock Radicale, Radicale's floor and fieldcal, side by side.

`python -m bench.put_rounds [--events 10000] [--repeats 15] [--pause 0] [--no-stock]`
seeds the three servers as `bench/run.sh` does (SQLite), starts each with 2 gunicorn sync
workers, then times rounds of one new-event PUT per server in turn
(`bench.caldav_bench.measure`, after 3 untimed rounds) and prints the medians and ratios.
Unlike `bench/run.sh`, nothing runs before the PUTs: stock Radicale's worker has not served
the cold first sync. `--pause S` sleeps S seconds before each request, to show what an idle
machine adds to one request.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from bench.caldav_bench import Operations, Plan, measure
from bench.client import Client, Reply
from bench.events import generate
from bench.servers import GunicornSettings, start
from bench.sides import Side, fieldcal_side, floor_side, stock_side

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "bench" / ".work" / "put_rounds"
WARMUPS = 3


def _after_a_pause(pause_s: float, ops: Operations) -> Callable[[], tuple[Reply, int]]:
    def step() -> tuple[Reply, int]:
        time.sleep(pause_s)
        return ops.put_new()
    return step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.put_rounds", description=__doc__)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds of idle before each request (default none)")
    parser.add_argument("--no-stock", action="store_true", help="the floor and fieldcal only")
    args = parser.parse_args(argv)
    shutil.rmtree(WORK, ignore_errors=True)
    for name in ("stock", "floor", "fieldcal"):
        (WORK / name).mkdir(parents=True)
    events = generate(args.events)
    stock = stock_side(WORK / "stock", events, "warning")
    sides: list[Side] = [] if args.no_stock else [stock]
    sides += [floor_side(stock, WORK / "floor", args.events, "warning"),
              fieldcal_side(WORK / "fieldcal", events, f"sqlite:///{WORK / 'fieldcal.sqlite3'}")]
    steps = {}
    with ExitStack() as stack:
        for side in sides:
            server = start(side.name, side.app, side.env, GunicornSettings(workers=2),
                           WORK / f"{side.name}.log", port=side.port, cwd=REPO,
                           ready_path=f"{side.prefix}/")
            stack.callback(server.stop)
            steps[side.name] = _after_a_pause(args.pause, Operations(
                Client(side.name, server.port, "tech", side.password, side.prefix), events))
        timings = measure("PUT one event", steps, Plan(WARMUPS, args.repeats))
    medians = {timing.server: timing.median_ms for timing in timings}
    print(f"PUT one new event, {args.events:,} events, medians of {args.repeats} rounds, "
          f"pause {args.pause} s")
    for name, median in medians.items():
        print(f"  {name:>8}  {median:9.2f} ms")
    print(f"  fieldcal / floor {medians['fieldcal'] / medians['floor']:.2f}×")
    if "stock" in medians:
        print(f"  stock / fieldcal {medians['stock'] / medians['fieldcal']:.1f}×, "
              f"stock / floor {medians['stock'] / medians['floor']:.1f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
