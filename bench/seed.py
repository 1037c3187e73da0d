"""Load the same events into stock Radicale's folder and into fieldcal's database."""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.events import Event
from server import audit, calendars, directory
from server.actors import SYSTEM
from server.audit import AuditKeys
from server.context import Context
from server.db import Database
from server.models import Role

LOGIN = "tech"
CALENDAR = "personal"
ORGANIZER = "dispatch@bench.test"
BATCH = 2_000


@dataclass(frozen=True)
class Seeded:
    password: str
    seconds: float


def radicale_config(root: Path, htpasswd: Path, log_level: str,
                    storage: str = "multifilesystem") -> str:
    return (
        "[auth]\ntype = htpasswd\n"
        f"htpasswd_filename = {htpasswd}\nhtpasswd_encryption = plain\n\n"
        "[rights]\ntype = owner_only\n\n"
        f"[storage]\ntype = {storage}\nfilesystem_folder = {root}\n\n"
        f"[logging]\nlevel = {log_level}\n"
    )


def seed_radicale(work: Path, events: list[Event], log_level: str,
                  warm_cache: bool = False) -> tuple[Path, Seeded]:
    """Write the .ics files straight into a multifilesystem collection; returns the config path.

    `warm_cache`: also build Radicale's item cache, with Radicale's own code in this process
    (without fsync), so that the server's first request does not parse every file.
    """
    began = time.perf_counter()
    root = work / "collections"
    calendar = root / "collection-root" / LOGIN / CALENDAR
    calendar.mkdir(parents=True)
    (calendar / ".Radicale.props").write_text(
        json.dumps({"tag": "VCALENDAR", "D:displayname": "Personal"}), encoding="utf-8")
    for event in events:
        (calendar / event.href).write_text(event.to_ics(), encoding="utf-8", newline="")
    password = secrets.token_urlsafe(18)
    htpasswd = work / "users"
    htpasswd.write_text(f"{LOGIN}:{password}\n", encoding="utf-8")
    config = work / "radicale.config"
    config.write_text(radicale_config(root, htpasswd, log_level), encoding="utf-8")
    if warm_cache:
        build_item_cache(config, f"/{LOGIN}/{CALENDAR}/")
    return config, Seeded(password, time.perf_counter() - began)


def build_item_cache(config: Path, path: str) -> int:
    """Radicale's item cache of one collection, as its first read would write it; returns items."""
    import radicale.config
    import radicale.storage

    configuration = radicale.config.load([(str(config), False)])
    configuration.update({"storage": {"_filesystem_fsync": "False"}}, "bench", privileged=True)
    storage = radicale.storage.load(configuration)
    with storage.acquire_lock("w"):
        (collection,) = storage.discover(path, depth="0")
        assert isinstance(collection, radicale.storage.BaseCollection)
        return len(list(collection.get_all()))


def seed_fieldcal(database_url: str, events: list[Event], audit_key: str) -> Seeded:
    """Migrate, add the technician, and store the events through the domain write path."""
    from server import migrate  # here: alembic (with mako, pygments) is no part of a worker
    began = time.perf_counter()
    audit.configure(database_url, AuditKeys((audit_key,)))
    database = Database(database_url)
    try:
        migrate.upgrade(database)
        with database.write() as session:
            ctx = Context(session, SYSTEM, ORGANIZER)
            user = directory.add_user(ctx, LOGIN, name="Bench Technician",
                                      email="tech@bench.test", role=Role.TECHNICIAN)
            _credential, password = directory.issue_password(ctx, user, label="bench")
        path = calendars.personal_path(LOGIN)
        for first in range(0, len(events), BATCH):
            with database.write() as session:
                ctx = Context(session, SYSTEM, ORGANIZER)
                collection = calendars.require_collection(session, path)
                for event in events[first:first + BATCH]:
                    calendars.put_item(ctx, collection, event.href, event.to_ics())
    finally:
        database.dispose()
    return Seeded(password, time.perf_counter() - began)


def inprocess_app(folder: Path | str, database_url: str, audit_key: str) -> Any:
    """fieldcal's composed WSGI app, as gunicorn builds it, for the in-process benchmarks."""
    import wsgi  # the composition root, at the top of the repository
    from server.config import load_settings
    return wsgi.create_wsgi_app(load_settings({
        "FIELDCAL_INSTANCE": str(folder), "FIELDCAL_DATABASE_URL": database_url,
        "FIELDCAL_SECRET_KEYS": secrets.token_urlsafe(32), "FIELDCAL_AUDIT_KEYS": audit_key,
        "FIELDCAL_DAV_AUTH_DELAY": "0", "FIELDCAL_MANAGE_CUTOFF_HOURS": "0",
    }))


def basic_auth(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()
