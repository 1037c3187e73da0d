"""The stored rows a time-range query may match, read in time that does not grow with the calendar.

Short items (spanning at most `SHORT_SPAN_DAYS`, stored bounds) overlap the range only if
they start at most that long before it: a bounded range of the (collection, dtstart)
index. The others (open-ended series, long or unbounded items) come from their own
partial index (`ix_calendar_item_long`, server.models.calendars). Both are read in one
statement (UNION ALL: one round trip, each part on its own index). Rows are given once,
ordered by dtstart (open starts first), as one query over the whole calendar gave them.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, CompoundSelect, Row, Select, bindparam, or_, select, text, union_all
from sqlalchemy.orm import Session

from server.models import CalendarItem
from server.models.calendars import LONG_SPAN_POSTGRESQL, LONG_SPAN_SQLITE, SHORT_SPAN_DAYS

MARGIN = dt.timedelta(days=SHORT_SPAN_DAYS + 1)  # the index condition's text times drop microseconds
EARLIEST = dt.datetime.min.replace(tzinfo=dt.UTC)
COLLECTION = bindparam("collection_id", type_=CalendarItem.collection_id.type)
COMPONENT = bindparam("component", type_=CalendarItem.component.type)
START = bindparam("start_at", type_=CalendarItem.dtend.type)
END = bindparam("end_at", type_=CalendarItem.dtstart.type)
SHORT_FROM = bindparam("short_from", type_=CalendarItem.dtstart.type)


def _overlap(bounded_start: bool, bounded_end: bool) -> list[ColumnElement[bool]]:
    found: list[ColumnElement[bool]] = []
    if bounded_end:
        found.append(or_(CalendarItem.dtstart.is_(None), CalendarItem.dtstart < END))
    if bounded_start:
        found.append(or_(CalendarItem.dtend.is_(None), CalendarItem.dtend > START))
    return found


def _order(row: Row[Any]) -> tuple[bool, dt.datetime]:
    start = row.dtstart
    return (start is not None, start or EARLIEST)


@functools.cache
def _statements(columns: tuple[Any, ...], dialect: str, by_component: bool, bounded_start: bool,
                bounded_end: bool) -> Select[Any] | CompoundSelect:
    """The statement of one query shape, built once: a request only binds its values."""
    query = select(*columns).where(CalendarItem.collection_id == COLLECTION)
    if by_component:
        query = query.where(CalendarItem.component == COMPONENT)
    if not (bounded_start and bounded_end):
        return query.where(*_overlap(bounded_start, bounded_end)).order_by(CalendarItem.dtstart)
    long_span = text(f"({LONG_SPAN_POSTGRESQL if dialect == 'postgresql' else LONG_SPAN_SQLITE})")
    short = query.where(CalendarItem.dtstart >= SHORT_FROM, CalendarItem.dtstart < END,
                        CalendarItem.dtend > START)
    long = query.where(long_span, *_overlap(True, True))
    return union_all(short, long)


def rows_in_range(session: Session, columns: tuple[Any, ...], collection_id: int,
                  component: str | None, start_at: dt.datetime | None,
                  end_at: dt.datetime | None) -> Sequence[Row[Any]]:
    """Rows of `columns` (with href and dtstart) in one collection, of one component if given,
    whose stored bounds overlap [start_at, end_at). Run on the session's connection: plain
    column rows need none of the ORM's result handling."""
    statement = _statements(columns, session.get_bind().dialect.name, component is not None,
                            start_at is not None, end_at is not None)
    values: dict[str, Any] = {"collection_id": collection_id, "component": component,
                              "start_at": start_at, "end_at": end_at}
    if isinstance(statement, Select):
        return session.connection().execute(statement, values).all()
    assert start_at is not None
    values["short_from"] = start_at - MARGIN
    rows = {row.href: row for row in session.connection().execute(statement, values)}
    return sorted(rows.values(), key=_order)
