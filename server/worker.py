"""The outbox worker: delivers what the write path queued, after it committed.

A cycle claims due messages (pending, or "sending" whose claim lease ran out),
hands each to the handler registered for its kind, and records the outcome:
sent; or retried later with exponential backoff and jitter; or, after
`max_attempts`, dead-lettered. Claims are short write transactions (PostgreSQL:
`FOR UPDATE SKIP LOCKED`, so several workers on several hosts share the queue;
SQLite: `BEGIN IMMEDIATE`), and delivery happens outside any transaction.
Messages of a kind nobody handles yet stay pending (and are logged), never dropped.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import InterfaceError, OperationalError

from server.db import Database
from server.models import OutboxMessage, utcnow

log = logging.getLogger("fieldcal.worker")

PENDING = "pending"
SENDING = "sending"
SENT = "sent"
DEAD = "dead"

ENTRY_POINT_GROUP = "fieldcal.outbox"
MAX_ERROR_CHARS = 2000
UNHANDLED_REPORT_INTERVAL_S = 300.0
MAX_OUTAGE_PAUSE_S = 60.0


@dataclass(frozen=True)
class Delivery:
    """One claimed message, as a handler sees it. `attempt` counts from 1."""

    id: int
    kind: str
    payload: dict[str, Any]
    idempotency_key: str
    attempt: int


Handler = Callable[[Delivery], None]

HANDLERS: dict[str, Handler] = {}


class PermanentFailure(Exception):
    """Raised by a handler when retrying cannot help: the message is dead-lettered at once."""


class RetryLater(Exception):
    """Raised by a handler to be tried again after `delay`; an uncounted retry (a platform's
    429, a paused integration) does not bring the message closer to dead-lettering."""

    def __init__(self, reason: str, delay: dt.timedelta, *, counted: bool = False) -> None:
        super().__init__(reason)
        self.delay = delay
        self.counted = counted


def register(kind: str) -> Callable[[Handler], Handler]:
    """Decorator: make `handler` the deliverer of outbox messages of `kind`."""

    def decorate(handler: Handler) -> Handler:
        HANDLERS[kind] = handler
        return handler

    return decorate


def load_handlers() -> dict[str, Handler]:
    """Registered handlers plus those published under the `fieldcal.outbox` entry point group."""
    handlers = dict(HANDLERS)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        handlers.setdefault(entry.name, entry.load())
    return handlers


@dataclass(frozen=True)
class RetryPolicy:
    base_delay_s: float = 30.0
    max_delay_s: float = 3600.0
    max_attempts: int = 10
    lease_s: float = 300.0  # a claim older than this is considered abandoned

    def delay(self, attempts: int, rng: random.Random) -> dt.timedelta:
        """Backoff before the next try after `attempts` failures: half fixed, half jitter."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2 ** max(attempts - 1, 0))
        return dt.timedelta(seconds=ceiling / 2 + rng.uniform(0, ceiling / 2))


@dataclass
class Stats:
    sent: int = 0
    retried: int = 0
    dead: int = 0
    lost: int = 0  # claims another worker took over after our lease ran out

    @property
    def processed(self) -> int:
        return self.sent + self.retried + self.dead + self.lost

    def add(self, other: Stats) -> None:
        self.sent += other.sent
        self.retried += other.retried
        self.dead += other.dead
        self.lost += other.lost


@dataclass
class Periodic:
    """A chore the worker runs every `interval_s` seconds before it claims messages,
    e.g. a scan that enqueues messages that are due by time. `run` gets the worker's clock."""

    name: str
    interval_s: float
    run: Callable[[dt.datetime], object]
    last_run: float = field(default=float("-inf"), compare=False)

    def due(self, monotonic_now: float) -> bool:
        return monotonic_now - self.last_run >= self.interval_s


