"""The two servers under test: their data, WSGI app, environment and URL prefix."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from bench import seed
from bench.events import Event
from bench.servers import HOST, free_port
from server.db import normalise_url


@dataclass(frozen=True)
class Side:
    name: str
    app: str
    profile_app: str
    env: dict[str, str]
    prefix: str
    password: str
    seed_s: float
    port: int


def stock_side(work: Path, events: list[Event], log_level: str, warm_cache: bool = False) -> Side:
    config, seeded = seed.seed_radicale(work, events, log_level, warm_cache)
    return Side("stock", "radicale:application", "bench.profiling:radicale_app()",
                {"RADICALE_CONFIG": str(config)}, "", seeded.password, seeded.seconds, free_port())


def floor_side(stock: Side, work: Path, size: int, log_level: str) -> Side:
    """Radicale on bench.floor's zero-cost memory storage, with stock's users file."""
    config = work / "radicale.config"
    config.write_text(seed.radicale_config(work, Path(stock.env["RADICALE_CONFIG"]).with_name(
        "users"), log_level, storage="bench.floor"), encoding="utf-8")
    return Side("floor", "bench.floor:create_app()", "bench.profiling:floor_app()",
                {"RADICALE_CONFIG": str(config), "BENCH_FLOOR_EVENTS": str(size)}, "",
                stock.password, 0.0, free_port())


def fieldcal_side(work: Path, events: list[Event], database_url: str) -> Side:
    port = free_port()
    audit_key = secrets.token_urlsafe(32)
    seeded = seed.seed_fieldcal(database_url, events, audit_key)
    env = {
        "FIELDCAL_AUDIT_KEYS": audit_key,
        "FIELDCAL_INSTANCE": str(work),
        "FIELDCAL_DATABASE_URL": database_url,
        "FIELDCAL_SECRET_KEYS": secrets.token_urlsafe(32),
        "FIELDCAL_BASE_URL": f"http://{HOST}:{port}",
        "FIELDCAL_MANAGE_CUTOFF_HOURS": "0",
    }
    return Side("fieldcal", "wsgi:create_wsgi_app()", "bench.profiling:fieldcal_app()",
                env, "/dav", seeded.password, seeded.seconds, port)


def _drop(admin: Engine, name: str) -> None:
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def fresh_postgres(server_url: str, name: str) -> str:
    """The database `name` on the PostgreSQL server at `server_url`, made anew (empty); its URL.
    The database the URL names is never written to."""
    server_url = normalise_url(server_url)
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        _drop(admin, name)
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@contextmanager
def scratch_postgres(server_url: str, name: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one run, dropped afterwards; yields its URL."""
    try:
        yield fresh_postgres(server_url, name)
    finally:
        admin = create_engine(normalise_url(server_url), isolation_level="AUTOCOMMIT")
        try:
            _drop(admin, name)
        finally:
            admin.dispose()
