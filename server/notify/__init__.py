"""Notifications: iMIP email for appointment changes, and reminders before visits.

`setup(settings, database)` gives the worker its outbox handlers and the
periodic reminder scan. Without FIELDCAL_SMTP_URL, messages are still composed
and queued (outbox kind "email") but not sent: they wait, pending, until the
worker runs with an SMTP server configured. Nothing is dropped.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

from server.config import Settings
from server.db import Database
from server.notify.handlers import EMAIL, Notifier
from server.notify.reminders import parse_offsets, scan
from server.worker import Handler, Periodic

log = logging.getLogger("fieldcal.notify")


@dataclass(frozen=True)
class Wiring:
    handlers: dict[str, Handler]
    periodic: tuple[Periodic, ...]


def setup(settings: Settings, database: Database) -> Wiring:
    """Handlers and chores for the outbox worker (fails closed without secret keys)."""
    notifier = Notifier.from_settings(settings, database)
    offsets = parse_offsets(settings.reminders)
    if notifier.smtp is None:
        log.warning("FIELDCAL_SMTP_URL is not set: email is composed and kept in the outbox "
                    "(kind %r, pending) and goes out once a worker runs with an SMTP server", EMAIL)
    else:
        log.info("email goes to %s", notifier.smtp.label)
    periodic: tuple[Periodic, ...] = ()
    if offsets:
        periodic = (Periodic("reminder scan", float(settings.reminder_scan_seconds),
                             functools.partial(scan, database, offsets)),)
    return Wiring(notifier.handlers(), periodic)