@dataclass
class Worker:
    database: Database
    handlers: Mapping[str, Handler] = field(default_factory=load_handlers)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    batch_size: int = 20
    poll_interval_s: float = 1.0
    clock: Callable[[], dt.datetime] = utcnow
    rng: random.Random = field(default_factory=random.Random)
    report_interval_s: float = UNHANDLED_REPORT_INTERVAL_S
    periodic: tuple[Periodic, ...] = ()
    on_dead: Callable[[Delivery, str], None] | None = None  # told after a message is dead-lettered
    waiting_without_handler: dict[str, int] = field(default_factory=dict, init=False)
    _last_report: float = field(default=float("-inf"), init=False)
    _last_dead_error: str = field(default="", init=False)

    def run_once(self) -> Stats:
        """Run the chores that are due, then claim one batch and deliver it."""
        self._report_unhandled()
        self._run_periodic()
        stats = Stats()
        for delivery in self.claim():
            stats.add(self.deliver(delivery))
        return stats

    def run(self, *, stop: threading.Event | None = None, stop_after: float | None = None) -> Stats:
        """Cycle until `stop` is set or `stop_after` seconds have passed; idle cycles sleep."""
        stop = stop or threading.Event()
        deadline = None if stop_after is None else time.monotonic() + stop_after
        total = Stats()
        outages = 0
        while not stop.is_set():
            pause = self.poll_interval_s
            try:
                stats = self.run_once()
            except (OperationalError, InterfaceError) as exc:
                # The database is away (restart, network, lock timeout): wait and go on.
                # A claim whose outcome could not be written is retried after its lease.
                outages += 1
                pause = min(MAX_OUTAGE_PAUSE_S, self.poll_interval_s * 2 ** outages)
                log.warning("database unavailable (%s); trying again in %.1f s",
                            str(exc.orig or exc).strip().splitlines()[0], pause)
                stats = Stats()
            else:
                outages = 0
                total.add(stats)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            if outages or stats.processed < self.batch_size:
                stop.wait(pause if remaining is None else min(pause, remaining))
        return total

    def claim(self) -> list[Delivery]:
        """Take up to `batch_size` due messages for this worker (one short transaction)."""
        kinds = sorted(self.handlers)
        if not kinds:
            return []
        now = self.clock()
        with self.database.write() as session:
            messages = session.scalars(
                select(OutboxMessage)
                .where(
                    OutboxMessage.status.in_((PENDING, SENDING)),
                    OutboxMessage.next_attempt_at <= now,
                    OutboxMessage.kind.in_(kinds),
                )
                .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
                .limit(self.batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            deliveries = []
            for message in messages:
                if message.status == SENDING:
                    log.warning("outbox message %s: previous claim expired, trying again", message.id)
                message.status = SENDING
                message.attempts += 1
                message.next_attempt_at = now + dt.timedelta(seconds=self.policy.lease_s)
                deliveries.append(
                    Delivery(
                        id=message.id,
                        kind=message.kind,
                        payload=dict(message.payload or {}),
                        idempotency_key=message.idempotency_key,
                        attempt=message.attempts,
                    )
                )
        return deliveries

    def deliver(self, delivery: Delivery) -> Stats:
        """Run the handler of a claimed message and record the outcome."""
        stats = self._deliver(delivery)
        if stats.dead and self.on_dead is not None:
            try:
                self.on_dead(delivery, self._last_dead_error)
            except (OperationalError, InterfaceError):
                log.warning("could not raise the alert for dead-lettered message %s", delivery.id)
        return stats

    def _deliver(self, delivery: Delivery) -> Stats:
        handler = self.handlers[delivery.kind]
        error: str | None = None
        permanent = False
        try:
            handler(delivery)
        except PermanentFailure as exc:
            error, permanent = f"permanent failure: {exc}", True
        except RetryLater as exc:
            return self._postpone(delivery, exc)
        except Exception as exc:  # any handler failure is retried; it must not stop the others
            error = f"{type(exc).__name__}: {exc}"
            log.warning("outbox message %s (%s) attempt %s failed: %s",
                        delivery.id, delivery.kind, delivery.attempt, error, exc_info=True)
        return self._finish(delivery, error, permanent=permanent)

    def _finish(self, delivery: Delivery, error: str | None, *, permanent: bool) -> Stats:
        stats = Stats()
        now = self.clock()
        with self.database.write() as session:
            message = session.get(OutboxMessage, delivery.id, with_for_update=True)
            if message is None or message.status != SENDING or message.attempts != delivery.attempt:
                log.warning("outbox message %s: claim was taken over; outcome not recorded",
                            delivery.id)
                stats.lost += 1
                return stats
            if error is None:
                message.status = SENT
                message.last_error = ""
                stats.sent += 1
            elif permanent or message.attempts >= self.policy.max_attempts:
                message.status = DEAD
                message.last_error = error[:MAX_ERROR_CHARS]
                self._last_dead_error = message.last_error
                stats.dead += 1
                log.error("outbox message %s (%s) dead-lettered after %s attempt(s): %s",
                          message.id, message.kind, message.attempts, error)
            else:
                message.status = PENDING
                message.last_error = error[:MAX_ERROR_CHARS]
                message.next_attempt_at = now + self.policy.delay(message.attempts, self.rng)
                stats.retried += 1
        return stats

    def _postpone(self, delivery: Delivery, retry: RetryLater) -> Stats:
        stats = Stats()
        with self.database.write() as session:
            message = session.get(OutboxMessage, delivery.id, with_for_update=True)
            if message is None or message.status != SENDING or message.attempts != delivery.attempt:
                stats.lost += 1
                return stats
            message.status = PENDING
            message.last_error = f"retry later: {retry}"[:MAX_ERROR_CHARS]
            message.next_attempt_at = self.clock() + retry.delay
            if not retry.counted:
                message.attempts -= 1
            stats.retried += 1
        return stats

    def _run_periodic(self) -> None:
        for chore in self.periodic:
            if not chore.due(time.monotonic()):
                continue
            chore.last_run = time.monotonic()
            try:
                chore.run(self.clock())
            except (OperationalError, InterfaceError):
                raise  # the database is away: run() waits and tries again
            except Exception:  # a failing chore must not stop deliveries; it runs again next time
                log.exception("periodic chore %s failed", chore.name)

    def _report_unhandled(self) -> None:
        """Note pending messages nobody can deliver yet; log each such kind once."""
        if time.monotonic() - self._last_report < self.report_interval_s:
            return
        self._last_report = time.monotonic()
        query = select(OutboxMessage.kind, func.count()).where(OutboxMessage.status == PENDING)
        if self.handlers:
            query = query.where(OutboxMessage.kind.not_in(sorted(self.handlers)))
        with self.database.read() as session:
            waiting = {kind: count for kind, count in session.execute(query.group_by(OutboxMessage.kind))}
        for kind, count in sorted(waiting.items()):
            if kind not in self.waiting_without_handler:
                log.warning("%d outbox message(s) of kind %r wait: no handler is registered for "
                            "it; they stay pending until one is", count, kind)
        self.waiting_without_handler = waiting
