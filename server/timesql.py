"""Time-zone arithmetic inside SQL, the same on SQLite and PostgreSQL.

PostgreSQL knows the IANA zones (`timezone(zone, ts)`); SQLite does not, so every
SQLite connection gets two deterministic functions backed by `zoneinfo` (registered by
`server.db`). The constructs below are each one template per dialect (`Written`), so a report stays
one SQL statement on both.

SQLite keeps UTC times as text "YYYY-MM-DD HH:MM:SS.ffffff" (see `UTCDateTime`); the
functions read and write that form, so text comparison stays time comparison.
"""

from __future__ import annotations

import datetime as dt
import functools
import sqlite3
from string import Formatter
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Integer, cast
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import DateTime, String

SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
LOCAL_FUNCTION = "fieldcal_local"
UTC_FUNCTION = "fieldcal_utc"
UNIXEPOCH_SINCE = (3, 38, 0)  # SQLite's unixepoch(): whole seconds, faster than strftime('%s')


@functools.lru_cache(maxsize=256)  # names of at most MAX_ZONE characters: < 64 KB with the zones
def _known_zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _zone(name: str) -> ZoneInfo | None:
    return _known_zone(name) if len(name) <= MAX_ZONE else None  # no IANA name is longer


# Each conversion cache holds at most CACHE_BYTES: an entry (arguments, result, the
# cache's own node) takes at most ENTRY_BYTES when the stamp has at most MAX_STAMP and the
# zone at most MAX_ZONE characters (tests/test_cache_bounds.py measures it); longer
# arguments are converted without the cache.
CACHE_BYTES = 4 * 1024 * 1024
MAX_STAMP = 32
MAX_ZONE = 64
ENTRY_BYTES = 512
CACHED_CALLS = CACHE_BYTES // ENTRY_BYTES


def _local(stamp: str | None, zone: str | None) -> str | None:
    if stamp is None or zone is None:
        return None
    where = _zone(zone)
    if where is None:
        return None
    moment = dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.UTC).astimezone(where)
    return moment.replace(tzinfo=None).strftime(SQLITE_FORMAT)


def _utc(wall: str | None, zone: str | None) -> str | None:
    if wall is None or zone is None:
        return None
    where = _zone(zone)
    if where is None:
        return None
    moment = dt.datetime.fromisoformat(wall).replace(tzinfo=where).astimezone(dt.UTC)
    return moment.replace(tzinfo=None).strftime(SQLITE_FORMAT)


_cached_local = functools.lru_cache(maxsize=CACHED_CALLS)(_local)
_cached_utc = functools.lru_cache(maxsize=CACHED_CALLS)(_utc)


def _small(value: str | None, longest: int) -> bool:
    return value is None or len(value) <= longest


def sqlite_local(stamp: str | None, zone: str | None) -> str | None:
    """UTC storage text -> the wall-clock time in `zone` (NULL for NULL or an unknown zone)."""
    if _small(stamp, MAX_STAMP) and _small(zone, MAX_ZONE):
        return _cached_local(stamp, zone)
    return _local(stamp, zone)


def sqlite_utc(wall: str | None, zone: str | None) -> str | None:
    """A wall-clock time in `zone` -> UTC storage text. A time skipped by a clock change
    counts in the offset before the change, as PostgreSQL and `hours.local` count it."""
    if _small(wall, MAX_STAMP) and _small(zone, MAX_ZONE):
        return _cached_utc(wall, zone)
    return _utc(wall, zone)


def register_sqlite(connection: sqlite3.Connection) -> None:
    connection.create_function(LOCAL_FUNCTION, 2, sqlite_local, deterministic=True)
    connection.create_function(UTC_FUNCTION, 2, sqlite_utc, deterministic=True)


class Written(FunctionElement[Any]):
    """A construct written from one template per dialect: `{0}`, `{1}`, ... are its
    arguments, each compiled where it appears (in order, so positional binds stay right,
    and an argument that appears twice is compiled twice)."""

    inherit_cache = True
    name = "written"
    sql: ClassVar[dict[str, str]] = {}


@compiles(Written)
def _write(element: Written, compiler: SQLCompiler, **kw: Any) -> str:
    template = element.sql.get(compiler.dialect.name)
    if template is None:
        raise CompileError(f"{type(element).__name__} has no SQL for {compiler.dialect.name}.")
    arguments = list(element.clauses)
    parts = []
    for text, field, _spec, _conversion in Formatter().parse(template):
        parts.append(text)
        if field is not None:
            parts.append(compiler.process(arguments[int(field)], **kw))
    return "".join(parts)


