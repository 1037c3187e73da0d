"""Markdown tables of the results (printed, and pasted into the README)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from radicale import VERSION as RADICALE_VERSION

from bench.caldav_bench import Timing
from bench.servers import GunicornSettings

STOCK = "stock"
FIELDCAL = "fieldcal"
FLOOR = "floor"
FLOOR_OPERATION = "PROPFIND depth 1"
FLOOR_PUT = "PUT one event"
FLOOR_PUT_TARGET = 1.5
TARGET_EVENTS = 10_000
FAST_TARGETS = {  # operation -> fieldcal at least this many times faster than stock at 10,000
    "PUT one event": 100.0, "calendar-query (1 week)": 100.0,
    "sync-collection (1 change)": 50.0, "GET whole calendar": 50.0,
    "sync-collection, empty token (warm)": 10.0,
}
SCALE_TARGETS = {"PUT one event": 1.5, "calendar-query (1 week)": 1.3,
                 "sync-collection (1 change)": 1.5}
MEMORY_EVENTS = 50_000
MEMORY_TARGET_MIB = 100


@dataclass
class RunResult:
    events: int
    timings: list[Timing]
    seed_s: dict[str, float]
    peak_rss_kib: dict[str, int]

    def get(self, operation: str, server: str) -> Timing:
        for timing in self.timings:
            if timing.operation == operation and timing.server == server:
                return timing
        raise KeyError((operation, server))

    def operations(self) -> list[str]:
        seen: list[str] = []
        for timing in self.timings:
            if timing.operation not in seen:
                seen.append(timing.operation)
        return seen


def _ms(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def side_by_side(result: RunResult) -> str:
    rows = []
    for operation in result.operations():
        stock = result.get(operation, STOCK)
        ours = result.get(operation, FIELDCAL)
        rows.append([operation, _ms(stock.median_ms), _ms(ours.median_ms),
                     f"{stock.median_ms / ours.median_ms:,.1f}×", f"{ours.items:,}"])
    header = ["operation", "stock Radicale ms", "fieldcal ms", "stock / fieldcal", "items"]
    text = f"**{result.events:,} events** (median ms)\n\n" + table(rows, header)
    for operation in (FLOOR_OPERATION, FLOOR_PUT):
        try:
            floor = result.get(operation, FLOOR).median_ms
        except KeyError:
            continue
        ours_ms = result.get(operation, FIELDCAL).median_ms
        text += (f"\n\n{operation} on Radicale over a zero-cost in-memory storage "
                 f"(bench/floor.py, the floor for any storage plugin): {_ms(floor)} ms; fieldcal "
                 f"is {_ms(ours_ms - floor)} ms ({(ours_ms - floor) / floor:+.0%}) above it.")
    return text


def scaling(small: RunResult, large: RunResult) -> str:
    rows = []
    for operation in small.operations():
        if operation not in large.operations():
            continue
        a = small.get(operation, FIELDCAL).median_ms
        b = large.get(operation, FIELDCAL).median_ms
        rows.append([operation, _ms(a), _ms(b), f"{b / a:.2f}×"])
    header = ["operation", f"fieldcal {small.events:,}", f"fieldcal {large.events:,}",
              f"{large.events // 1000}k / {small.events // 1000}k"]
    return table(rows, header)


def memory(results: Sequence[RunResult]) -> str:
    rows = [[f"{r.events:,}", f"{r.peak_rss_kib[STOCK] / 1024:.0f}",
             f"{r.peak_rss_kib[FIELDCAL] / 1024:.0f}"] for r in results]
    return table(rows, ["events", "stock worker peak RSS MiB", "fieldcal worker peak RSS MiB"])


def seeding(results: Sequence[RunResult]) -> str:
    rows = [[f"{r.events:,}", f"{r.seed_s[STOCK]:.1f}", f"{r.seed_s[FIELDCAL]:.1f}"]
            for r in results]
    return table(rows, ["events", "stock: write .ics files s", "fieldcal: put_item via domain s"])


def targets(small: RunResult | None, results: Sequence[RunResult]) -> str:
    large = next((r for r in results if r.events == TARGET_EVENTS),
                 max(results, key=lambda r: r.events))
    rows = []
    for operation, wanted in FAST_TARGETS.items():
        try:
            ratio = large.get(operation, STOCK).median_ms / large.get(operation, FIELDCAL).median_ms
        except KeyError:
            continue
        rows.append([f"{operation}: ≥{wanted:.0f}× stock at {large.events:,}",
                     f"{ratio:,.1f}×", "met" if ratio >= wanted else "NOT met"])
    if small is not None and small is not large:
        for operation, limit in SCALE_TARGETS.items():
            growth = (large.get(operation, FIELDCAL).median_ms
                      / small.get(operation, FIELDCAL).median_ms)
            rows.append([f"{operation}: {large.events // 1000}k within {limit}× of "
                         f"{small.events // 1000}k", f"{growth:.2f}×",
                         "met" if growth <= limit else "NOT met"])
    try:
        put_floor = large.get(FLOOR_PUT, FLOOR).median_ms
        ours = large.get(FLOOR_PUT, FIELDCAL).median_ms
        rows.append([f"{FLOOR_PUT}: within {FLOOR_PUT_TARGET}× of Radicale over zero-cost "
                     f"storage at {large.events:,}", f"{ours / put_floor:.2f}× ({_ms(put_floor)} ms)",
                     "met" if ours <= FLOOR_PUT_TARGET * put_floor else "NOT met"])
        floor = large.get(FLOOR_OPERATION, FLOOR).median_ms
        ours = large.get(FLOOR_OPERATION, FIELDCAL).median_ms
        rows.append([f"{FLOOR_OPERATION}: as fast as Radicale allows at {large.events:,}",
                     f"{ours / floor:.2f}× Radicale's floor", "see the profile"])
    except KeyError:
        pass
    for result in results:
        if result.events >= MEMORY_EVENTS:
            mib = result.peak_rss_kib[FIELDCAL] / 1024
            rows.append([f"fieldcal worker peak ≤ {MEMORY_TARGET_MIB} MiB at {result.events:,}",
                         f"{mib:.0f} MiB", "met" if mib <= MEMORY_TARGET_MIB else "NOT met"])
    return table(rows, ["target", "measured", ""])


def stock_alone(result: RunResult) -> str:
    rows = [[t.operation, _ms(t.median_ms), f"{t.items:,}"]
            for t in result.timings if t.server == STOCK]
    return f"**{result.events:,} events** (median ms)\n\n" + table(
        rows, ["operation", "stock Radicale ms", "items"])


def render(results: Sequence[RunResult], profiles: Sequence[str], stock_only: bool,
           database: str, settings: GunicornSettings, machine: str) -> str:
    parts = [f"## CalDAV benchmark: stock Radicale {RADICALE_VERSION} (multifilesystem) vs "
             f"fieldcal ({database})",
             f"gunicorn --workers {settings.workers} (sync workers, same settings for both); "
             "one calendar; median of the timed runs; ratio > 1 means fieldcal is faster. "
             f"Machine: {machine}."]
    if stock_only:
        parts += [stock_alone(r) for r in results]
    else:
        parts += _comparison(results)
    if profiles:
        parts += ["## Profile", *profiles]
    return "\n\n".join(parts) + "\n"


def _comparison(results: Sequence[RunResult]) -> list[str]:
    parts = [side_by_side(r) for r in results]
    small = next((r for r in results if r.events == min(x.events for x in results)), None)
    large = max(results, key=lambda r: r.events)
    if small is not None and small is not large:
        parts += ["**fieldcal scaling**", scaling(small, large)]
    parts += ["**Targets**", targets(small if small is not large else None, results)]
    parts += ["**Peak memory of a gunicorn worker (VmHWM)**", memory(results)]
    parts += ["**Seeding (not timed above)**", seeding(results)]
    return parts
