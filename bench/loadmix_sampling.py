"""What the load mix samples every second while a step runs: the host's CPU (busy share of
all cores, /proc/stat) and load average, and on PostgreSQL pg_stat_activity (active
backends by wait event type) and pg_locks (requests not granted)."""

from __future__ import annotations

import math
import os
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg


@dataclass
class Samples:
    cpu_busy: list[float] = field(default_factory=list)
    load: list[float] = field(default_factory=list)
    pg_active: list[int] = field(default_factory=list)
    pg_waits: Counter[str] = field(default_factory=Counter)
    pg_lock_waits: list[int] = field(default_factory=list)
    pg_lock_kinds: Counter[str] = field(default_factory=Counter)  # locktype/mode of waiting requests


def _cpu_times() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


@contextmanager
def sampling(pg_url: str | None) -> Iterator[Samples]:
    samples, stop = Samples(), threading.Event()

    def run() -> None:
        connection = psycopg.connect(pg_url, autocommit=True) if pg_url else None
        busy, total = _cpu_times()
        try:
            while not stop.wait(1.0):
                now_busy, now_total = _cpu_times()
                samples.cpu_busy.append((now_busy - busy) / max(1, now_total - total))
                busy, total = now_busy, now_total
                samples.load.append(os.getloadavg()[0])
                if connection is None:
                    continue
                rows = connection.execute(
                    "SELECT state, coalesce(wait_event_type, 'CPU') FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall()
                active = [wait for state, wait in rows if state == "active"]
                samples.pg_active.append(len(active))
                samples.pg_waits.update(active)
                waiting = connection.execute(
                    "SELECT l.locktype || ' ' || l.mode FROM pg_locks l JOIN pg_stat_activity a "
                    "ON a.pid = l.pid WHERE NOT l.granted AND a.datname = current_database()"
                    ).fetchall()
                samples.pg_lock_waits.append(len(waiting))
                samples.pg_lock_kinds.update(row[0] for row in waiting)
        finally:
            if connection is not None:
                connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join(timeout=5)


def mean(values: list[float] | list[int]) -> float:
    return sum(values) / len(values) if values else math.nan
