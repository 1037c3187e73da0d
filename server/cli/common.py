"""What every `fieldcal` command shares: settings, the database, the acting user, output."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from server import audit_anchor
from server.actors import Actor
from server.config import Settings, load_settings
from server.context import Context
from server.db import Database, get_database
from server.errors import FieldcalError

F = TypeVar("F", bound=Callable[..., Any])

CHANNEL = "cli"
DURATION = re.compile(r"^(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m?)?$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
ISO_DURATION = re.compile(r"^PT(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?$")


class Runtime:
    """Settings and database, loaded on first use (so `--help` needs neither)."""

    def __init__(self) -> None:
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
            audit_anchor.setup(self._settings, required=False)  # writes need the keys
        return self._settings

    def reload(self) -> Settings:
        self._settings = None
        return self.settings

    @property
    def database(self) -> Database:
        return get_database(self.settings.database_url)

    @property
    def actor(self) -> Actor:
        return Actor(name=os_user(), channel=CHANNEL, role="dispatcher",
                     timezone=self.settings.timezone)

    @contextmanager
    def write(self) -> Iterator[Context]:
        """One transaction for the whole command: all of it happens, or none of it."""
        with self.database.write() as session:
            yield Context(session, self.actor, self.settings.organizer)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self.database.read() as session:
            yield session

    @property
    def dav_url(self) -> str:
        return f"{self.settings.base_url}/dav/"


pass_runtime = click.make_pass_decorator(Runtime, ensure=True)


def os_user() -> str:
    try:
        return getpass.getuser()[:100] or CHANNEL
    except (KeyError, OSError):
        return CHANNEL


class FieldcalGroup(click.Group):
    """Turns domain and database errors into one clear line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FieldcalError as exc:
            # Imported here: commands that never book (export, ...) skip the scheduling stack.
            from server.scheduling.rules import BookingRefused
            if isinstance(exc, BookingRefused):
                raise click.ClickException(
                    f"{exc.message} (add --force --reason TEXT to book anyway)") from exc
            raise click.ClickException(exc.message) from exc
        except (OperationalError, ProgrammingError) as exc:
            first_line = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            hint = " Run `fieldcal init` first?" if "no such table" in first_line or (
                "does not exist" in first_line) else ""
            raise click.ClickException(f"Database error: {first_line}.{hint}") from exc


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(func)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise click.BadParameter(f"unknown time zone {name!r} (use e.g. Europe/Berlin)") from exc


def parse_time(value: str, default_zone: ZoneInfo) -> dt.datetime:
    """An ISO 8601 time; one without an offset is read in `default_zone`. Returns UTC."""
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time like 2025-03-04T09:30 or 2025-03-04T09:30+01:00"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=default_zone)
        round_trip = moment.astimezone(dt.UTC).astimezone(default_zone).replace(tzinfo=None)
        if round_trip != moment.replace(tzinfo=None):
            raise click.BadParameter(f"{value} does not exist in {default_zone.key} (clock change)")
    return moment.astimezone(dt.UTC)


def parse_moment(value: str, default_zone: ZoneInfo, *, end: bool = False) -> dt.datetime:
    """An ISO time, or a date: its midnight (with `end`, the midnight after it: the day counts)."""
    text = value.strip()
    if DATE.match(text):
        day = dt.date.fromisoformat(text) + dt.timedelta(days=1 if end else 0)
        return dt.datetime.combine(day, dt.time(), default_zone).astimezone(dt.UTC)
    return parse_time(text, default_zone)


def parse_point(value: str) -> tuple[float, float]:
    """"52.5219,13.4132" -> (52.5219, 13.4132)."""
    parts = value.replace(" ", "").split(",")
    try:
        latitude, longitude = (float(p) for p in parts)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not LAT,LON like 52.5219,13.4132") from exc
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise click.BadParameter(f"{value!r} is not LAT,LON like 52.5219,13.4132")
    return latitude, longitude


def parse_duration(value: str) -> dt.timedelta:
    """90, 90m, 1h30m, 2h or PT1H30M."""
    text = value.strip()
    match = ISO_DURATION.match(text.upper()) or DURATION.match(text.lower())
    if not text or match is None or not any(match.groupdict().values()):
        raise click.BadParameter(f"{value!r} is not a duration like 90m, 1h30m or PT1H30M")
    duration = dt.timedelta(hours=int(match["h"] or 0), minutes=int(match["m"] or 0))
    if duration <= dt.timedelta(0):
        raise click.BadParameter("a duration must be longer than zero")
    return duration


def iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
