"""Time-range rows (plugins.radicale.time_range): the same rows as one query over the whole
calendar, short and long items, open bounds, edges, and never another collection's items;
the long-item index is used."""

from __future__ import annotations

import datetime as dt

from seeding import Seed, domain, fresh_technician, personal_event, put_personal
from sqlalchemy import or_, select

from plugins.radicale.collection import ITEM_COLUMNS
from plugins.radicale.time_range import rows_in_range
from server import calendars
from server.db import Database
from server.models import CalendarItem

BASE = dt.datetime(2031, 6, 2, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


def _floating(uid: str, start: dt.datetime) -> str:
    return personal_event(uid, "Floating", start, start + HOUR).replace(
        f"DTSTART:{start:%Y%m%dT%H%M%SZ}", f"DTSTART:{start:%Y%m%dT%H%M%S}").replace(
        f"DTEND:{(start + HOUR):%Y%m%dT%H%M%SZ}", f"DTEND:{(start + HOUR):%Y%m%dT%H%M%S}")


def test_rows_match_the_whole_calendar_query(db: Database, seed: Seed) -> None:
    mine = fresh_technician(db, seed, "tr", []).account.login
    other = fresh_technician(db, seed, "to", []).account.login
    events: list[tuple[str, str]] = []
    for day in range(-12, 12):  # one-hour items every day, some at the window's edges
        begin = BASE + day * DAY + 9 * HOUR
        events.append((f"d{day}", personal_event(f"d{day}", "Day", begin, begin + HOUR)))
    for days in (3, 4, 5, 6, 10, 40):  # multi-day items that end inside the window
        begin = BASE - days * DAY + HOUR
        events.append((f"long{days}", personal_event(f"long{days}", "Long", begin,
                                                     begin + (days + 1) * DAY)))
    events.append(("weekly", personal_event("weekly", "Weekly", BASE - 300 * DAY,
                                            BASE - 300 * DAY + HOUR, rrule="FREQ=WEEKLY")))
    events.append(("counted", personal_event("counted", "Counted", BASE - 60 * DAY,
                                             BASE - 60 * DAY + HOUR, rrule="FREQ=DAILY;COUNT=70")))
    events.append(("floating", _floating("floating", BASE + 2 * DAY)))
    with domain(db) as ctx:
        for href, text in events:
            put_personal(ctx, mine, f"{href}.ics", text)
            put_personal(ctx, other, f"{href}.ics", text.replace(f"UID:{href}", f"UID:o-{href}"))
    with db.read() as session:
        collection = calendars.require_collection(session, calendars.personal_path(mine))
        query = select(*ITEM_COLUMNS).where(CalendarItem.collection_id == collection.id)
        windows = [(BASE, BASE + 7 * DAY), (BASE - DAY, BASE), (BASE + 3 * DAY, BASE + 3 * DAY + HOUR),
                   (BASE - 20 * DAY, BASE - 19 * DAY), (BASE, None), (None, BASE), (None, None)]
        for start, end in windows:
            naive = query
            if end is not None:
                naive = naive.where(or_(CalendarItem.dtstart.is_(None), CalendarItem.dtstart < end))
            if start is not None:
                naive = naive.where(or_(CalendarItem.dtend.is_(None), CalendarItem.dtend > start))
            expected = [row.href for row in session.execute(naive)]
            found = [row.href for row in rows_in_range(session, ITEM_COLUMNS, collection.id, None,
                                                       start, end)]
            assert sorted(found) == sorted(expected), (start, end)
            assert len(found) == len(set(found))
            assert [row.href for row in rows_in_range(session, ITEM_COLUMNS, collection.id,
                                                      "VEVENT", start, end)] == found
            assert rows_in_range(session, ITEM_COLUMNS, collection.id, "VTODO", start, end) == []
            starts = [row.dtstart for row in rows_in_range(session, ITEM_COLUMNS, collection.id,
                                                           None, start, end)]
            known = [s for s in starts if s is not None]
            assert known == sorted(known)
        week = [row.href for row in rows_in_range(session, ITEM_COLUMNS, collection.id, None,
                                                  BASE, BASE + 7 * DAY)]
        assert {"d0.ics", "d6.ics", "long40.ics", "weekly.ics", "counted.ics"} <= set(week)
        assert "d8.ics" not in week and "d-2.ics" not in week  # stored bounds: a day wider


def test_long_items_come_from_their_own_index(db: Database) -> None:
    with db.read() as session:
        dialect = session.get_bind().dialect.name
        if dialect == "sqlite":
            plan = session.connection().exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT href FROM calendar_item WHERE collection_id = 1 AND "
                "(calendar_item.dtstart IS NULL OR calendar_item.dtend IS NULL OR "
                "calendar_item.dtend > datetime(calendar_item.dtstart, '+4 days'))").fetchall()
            assert "ix_calendar_item_long" in str(plan)
        else:
            names = session.connection().exec_driver_sql(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_calendar_item_long'"
            ).scalars().all()
            assert names and "interval" in names[0]
