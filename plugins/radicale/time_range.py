"""The stored rows a time-range query may match, read in time that does not grow with the calendar.

Short items (spanning at most `SHORT_SPAN_DAYS`, stored bounds) overlap the range only if
they start at most that long before it: a bounded range of the (collection, dtstart)
index. The others (open-ended series, long or unbounded items) come from their own
partial index (`ix_calendar_item_long`, server.models.calendars). Rows are given once,
ordered by dtstart (open starts first), as one query over the whole calendar gave them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, or_, text
from sqlalchemy.orm import Session

from server.models import CalendarItem
from server.models.calendars import LONG_SPAN_POSTGRESQL, LONG_SPAN_SQLITE, SHORT_SPAN_DAYS

MARGIN = dt.timedelta(days=SHORT_SPAN_DAYS + 1)  # the index condition's text times drop microseconds
EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)


def _overlap(start_at: dt.datetime | None, end_at: dt.datetime | None) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if end_at is not None:
        found.append(or_(CalendarItem.dtstart.is_(None), CalendarItem.dtstart < end_at))
    if start_at is not None:
        found.append(or_(CalendarItem.dtend.is_(None), CalendarItem.dtend > start_at))
    return found


def _order(row: Row[Any]) -> tuple[bool, dt.datetime]:
    start = row.dtstart
    return (start is not None, start or EARLIEST)


def rows_in_range(session: Session, query: Select[Any], start_at: dt.datetime | None,
                  end_at: dt.datetime | None) -> Sequence[Row[Any]]:
    """Rows of `query` (with href and dtstart) whose stored bounds overlap [start_at, end_at).
    Run on the session's connection: plain column rows need none of the ORM's result handling."""
    connection = session.connection()
    if start_at is None or end_at is None:
        return connection.execute(query.where(*_overlap(start_at, end_at))
                                  .order_by(CalendarItem.dtstart)).all()
    dialect = session.get_bind().dialect.name
    long_span = text(f"({LONG_SPAN_POSTGRESQL if dialect == 'postgresql' else LONG_SPAN_SQLITE})")
    short = query.where(CalendarItem.dtstart >= start_at - MARGIN, CalendarItem.dtstart < end_at,
                        CalendarItem.dtend > start_at)
    long = query.where(long_span, *_overlap(start_at, end_at))
    rows = {row.href: row for part in (short, long) for row in connection.execute(part)}
    return sorted(rows.values(), key=_order)
