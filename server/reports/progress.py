"""The progress a technician reported, as the audit trail keeps it, in the one form the
report indexes (revision 0020) are built on.

`appointment.status` entries carry the job status they set in `after.job_status` (JSON).
The reports select those entries with `reported(...)`: its constants are written into the
statement, so PostgreSQL matches the partial indexes made for them, and the JSON is read
with the very expression SQLite indexes (`json_extract("after", '$.job_status')`), so
SQLite answers from the index without opening a single audit entry.
"""

from __future__ import annotations

from typing import ClassVar

from sqlalchemy import ColumnElement, String, and_, literal

from server.actions import Action
from server.models import AuditEntry, JobStatus
from server.timesql import Written


class job_status_of(Written):
    """The job status an audit entry's `after` sets (NULL when it sets none)."""

    type = String()
    inherit_cache = True
    name = "job_status_of"
    sql: ClassVar[dict[str, str]] = {"sqlite": "json_extract({0}, '$.job_status')",
                                     "postgresql": "({0} ->> 'job_status')"}


def constant(value: str) -> ColumnElement[str]:
    """A string written into the statement (an index's predicate must see it)."""
    return literal(str(value), String, literal_execute=True)


def appointment_entries(*actions: Action) -> ColumnElement[bool]:
    """Audit entries about appointments with one of `actions`."""
    named = (AuditEntry.action == constant(actions[0]) if len(actions) == 1
             else AuditEntry.action.in_([constant(a) for a in actions]))
    return and_(AuditEntry.entity == constant("appointment"), named)


def reported(*statuses: JobStatus) -> ColumnElement[bool]:
    """`appointment.status` entries that set the job to one of `statuses`."""
    status = job_status_of(AuditEntry.after)
    chosen = (status == constant(statuses[0]) if len(statuses) == 1
              else status.in_([constant(s) for s in statuses]))
    return and_(appointment_entries(Action.APPOINTMENT_STATUS), chosen)
