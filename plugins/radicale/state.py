"""Per-request state shared by the Radicale plugins: the transaction and who is asking.

Radicale calls `Storage.acquire_lock` around every storage access of a request;
that lock is the request's database transaction, kept in a context variable so
collections and items use the same session. Auth remembers the logged-in
principal (role, teams) for rights and for the domain's Actor.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Protocol

from radicale import config as radicale_config
from sqlalchemy import select
from sqlalchemy.orm import Session

from server.actors import Actor
from server.bodycache import Packed
from server.config import load_settings
from server.context import Context
from server.db import Database, get_database
from server.models import Collection, Role, Team, TeamMember, User

CHANNEL = "caldav"


@dataclass(frozen=True)
class Principal:
    login: str
    role: str
    teams: frozenset[str]

    @property
    def is_dispatcher(self) -> bool:
        return self.role == Role.DISPATCHER


class StorageAccess(Protocol):
    """What collections need of the storage plugin: its database and the current write's context."""

    @property
    def database(self) -> Database: ...

    def context(self) -> Context: ...


@dataclass
class Transaction:
    session: Session
    write: bool
    user: str
    collections: dict[str, Collection | None] = field(default_factory=dict)  # path -> row, this request
    # Read under the write lock, so still true until this request writes: (collection id,
    # href) -> the item's (uid, etag) or None, and the (collection id, uid) no item has.
    items_seen: dict[tuple[int, str], tuple[str, str] | None] = field(default_factory=dict)
    free_uids: set[tuple[int, str]] = field(default_factory=set)

    def forget_items(self) -> None:
        """A write of this request: what was read of items may no longer hold."""
        self.items_seen.clear()
        self.free_uids.clear()


@dataclass
class RequestNotes:
    """What the storage tells the application about the request it is serving."""

    request_id: str = ""
    altered: bool = False  # the stored object differs from what the client sent
    expand: tuple[dt.datetime, dt.datetime] | None = None  # a REPORT's <C:expand> range
    if_none_match: str = ""  # a GET's If-None-Match: a whole calendar it names is not rendered
    whole_calendar: Hashable | None = None  # the cache key of the whole calendar served
    not_modified: bool = False  # If-None-Match named the whole calendar's current ETag
    serving_get: bool = False  # a GET: a whole calendar is answered as cached bytes, not as text
    whole_body: bytes | Packed | None = None  # the whole calendar served (UTF-8, or its gzip)
    vcard_version: str = ""  # the vCard version the client asked for ("" = the default)


_transaction: ContextVar[Transaction | None] = ContextVar("fieldcal_dav_txn", default=None)
_principal: ContextVar[Principal | None] = ContextVar("fieldcal_dav_principal", default=None)
_notes: ContextVar[RequestNotes | None] = ContextVar("fieldcal_dav_notes", default=None)
_login_refused: ContextVar[int | None] = ContextVar("fieldcal_dav_login_refused", default=None)
_signing_in: ContextVar[Session | None] = ContextVar("fieldcal_dav_signing_in", default=None)


class DatabaseHandle:
    """The Database of this process for the configured URL.

    Looked up on each use (server.db.get_database is per process), so a plugin
    created before gunicorn forks its workers never shares a connection pool.
    """

    def __init__(self, configuration: radicale_config.Configuration) -> None:
        try:
            self.url = str(configuration.get("storage", "database_url"))
        except KeyError:
            self.url = load_settings().database_url

    def __call__(self) -> Database:
        return get_database(self.url)


def organizer_for(configuration: radicale_config.Configuration) -> str:
    try:
        return str(configuration.get("storage", "organizer"))
    except KeyError:
        return load_settings().organizer


def writing() -> Transaction | None:
    """The request's write transaction, if one is open."""
    txn = _transaction.get()
    return txn if txn is not None and txn.write else None


def current() -> Transaction:
    txn = _transaction.get()
    if txn is None:
        raise RuntimeError("storage accessed outside Storage.acquire_lock")
    return txn


@contextmanager
def transaction(database: Database, *, write: bool, user: str) -> Iterator[Transaction]:
    """The request's transaction; nested calls share the outer one.

    On PostgreSQL it goes on in the request's pending one (`signing_in_with_the_request`);
    a read leaves that open for the request's next storage access, a write commits it.
    """
    outer = _transaction.get()
    if outer is not None:
        if write and not outer.write:
            raise RuntimeError("a write lock was requested inside a read lock")
        yield outer
        return
    pending = _signing_in.get()
    if pending is not None:
        _signing_in.set(None)
    session = pending if pending is not None else database.session(write=write)
    txn = Transaction(session, write, user)
    token = _transaction.set(txn)
    kept = False
    try:
        if not session.in_transaction():
            session.begin()
        if write:
            database.lock_writes(session)
        yield txn
        if pending is not None and not write:
            _signing_in.set(pending)  # reads only: the next access of this request goes on
            kept = True
        else:
            session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        _transaction.reset(token)
        if not kept:
            session.close()


