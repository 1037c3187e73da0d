"""The change log: per-collection sequence numbers, sync deltas with tombstones.

Each collection counts its own changes (`UPDATE ... SET sync_seq = sync_seq + n
RETURNING`), so a sequence value is taken under the row lock and commits in order.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, Table, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from server.models import AuditEntry, Change, Collection, utcnow

COLLECTION = cast("Table", Collection.__table__)
CHANGE = cast("Table", Change.__table__)
# Built once: constructing a statement costs more than executing it (SQLAlchemy's cache
# then finds the compiled form by the statement's key).
ADVANCE = (update(COLLECTION).where(COLLECTION.c.id == bindparam("b_id"))
           .values(sync_seq=COLLECTION.c.sync_seq + bindparam("b_count"),
                   updated_at=bindparam("b_now"))
           .returning(COLLECTION.c.sync_seq))
APPEND = insert(CHANGE)


class TokenExpired(ValueError):
    """The client's sync position is unknown or older than the retained change log."""

    def __init__(self, collection_path: str, seq: int) -> None:
        super().__init__(
            f"sync position {seq} of {collection_path!r} is not in the retained change "
            "log: resynchronise from scratch"
        )
        self.seq = seq


def record(session: Session, collection_id: int, changes: list[tuple[str, str]]) -> int:
    """Append (href, op) changes; op is "put" or "delete". Returns the new sync_seq.

    With no changes, the collection's sync_seq still advances (its properties changed).
    Both statements are Core statements on the session's connection (no ORM objects:
    the rows are append-only and nothing reads them back in the writing transaction).
    """
    count = max(len(changes), 1)
    session.flush()  # what is pending goes first, as with an ORM statement's autoflush
    connection = session.connection()
    now = utcnow()
    new_seq: int = connection.execute(
        ADVANCE, {"b_id": collection_id, "b_count": count, "b_now": now}).scalar_one()
    first = new_seq - count + 1
    if changes:
        connection.execute(APPEND, [
            {"collection_id": collection_id, "seq": first + i, "href": href, "op": op, "at": now}
            for i, (href, op) in enumerate(changes)
        ])
    return new_seq


def since(session: Session, collection: Collection, seq: int) -> list[str]:
    """Hrefs changed after position `seq` (deleted ones included), oldest change first."""
    if seq > collection.sync_seq or seq < collection.pruned_seq:
        raise TokenExpired(collection.path, seq)
    if seq == collection.sync_seq:
        return []
    session.flush()
    rows = session.execute(
        select(Change.href, func.max(Change.seq).label("last"))
        .where(Change.collection_id == collection.id, Change.seq > seq)
        .group_by(Change.href)
        .order_by("last")
    ).all()
    return [href for href, _ in rows]


def prune(session: Session, collection: Collection, keep: int, older_than: dt.timedelta) -> int:
    """Drop change rows beyond the newest `keep` that are also older than `older_than`."""
    horizon = session.execute(
        select(func.max(Change.seq)).where(
            Change.collection_id == collection.id,
            Change.seq <= collection.sync_seq - keep,
            Change.at < utcnow() - older_than,
        )
    ).scalar_one()
    if horizon is None:
        return 0
    result = cast("CursorResult[*tuple[Any, ...]]", session.execute(
        delete(Change).where(Change.collection_id == collection.id, Change.seq <= horizon)
    ))
    collection.pruned_seq = horizon
    return result.rowcount


@dataclass(frozen=True)
class Event:
    """One change as a program sees it: what changed, when, by whom, through which channel."""

    id: int
    at: dt.datetime
    actor: str
    channel: str
    action: str
    entity: str
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def events(session: Session, after: int = 0, limit: int = 100,
           entity: str | None = None) -> list[Event]:
    """Changes after position `after`, oldest first.

    Positions are the audit trail's ids: every domain change writes exactly one entry
    there, and entries are appended under one lock, so ids commit in order and a reader
    that resumes after the last id it saw misses nothing.
    """
    query = select(AuditEntry).where(AuditEntry.id > after).order_by(AuditEntry.id).limit(limit)
    if entity is not None:
        query = query.where(AuditEntry.entity == entity)
    return [Event(e.id, e.at, e.actor, e.channel, e.action, e.entity, e.entity_id, e.before,
                  e.after) for e in session.scalars(query)]
