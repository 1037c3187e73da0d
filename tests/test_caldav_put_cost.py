"""What a CalDAV PUT of a new event and a calendar-query cost in SQL, and that the cheaper
write path keeps what it must: the audit chain and its checkpoint, the change log, the UID
check."""

from __future__ import annotations

import dataclasses
import json
import xml.etree.ElementTree as ET  # our own answers, parsed for the check
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from davkit import calendar_query
from live import AUDIT_KEY
from seeding import Seed, at, fresh_technician, items_of, personal_event
from sqlalchemy import event, select, update
from test_radicale_plugin import ICS, as_user, load_wsgi, settings_for
from werkzeug.test import Client

from server import audit, audit_anchor, calendars
from server.actions import Action
from server.actors import SYSTEM
from server.context import Context
from server.db import Database, get_database
from server.models import AuditEntry, Change, Credential, RateLimitBucket, User

# Sign-in (SQLite: BEGIN; both: the throttle, the password), then the write transaction
# (SQLite: BEGIN IMMEDIATE; PostgreSQL: the write lock): the collection, one look-up of the
# href and the UID (plugins.radicale.put_fast), the savepoint, the item, the change log's
# sequence and row, the audit chain's head and entry (PostgreSQL: its lock and the change
# notification, in one statement), the savepoint's release.
STATEMENTS = {"sqlite": 13, "postgresql": 13}


