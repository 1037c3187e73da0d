"""Engine and sessions for SQLite (default) and PostgreSQL.

SQLite: WAL, a busy timeout, and write transactions opened with BEGIN IMMEDIATE so
that a read-check-write sequence is serialised across processes (DESIGN §4).
PostgreSQL: psycopg 3; overlap is guarded by an exclusion constraint.
"""

from __future__ import annotations

import functools
import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Session

from server import timesql

WRITE_OPTION = "fieldcal_write"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Each connection's page cache, in KiB (SQLite's default is 2,000). A worker keeps a
# connection per thread; the operating system caches the file for all of them.
SQLITE_PAGE_CACHE_KIB = 512

ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:key)")  # built once


@functools.lru_cache(maxsize=64)
def normalise_url(url: str) -> str:
    """Use psycopg 3 for plain postgresql:// URLs."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_PAGE_CACHE_KIB}")
        cursor.close()
        timesql.register_sqlite(dbapi_connection)  # time zones for the reports' SQL

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


_TAGS: dict[int, str] = {}


def process_tag() -> str:
    """This process's name on its PostgreSQL connections (`application_name`): the machine,
    the pid and a random part, so a tag names one process, never a successor with its pid."""
    pid = os.getpid()
    if pid not in _TAGS:
        _TAGS[pid] = f"fieldcal {socket.gethostname()[:30]} {pid} {secrets.token_hex(3)}"
    return _TAGS[pid]


def _name_postgresql_connections(engine: Engine) -> None:
    @event.listens_for(engine, "do_connect")
    def on_connect(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
        params["application_name"] = process_tag()


def create_database_engine(url: str) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )
        _configure_sqlite(engine)
        return engine
    engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    _name_postgresql_connections(engine)
    return engine


class Database:
    """One per process and URL: an engine plus read and write session factories."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.engine = create_database_engine(self.url)
        self._writer = self.engine.execution_options(**{WRITE_OPTION: True})

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def session(self, *, write: bool) -> Session:
        """A session the caller owns (commit/rollback/close are the caller's)."""
        return Session(bind=self._writer if write else self.engine, expire_on_commit=False)

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction: committed if the block ends normally, else rolled back."""
        with self.session(write=True) as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self.session(write=False) as session, session.begin():
            yield session

    def lock_writes(self, session: Session, key: int = 0x6669656C) -> None:
        """Serialise writers across processes and hosts for the rest of the transaction.

        SQLite already holds the write lock (BEGIN IMMEDIATE); PostgreSQL takes a
        transaction-scoped advisory lock.
        """
        if not self.is_sqlite:
            session.execute(ADVISORY_LOCK, {"key": key})

    def dispose(self) -> None:
        self.engine.dispose()


_databases: dict[tuple[int, str], Database] = {}


def get_database(url: str) -> Database:
    """The process's Database for a URL (shared by Flask and both Radicale storages)."""
    key = (os.getpid(), normalise_url(url))
    database = _databases.get(key)
    if database is None:
        database = _databases[key] = Database(url)
    return database