@contextmanager
def signing_in_with_the_request(database: Database) -> Iterator[None]:
    """On PostgreSQL, the sign-in's reads open the transaction that the request's storage
    accesses then go on in (`transaction` adopts it; a write takes the write lock only
    then and commits): one connection, one BEGIN and one COMMIT for the request instead
    of one of each per access, which on a read as small as a calendar-query is a third of
    its round trips. Safe under READ COMMITTED (fieldcal's engines keep PostgreSQL's
    default): each statement, and after the lock each write, sees every write committed
    before it. Whatever is left of it at the end of the request is committed: it holds
    only reads.

    Not on SQLite: a write transaction there must begin as one (BEGIN IMMEDIATE), which
    would hold the database's write lock while Radicale parses the body, or while a
    refused login waits out its delay; a read transaction cannot become a write one
    once another writer has committed.
    """
    if database.is_sqlite or _signing_in.get() is not None:
        yield
        return
    session = database.session(write=True)
    token = _signing_in.set(session)
    try:
        yield
        if _signing_in.get() is session:
            session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        if _signing_in.get() is session:
            session.close()
        _signing_in.reset(token)


@contextmanager
def sign_in_session(database: Database, *, write: bool) -> Iterator[Session]:
    """The session of a sign-in's reads (write: its notes of success or failure).

    On PostgreSQL, the request's pending transaction: reads stay open for the request's
    storage accesses to go on with; a note is committed at once (a refused or failing
    request keeps it, as before) and a refused login gives the transaction up (no
    connection is held while it waits out its delay).
    """
    pending = _signing_in.get()
    if pending is None:
        with database.write() if write else database.read() as session:
            yield session
        return
    try:
        yield pending
    except BaseException:
        pending.rollback()
        raise
    if write:
        pending.commit()


def commit_sign_in() -> None:
    """Keep what the sign-in wrote, whatever the request does next (a pending transaction)."""
    pending = _signing_in.get()
    if pending is not None:
        pending.commit()


def give_up_sign_in() -> None:
    """A refused login: its pending transaction (committed: notes only) is closed now."""
    pending = _signing_in.get()
    if pending is not None:
        pending.commit()
        pending.close()


@contextmanager
def reading(database: Database) -> Iterator[Session]:
    """The request's session if one is open (or pending), else a short read transaction."""
    txn = _transaction.get()
    if txn is not None:
        yield txn.session
        return
    pending = _signing_in.get()
    if pending is not None:
        yield pending
        return
    with database.read() as session:
        yield session


def load_principal(session: Session, login: str) -> Principal | None:
    row = session.execute(
        select(User.id, User.role).where(User.login == login, User.active.is_(True))
    ).first()
    if row is None:
        return None
    user_id, role = row
    slugs = session.scalars(
        select(Team.slug).join(TeamMember, TeamMember.team_id == Team.id)
        .where(TeamMember.user_id == user_id)
    )
    return Principal(login, str(role), frozenset(slugs))


def remember(principal: Principal | None) -> None:
    _principal.set(principal)


def remembered(login: str) -> Principal | None:
    """The principal auth remembered for this request, if it is `login`'s (no query)."""
    known = _principal.get()
    return known if known is not None and known.login == login else None


def principal(database: Database, login: str) -> Principal | None:
    """Who `login` is: the principal auth remembered for this request, else from the database."""
    known = _principal.get()
    if known is not None and known.login == login:
        return known
    with reading(database) as session:
        found = load_principal(session, login)
    if found is not None:
        _principal.set(found)
    return found


def begin_request(request_id: str) -> tuple[RequestNotes, object]:
    notes = RequestNotes(request_id=request_id)
    return notes, _notes.set(notes)


def end_request(token: object) -> None:
    _notes.reset(token)  # type: ignore[arg-type]


def notes() -> RequestNotes:
    found = _notes.get()
    return found if found is not None else RequestNotes()


def actor(database: Database, login: str) -> Actor:
    who = principal(database, login) if login else None
    role = who.role if who is not None else "unknown"
    return Actor(name=login or "anonymous", channel=CHANNEL, role=role,
                 request_id=notes().request_id)


def begin_login() -> object:
    """A request starts: no login refused yet."""
    return _login_refused.set(None)


def end_login(token: object) -> None:
    _login_refused.reset(token)  # type: ignore[arg-type]


def refuse_login(retry_after: int) -> None:
    """Auth refused this request's login for throttling: answer 429, retry after so many seconds."""
    _login_refused.set(retry_after)


def login_refused_for() -> int | None:
    return _login_refused.get()