@pytest.fixture(scope="module")
def app(seed: Seed, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_wsgi().create_wsgi_app(settings_for(database_url, tmp_path_factory.mktemp("inst")))


@pytest.fixture(scope="module")
def db(database_url: str, seed: Seed) -> Database:
    return get_database(database_url)


# SQLite: the sign-in's read transaction, then the write (BEGIN IMMEDIATE); PostgreSQL: the
# write goes on in the sign-in's transaction (plugins.radicale.state.signing_in_with_the_request).
TRANSACTIONS = {"sqlite": 2, "postgresql": 1}


@contextmanager
def counted(db: Database) -> Iterator[tuple[list[str], list[str]]]:
    statements: list[str] = []
    begun: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    def begin(_conn: Any) -> None:
        begun.append("begin")

    event.listen(db.engine, "before_cursor_execute", count)
    event.listen(db.engine, "begin", begin)
    try:
        yield statements, begun
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
        event.remove(db.engine, "begin", begin)


def test_a_new_event_is_one_write_of_few_statements(app: Any, db: Database, seed: Seed) -> None:
    made = fresh_technician(db, seed, "putcost", [(at(14, 9), at(14, 10))])
    dav = as_user(Client(app), made.account)
    login = made.account.login
    first = personal_event(f"first-{login}@example.test", "first", at(20, 9), at(20, 10))
    assert dav("PUT", f"/dav/{login}/personal/first.ics", first, **ICS).status_code == 201
    with counted(db) as (statements, begun):
        created = dav("PUT", f"/dav/{login}/personal/new.ics",
                      personal_event(f"new-{login}@example.test", "new", at(21, 9), at(21, 10)),
                      If_None_Match="*", **ICS)
    assert created.status_code == 201
    assert len(statements) == STATEMENTS[db.engine.dialect.name], statements
    assert len(begun) == TRANSACTIONS[db.engine.dialect.name]
    # one look-up of the item at href and of the UID (the fast path's), none by put_item
    item_reads = [s for s in statements if s.startswith("SELECT") and "calendar_item" in s]
    assert len(item_reads) == 1, item_reads
    stored = items_of(db, f"{login}/personal")["new.ics"]
    assert created.headers["ETag"] == stored.etag
    with db.read() as session:
        entry = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
        assert entry is not None and entry.action == Action.ITEM_PUT
        assert entry.after == {"href": "new.ics", "uid": stored.uid, "etag": stored.etag}
        assert entry.actor == login and entry.before is None
        assert list(audit.verify(session)) == []
        change = session.scalars(select(Change).order_by(Change.id.desc())).first()
        assert change is not None and (change.href, change.op) == ("new.ics", "put")
    # the UID of another item is still refused, and a replacement still reads what it replaces
    taken = dav("PUT", f"/dav/{login}/personal/other.ics",
                personal_event(f"first-{login}@example.test", "dup", at(22, 9), at(22, 10)), **ICS)
    assert taken.status_code == 409
    again = dav("PUT", f"/dav/{login}/personal/first.ics",
                personal_event(f"first-{login}@example.test", "v2", at(20, 9), at(20, 10)),
                If_Match=items_of(db, f"{login}/personal")["first.ics"].etag, **ICS)
    assert again.status_code == 204
    assert "SUMMARY:v2" in items_of(db, f"{login}/personal")["first.ics"].text


# The sign-in (the throttle, the password), the collection, the time range's one read
# (both its index parts in one statement). SQLite: the sign-in's read transaction and then
# the request's (each with its BEGIN); PostgreSQL: one transaction for the whole request
# (plugins.radicale.state.signing_in_with_the_request).
QUERY_STATEMENTS = {"sqlite": 6, "postgresql": 4}
QUERY_TRANSACTIONS = {"sqlite": 2, "postgresql": 1}


def test_a_calendar_query_is_few_statements_and_one_transaction_on_postgresql(
        app: Any, db: Database, seed: Seed) -> None:
    made = fresh_technician(db, seed, "querycost", [(at(14, 15), at(14, 16))])
    dav = as_user(Client(app), made.account)
    login = made.account.login
    for day in (20, 21, 40):
        event_ics = personal_event(f"q{day}-{login}@example.test", f"q{day}", at(day, 9), at(day, 10))
        assert dav("PUT", f"/dav/{login}/personal/q{day}.ics", event_ics, **ICS).status_code == 201
    body = calendar_query(at(20, 0), at(22, 0))
    with counted(db) as (statements, begun):
        found = dav("REPORT", f"/dav/{login}/personal/", body, Depth="1",
                    Content_Type="application/xml; charset=utf-8")
    assert found.status_code == 207
    hrefs = [e.text or "" for e in ET.fromstring(found.get_data()).iter("{DAV:}href")]
    assert sorted(hrefs) == [f"/dav/{login}/personal/q20.ics", f"/dav/{login}/personal/q21.ics"]
    assert len(statements) == QUERY_STATEMENTS[db.engine.dialect.name], statements
    assert len(begun) == QUERY_TRANSACTIONS[db.engine.dialect.name]


@pytest.fixture
def checkpoint(db: Database, database_url: str, tmp_path: Path) -> Iterator[Path]:
    """The audit checkpoint file, written after each commit for this test only."""
    path = tmp_path / audit_anchor.CHECKPOINT_FILE_NAME
    with db.read() as session:
        configured = audit.keys_for(session)
    audit.configure(database_url, audit.AuditKeys((AUDIT_KEY,), checkpoint=path))
    audit_anchor.anchor_commits()
    try:
        yield path
    finally:
        audit.configure(database_url, configured)


def test_an_entry_of_a_rolled_back_savepoint_is_not_anchored(
        db: Database, seed: Seed, checkpoint: Path) -> None:
    with db.write() as session:
        ctx = Context(session, SYSTEM, "dispatch@example.test")
        kept = audit.record(session, SYSTEM, Action.ITEM_PUT, "collection", 1,
                            after={"n": "kept"})
        with pytest.raises(RuntimeError), session.begin_nested():
            audit.record(session, SYSTEM, Action.ITEM_PUT, "collection", 1,
                         after={"n": "rolled back"})
            raise RuntimeError("the operation fails after its audit entry")
        assert ctx.session is session
    named = json.loads(checkpoint.read_text())
    assert named["entry_id"] == kept.id
    with db.read() as session:
        head = audit_anchor.head(session)
        assert head is not None and head.id == kept.id and head.hash == kept.hash
        assert list(audit.verify(session)) == []


def test_the_checkpoint_is_written_at_the_commit_not_at_a_savepoint(
        db: Database, seed: Seed, checkpoint: Path) -> None:
    """An operation's savepoint is released inside the transaction: its entry is anchored
    only once the transaction commits, never if the transaction is rolled back after."""
    with pytest.raises(RuntimeError), db.write() as session:
        with session.begin_nested():
            audit.record(session, SYSTEM, Action.ITEM_PUT, "collection", 1,
                         after={"n": "released, then rolled back"})
        assert not checkpoint.exists()  # released: not committed yet
        raise RuntimeError("the request fails after the operation")
    assert not checkpoint.exists()
    with db.write() as session:
        with session.begin_nested():
            kept = audit.record(session, SYSTEM, Action.ITEM_PUT, "collection", 1,
                                after={"n": "committed"})
        assert not checkpoint.exists()
    assert json.loads(checkpoint.read_text())["entry_id"] == kept.id
    with db.read() as session:
        assert list(audit.verify(session)) == []


def test_put_item_returns_the_stored_row_and_expires_a_loaded_copy(
        db: Database, seed: Seed) -> None:
    made = fresh_technician(db, seed, "putrow", [(at(14, 11), at(14, 12))])
    path = calendars.personal_path(made.account.login)
    uid = f"row-{made.account.login}@example.test"
    with db.write() as session:
        ctx = Context(session, SYSTEM, "dispatch@example.test")
        collection = calendars.require_collection(session, path)
        item, replaced = calendars.put_item(
            ctx, collection, "row.ics", personal_event(uid, "v1", at(23, 9), at(23, 10)))
        assert not replaced and item.id is not None
        loaded = calendars.get_item(session, collection, "row.ics")
        assert loaded is not None and loaded.id == item.id and "SUMMARY:v1" in loaded.text
        again, replaced = calendars.put_item(
            ctx, collection, "row.ics", personal_event(uid, "v2", at(23, 9), at(23, 10)))
        assert replaced and again.id == item.id
        assert "SUMMARY:v2" in loaded.text  # the copy read before is not stale


def test_sign_in_notes_stay_when_the_put_fails_or_the_password_is_wrong(
        app: Any, db: Database, seed: Seed) -> None:
    made = fresh_technician(db, seed, "putnotes", [(at(14, 13), at(14, 14))])
    login = made.account.login
    with db.write() as session:
        session.execute(update(Credential).values(last_used_at=None)
                        .where(Credential.user_id == select(User.id).where(
                            User.login == login).scalar_subquery()))
    dav = as_user(Client(app), made.account)
    refused = dav("PUT", f"/dav/{login}/personal/bad.ics",
                  "BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nDTSTART:2031\r\n", **ICS)
    assert refused.status_code == 400
    with db.read() as session:
        stamps = session.scalars(select(Credential.last_used_at).join(User).where(
            User.login == login)).all()
    assert stamps and all(stamp is not None for stamp in stamps)  # kept despite the 400
    wrong = as_user(Client(app), dataclasses.replace(made.account, password="not-the-password"))
    denied = wrong("PUT", f"/dav/{login}/personal/x.ics",
                   personal_event(f"x-{login}@example.test", "x", at(24, 9), at(24, 10)), **ICS)
    assert denied.status_code == 401
    with db.read() as session:
        counted_failure = session.scalars(select(RateLimitBucket.count).where(
            RateLimitBucket.key == f"login-fail:login:{login}")).first()
    assert counted_failure == 1
    assert "x.ics" not in items_of(db, f"{login}/personal")
