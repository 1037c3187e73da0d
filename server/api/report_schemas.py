"""What /api/v1 accepts and answers for reports and exports (declared once, like schemas.py)."""

from __future__ import annotations

import datetime as dt

from pydantic import AwareDatetime, BaseModel, Field

from server.api.schemas import Strict
from server.exports import Format

RANGE_HELP = ("A date (its midnight in the business's zone; as `to`, the whole day counts) or a "
              "time with a zone.")


class ReportQuery(Strict):
    from_: AwareDatetime | dt.date = Field(alias="from", description=RANGE_HELP)
    to: AwareDatetime | dt.date = Field(description=RANGE_HELP)
    team: str | None = Field(None, max_length=64, description="Team slug: only its technicians.")
    technician: str | None = Field(None, max_length=64, description="Technician login.")


class ReportOut(BaseModel):
    metric: str = Field(description="The metric's name (see the README's Reports section).")
    start: AwareDatetime = Field(description="The range's start (included).")
    end: AwareDatetime = Field(description="The range's end (excluded).")
    team: str | None
    technician: str | None
    columns: list[str] = Field(description="The names of each row's cells, in order.")
    rows: list[list[int | float | str | None]]
    summary: dict[str, int | float | str | None] = Field(description="The numbers that sum it up.")
    timezone: str = Field(description="The business's zone (dates in the query are read there).")


class ExportQuery(Strict):
    format: Format = Field(description="csv (RFC 4180), ndjson or ics (visits only).")
    from_: AwareDatetime | dt.date | None = Field(None, alias="from", description=RANGE_HELP)
    to: AwareDatetime | dt.date | None = Field(None, description=RANGE_HELP)
    bom: bool = Field(False, description="CSV: start with a UTF-8 byte order mark (Excel).")


class ExportQueued(BaseModel):
    """A large export runs in the background: fetch `download` until it answers 200."""

    id: str
    status: str = Field(description="waiting, ready or failed.")
    rows: int | None = Field(None, description="How many rows it holds (when it was queued).")
    download: str = Field(description="Where the file will be (same key; 202 until it is ready).")
