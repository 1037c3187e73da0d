"""The reports read the audit trail through the indexes of revision 0020, on both backends.

The JSON status the reports ask about must be written exactly as the indexes hold it
(SQLite matches an indexed expression by its text, PostgreSQL a partial index by its
predicate): were they to drift apart, every report would still answer right, only slowly.
So the plans are checked. On PostgreSQL (whose plan for a tiny fixture is any plan), the
question is whether the partial index can serve the report at all: within a transaction
that is rolled back, the audit trail keeps only that index, and tables are not scanned.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from reportkit import BUSINESS_ZONE, REPORT_NOW, WEEK_END, WEEK_START, build
from sqlalchemy import event

from server import reports
from server.db import Database
from server.reports import Filters, Metric


@pytest.fixture(scope="module")
def db(database_url: str) -> Iterator[Database]:
    database = Database(build(database_url).url)
    yield database
    database.dispose()


def plan(db: Database, metric: Metric, keep: str) -> str:
    """The plan of the statement the report runs (its last one); on PostgreSQL with `keep`
    the only index of the audit trail."""
    seen: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", grab)
    try:
        with db.read() as session:
            reports.run(session, metric, Filters(WEEK_START, WEEK_END), business_zone=BUSINESS_ZONE,
                        now=REPORT_NOW)
    finally:
        event.remove(db.engine, "before_cursor_execute", grab)
    statement, parameters = seen[-1]
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if db.engine.dialect.name == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            return "\n".join(str(row[3]) for row in cursor.fetchall())
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'audit_entry' AND indexname <> %s "
                       "AND indexname NOT LIKE 'uq_%%' AND indexname NOT LIKE 'pk_%%'", (keep,))
        for (name,) in cursor.fetchall():
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN " + statement, parameters)
        return "\n".join(str(row[0]) for row in cursor.fetchall())
    finally:
        raw.rollback()
        raw.close()


# metric -> (the indexes SQLite reads, the partial index PostgreSQL can read)
EXPECTED = {
    Metric.VISITS: (("ix_audit_report", "ix_audit_progress_at"), "ix_audit_completed"),
    Metric.NO_SHOWS: (("ix_audit_progress",), "ix_audit_attended"),
    Metric.ON_TIME: (("ix_audit_progress",), "ix_audit_on_site"),
}


@pytest.mark.parametrize("metric", list(EXPECTED))
def test_the_audit_trail_is_read_through_the_report_indexes(db: Database, metric: Metric) -> None:
    sqlite, postgresql = EXPECTED[metric]
    found = plan(db, metric, postgresql)
    wanted = sqlite if db.engine.dialect.name == "sqlite" else (postgresql,)
    for index in wanted:
        assert index in found, found
    if db.engine.dialect.name == "sqlite":  # never the table, nor an index without the status
        assert "SCAN audit_entry" not in found, found
        assert "ix_audit_action_at" not in found and "ix_audit_entity" not in found, found
