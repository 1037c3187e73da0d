"""One read of the change log per wake-up for all the streams of a process.

When a change commits, every stream of a process wakes at once; each reading the log
on its own would take as many database connections at that moment (100 streams on 14
processes: past PostgreSQL's default 100 connections). Streams of one process read
through one `SharedReader` instead: the first to wake queries, the others take what it
found when that query started after they woke (so it holds every change committed
before they woke) and its answer was complete. A stream far behind (replaying after a
reconnect) queries for itself.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import select

from server import changes
from server.db import Database
from server.models import Appointment


@dataclass(frozen=True)
class Batch:
    started: float  # time.monotonic() when its query began
    after: int  # the position it read after
    events: tuple[changes.Event, ...]
    uids: dict[str, str]  # appointment id -> uid, for the appointments among the events
    complete: bool  # fewer than the limit were found: nothing else was committed by `started`


def appointment_uids(database: Database, events: list[changes.Event]) -> dict[str, str]:
    ids = {int(e.entity_id) for e in events if e.entity == "appointment" and e.entity_id.isdigit()}
    if not ids:
        return {}
    with database.read() as session:
        rows = session.execute(select(Appointment.id, Appointment.uid)
                               .where(Appointment.id.in_(ids))).all()
    return {str(i): uid for i, uid in rows}


@dataclass
class SharedReader:
    database: Database
    limit: int
    queries: int = 0  # how many times the log was read (for tests and benchmarks)
    _last: Batch | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def read(self, after: int, woke: float) -> tuple[list[changes.Event], dict[str, str]]:
        """Changes after `after` committed before `woke` (a time.monotonic()), and more."""
        with self._lock:
            last = self._last
            if last is not None and last.started >= woke and last.complete and last.after <= after:
                return [e for e in last.events if e.id > after], last.uids
            started = time.monotonic()
            with self.database.read() as session:
                found = changes.events(session, after, self.limit)
            uids = appointment_uids(self.database, found)
            self.queries += 1
            self._last = Batch(started, after, tuple(found), uids, len(found) < self.limit)
            return found, uids
