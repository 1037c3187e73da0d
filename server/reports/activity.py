"""Visits booked, completed, cancelled and rescheduled, by the channel the change came through.

Counted from the audit trail (every change of a visit writes one entry with its channel):
an entry counts when it was written in the range. Booked = `appointment.book` (a
self-booking hold counts when it is made; holds that lapsed unconfirmed are counted apart,
`holds_lapsed` = `appointment.hold.expire`); completed = `appointment.status` entries that
set the job to completed; cancelled = `appointment.cancel`; rescheduled =
`appointment.reschedule`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, case, cast, func, select, union_all
from sqlalchemy.orm import Session

from server.actions import Action
from server.models import Appointment, AuditEntry, JobStatus
from server.reports.base import Filters, Metric, Report, in_scope
from server.reports.progress import appointment_entries, constant, reported

KINDS = ("booked", "completed", "cancelled", "rescheduled", "holds_lapsed")
ACTIONS = (Action.APPOINTMENT_BOOK, Action.APPOINTMENT_STATUS, Action.APPOINTMENT_CANCEL,
           Action.APPOINTMENT_RESCHEDULE, Action.APPOINTMENT_HOLD_EXPIRE)  # in KINDS' order
PLAIN = tuple(action for action in ACTIONS if action != Action.APPOINTMENT_STATUS)


def _counted(filters: Filters, kind: Any, *which: ColumnElement[bool]) -> Select[Any]:
    """Entries per channel and kind, counted from an index alone (unless the visit's
    technician is asked about)."""
    query = (select(AuditEntry.channel.label("channel"), kind.label("kind"), func.count().label("n"))
             .where(*which, AuditEntry.at >= filters.start, AuditEntry.at < filters.end)
             # one action per kind; a kind written as a constant is grouped by channel alone
             # (the action is then not read at all: the index of those entries lacks it)
             .group_by(AuditEntry.channel, *([kind] if kind is AuditEntry.action else [])))
    if filters.scoped:  # only then is the visit itself read (for its technician)
        query = query.join(Appointment, Appointment.id == cast(AuditEntry.entity_id, Integer)).where(
            in_scope(Appointment.technician_id, filters))
    return query


def visits_by_channel(session: Session, filters: Filters) -> Report:
    entries = union_all(
        _counted(filters, AuditEntry.action, appointment_entries(*PLAIN)),
        _counted(filters, constant(Action.APPOINTMENT_STATUS), reported(JobStatus.COMPLETED)),
    ).subquery("entries")
    counts = [func.sum(case((entries.c.kind == constant(action), entries.c.n), else_=0))
              for action in ACTIONS]
    query = select(entries.c.channel, *counts).group_by(entries.c.channel).order_by(entries.c.channel)
    rows = [(channel, *(int(n or 0) for n in numbers)) for channel, *numbers in session.execute(query)]
    summary = {kind: sum(int(row[i + 1] or 0) for row in rows) for i, kind in enumerate(KINDS)}
    return Report(Metric.VISITS, filters, ("channel", *KINDS), rows, dict(summary))
