"""What an export is: its kind, its format, its range; and its audit entry."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from server import audit
from server.actions import Action
from server.context import Context, operation
from server.errors import InvalidInput

BATCH = 1000  # rows read from the database at a time


class Kind(enum.StrEnum):
    VISITS = "visits"
    JOBS = "jobs"
    CUSTOMERS = "customers"
    AUDIT = "audit"


class Format(enum.StrEnum):
    CSV = "csv"
    NDJSON = "ndjson"
    ICS = "ics"


MEDIA_TYPES = {Format.CSV: "text/csv; charset=utf-8", Format.NDJSON: "application/x-ndjson",
               Format.ICS: "text/calendar; charset=utf-8"}


def media_type(fmt: Format) -> str:
    return MEDIA_TYPES[fmt]


class UnsupportedFormat(InvalidInput):
    """iCalendar holds events: only visits export as .ics."""

    def __init__(self, kind: Kind) -> None:
        super().__init__(f"{kind.value} cannot be exported as iCalendar (only visits can); "
                         "use csv or ndjson.")


@dataclass(frozen=True)
class ExportRequest:
    """What to export. The range (UTC, [start, end)) applies to the visit's start, the job's
    and customer's creation, and the audit entry's time; None = unbounded."""

    kind: Kind
    fmt: Format
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    bom: bool = False  # a UTF-8 byte order mark first, for Excel (CSV only)

    def __post_init__(self) -> None:
        if self.fmt is Format.ICS and self.kind is not Kind.VISITS:
            raise UnsupportedFormat(self.kind)
        for moment in (self.start, self.end):
            if moment is not None and moment.tzinfo is None:
                raise InvalidInput("An export's range needs times with a time zone.")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise InvalidInput("An export's range must end after it starts (`to` after `from`).")

    def describe(self) -> dict[str, str | bool | None]:
        return {"kind": self.kind.value, "format": self.fmt.value,
                "from": self.start.isoformat() if self.start else None,
                "to": self.end.isoformat() if self.end else None, "bom": self.bom}


@operation
def audit_export(ctx: Context, request: ExportRequest) -> None:
    """Write the export's audit entry (who exported what, which range, which format)."""
    audit.record(ctx.session, ctx.actor, Action.EXPORT_RUN, "export", request.kind.value,
                 after=request.describe())