class local_time(Written):
    """`local_time(utc_column, zone_column)`: the wall-clock time there (no zone attached)."""

    type = DateTime()
    inherit_cache = True
    name = "local_time"
    sql: ClassVar[dict[str, str]] = {"sqlite": f"{LOCAL_FUNCTION}({{0}}, {{1}})",
                                     "postgresql": "timezone({1}, {0})"}


class utc_of_wall(Written):
    """`utc_of_wall(text 'YYYY-MM-DD HH:MM', zone)`: that wall-clock time there, in UTC."""

    type = DateTime(timezone=True)
    inherit_cache = True
    name = "utc_of_wall"
    sql: ClassVar[dict[str, str]] = {"sqlite": f"{UTC_FUNCTION}({{0}}, {{1}})",
                                     "postgresql": "timezone({1}, CAST({0} AS TIMESTAMP))"}


class seconds_between(Written):
    """`seconds_between(a, b)`: whole seconds from a to b (negative if b is earlier)."""

    type = Integer()
    inherit_cache = True
    name = "seconds_between"
    sql: ClassVar[dict[str, str]] = {
        "sqlite": ("(unixepoch({1}) - unixepoch({0}))" if sqlite3.sqlite_version_info >= UNIXEPOCH_SINCE
                   else "(CAST(strftime('%s', {1}) AS INTEGER) - CAST(strftime('%s', {0}) AS INTEGER))"),
        "postgresql": "CAST(EXTRACT(EPOCH FROM ({1} - {0})) AS BIGINT)"}


class later(Written):
    """The later of two times (GREATEST; SQLite's two-argument max). Give it no NULLs:
    PostgreSQL skips them, SQLite answers NULL."""

    inherit_cache = True
    name = "later"
    sql: ClassVar[dict[str, str]] = {"sqlite": "max({0}, {1})", "postgresql": "GREATEST({0}, {1})"}


class earlier(Written):
    """The earlier of two times (LEAST; SQLite's two-argument min). No NULLs (see `later`)."""

    inherit_cache = True
    name = "earlier"
    sql: ClassVar[dict[str, str]] = {"sqlite": "min({0}, {1})", "postgresql": "LEAST({0}, {1})"}


class quarter_hour(Written):
    """A UTC time cut down to its quarter hour (every zone in use today is offset from UTC,
    and changes its clocks, on quarter hours: a quarter hour lies in one local hour)."""

    inherit_cache = True
    name = "quarter_hour"
    sql: ClassVar[dict[str, str]] = {
        # cut out of the storage text "YYYY-MM-DD HH:MM:SS.ffffff" (no date parsed per row)
        "sqlite": ("(substr({0}, 1, 14) || CASE WHEN substr({0}, 15, 2) < '15' THEN '00' "
                   "WHEN substr({0}, 15, 2) < '30' THEN '15' WHEN substr({0}, 15, 2) < '45' THEN '30' "
                   "ELSE '45' END || ':00.000000')"),
        # quarter hours counted from a UTC midnight (date_bin, PostgreSQL 14 or later): no
        # field extracted, no numeric arithmetic per row
        "postgresql": "date_bin(INTERVAL '15 minutes', {0}, TIMESTAMPTZ '2000-01-01 00:00:00+00')"}


class hour_of(Written):
    """The hour (0-23) of a wall-clock time."""

    type = Integer()
    inherit_cache = True
    name = "hour_of"
    sql: ClassVar[dict[str, str]] = {"sqlite": "CAST(strftime('%H', {0}) AS INTEGER)",
                                     "postgresql": "CAST(EXTRACT(HOUR FROM {0}) AS INTEGER)"}


class sunday_weekday_of(Written):
    """The weekday of a wall-clock time, 0 = Sunday (both databases count so)."""

    type = Integer()
    inherit_cache = True
    name = "sunday_weekday_of"
    sql: ClassVar[dict[str, str]] = {"sqlite": "CAST(strftime('%w', {0}) AS INTEGER)",
                                     "postgresql": "CAST(EXTRACT(DOW FROM {0}) AS INTEGER)"}


def text_of(value: ColumnElement[Any]) -> ColumnElement[Any]:
    """A value as text (for building wall-clock strings)."""
    return cast(value, String)
