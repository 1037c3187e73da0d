"""Waking change streams when the change log grows.

Streams read `changes.events()` after the last position they sent; this module
only says when to look again. Every audit entry on PostgreSQL also sends
`NOTIFY fieldcal_changes` (delivered at commit, to every host), and one
listener thread per process turns it into a wake-up; NOTIFY is best-effort, so
streams also look every `PG_POLL_S` seconds. SQLite has no notifications: its
streams look every `SQLITE_POLL_S` seconds (one indexed query each).
"""

from __future__ import annotations

import logging
import threading
import time

from server.db import Database

log = logging.getLogger(__name__)

CHANNEL = "fieldcal_changes"
PG_POLL_S = 3.0
SQLITE_POLL_S = 0.4
LISTEN_RETRY_S = 5.0


class Wakeup:
    """A counter that rises on every notification; waiters wake on a rise or a timeout."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.poll_s = SQLITE_POLL_S if database.is_sqlite else PG_POLL_S
        self._condition = threading.Condition()
        self._count = 0
        self._listener: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def count(self) -> int:
        with self._condition:
            return self._count

    def wait(self, seen: int, timeout: float) -> int:
        """Block until the counter passes `seen` or `timeout` (capped at the poll interval)."""
        self._start_listener()
        with self._condition:
            self._condition.wait_for(lambda: self._count != seen,
                                     timeout=max(0.0, min(timeout, self.poll_s)))
            return self._count

    def notify(self) -> None:
        with self._condition:
            self._count += 1
            self._condition.notify_all()

    def stop(self) -> None:
        self._stop.set()

    def _start_listener(self) -> None:
        if self.database.is_sqlite or self._listener is not None:
            return
        with self._condition:
            if self._listener is None:
                self._listener = threading.Thread(target=self._listen, name="change-listener",
                                                  daemon=True)
                self._listener.start()

    def _listen(self) -> None:
        import psycopg  # PostgreSQL only: a SQLite deployment never loads the driver

        url = self.database.engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        for _ in connection.notifies(timeout=1.0, stop_after=1):
                            self.notify()
            except psycopg.Error as exc:
                log.warning("change listener lost its connection (%s); streams poll every "
                            "%.0f s until it is back", type(exc).__name__, self.poll_s)
                time.sleep(LISTEN_RETRY_S)
