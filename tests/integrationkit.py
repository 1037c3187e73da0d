"""Shared by the integration tests: an instance with a credential key, the CLI, a worker."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from live import AUDIT_KEY
from mailkit import Clock

from server.cli import cli
from server.db import Database, get_database
from server.delivery import Deliverer
from server.migrate import upgrade
from server.vault import Vault
from server.worker import RetryPolicy, Worker

KEY = Fernet.generate_key().decode()
BASE_URL = "https://cal.example.test"


@pytest.fixture(scope="module")
def platform_env(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    environment = {
        "FIELDCAL_INSTANCE": str(tmp_path_factory.mktemp("instance")),
        "FIELDCAL_DATABASE_URL": database_url,
        "FIELDCAL_SECRET_KEYS": "integration-tests-" + "k" * 40,
        "FIELDCAL_CREDENTIAL_KEYS": KEY,
        "FIELDCAL_BASE_URL": BASE_URL,
        "FIELDCAL_AUDIT_KEYS": AUDIT_KEY,
        "FIELDCAL_BUSINESS_PHONE": "+49 30 555 0100",
    }
    run(environment, "init")
    return environment


@pytest.fixture(scope="module")
def platform_db(platform_env: dict[str, str]) -> Database:
    database = get_database(platform_env["FIELDCAL_DATABASE_URL"])
    upgrade(database)
    return database


def run(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == code, f"{args}: {result.stdout} {result.stderr}"
    return result.stdout + result.stderr


def add(env: dict[str, str], platform: str, *options: str) -> int:
    out = run(env, "integration", "add", platform, "--name", f"{platform} test", *options, "--json")
    return int(json.loads(out)["id"])


def remove_all(env: dict[str, str]) -> None:
    for row in json.loads(run(env, "integration", "list", "--json")):
        run(env, "integration", "remove", str(row["id"]))


@pytest.fixture()
def fresh_integrations(platform_env: dict[str, str]) -> Iterator[None]:
    """After the test, no integration is left: each test connects its own."""
    yield
    remove_all(platform_env)


def worker(database: Database, clock: Clock, max_attempts: int = 3, timeout_s: float = 10.0) -> Worker:
    deliverer = Deliverer(database, Vault((KEY,)), BASE_URL, "dispatch@cal.example.test", clock=clock,
                          platform_timeout_s=timeout_s)
    return Worker(database, handlers=deliverer.handlers(), clock=clock, on_dead=deliverer.on_dead,
                  policy=RetryPolicy(base_delay_s=30, max_delay_s=600, max_attempts=max_attempts))


def drain(work: Worker, cycles: int = 10) -> None:
    for _ in range(cycles):
        if work.run_once().processed == 0:
            return
