"""Shared fixtures: one scratch database and one live gunicorn per (test module, database)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from integrationkit import fresh_integrations, platform_db, platform_env  # noqa: F401  (fixtures of the integration tests)
from live import (
    LiveServer,
    create_postgres_database,
    drop_postgres_database,
    postgres_problem,
    use_audit_key,
)
from seeding import (
    Seed,
    seed_base,
)

from server.db import Database

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _require_postgres() -> None:
    problem = postgres_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{problem} (CI=true: the PostgreSQL tests must run)", pytrace=False)
    pytest.skip(problem)


@pytest.fixture(scope="module", params=BACKENDS)
def database_url(request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty database of the parametrized kind, dropped after the module."""
    if request.param == "sqlite":
        folder = tmp_path_factory.mktemp("sqlite")
        url = f"sqlite:///{folder / 'fieldcal.sqlite3'}"
        use_audit_key(url)
        yield url
        return
    _require_postgres()
    name, url = create_postgres_database()
    use_audit_key(url)
    try:
        yield url
    finally:
        drop_postgres_database(name)


@pytest.fixture(scope="module")
def seed(database_url: str) -> Seed:
    return seed_base(database_url)


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    """Extra environment for this module's server; modules override it."""
    return {}


@pytest.fixture(scope="module")
def live(seed: Seed, database_url: str, server_env: dict[str, str],
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(database_url, tmp_path_factory.mktemp("instance"), server_env)
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def db(database_url: str, seed: Seed) -> Iterator[Database]:
    """The test process's own handle on the server's database (to seed and to verify)."""
    database = Database(database_url)
    try:
        yield database
    finally:
        database.dispose()
