"""The live server of the real-client tests: scratch databases and gunicorn on loopback."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

import psycopg
import requests

from server.serve import ServeOptions, gunicorn_command

REPO = Path(__file__).resolve().parents[1]
ORGANIZER = "dispatch@example.test"
PG_ADMIN_URL = os.environ.get(
    "FIELDCAL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
STARTUP_TIMEOUT_S = 60.0
AUDIT_KEY = "fieldcal-test-audit-key-shared-by-tests-and-servers"
HTTP_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------- databases


def postgres_problem(admin_url: str = PG_ADMIN_URL) -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        with psycopg.connect(admin_url, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL at {admin_url} is unreachable: {exc}"
    return None


def create_postgres_database(admin_url: str = PG_ADMIN_URL) -> tuple[str, str]:
    """A new empty database; returns (name, url)."""
    name = f"fieldcal_t_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    parsed = urllib.parse.urlsplit(admin_url)
    return name, urllib.parse.urlunsplit(parsed._replace(path=f"/{name}"))


def drop_postgres_database(name: str, admin_url: str = PG_ADMIN_URL) -> None:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as connection:
        connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """gunicorn as `fieldcal serve` starts it (2 workers), on a loopback port.

    `gunicorn_options` come after fieldcal's own and win (e.g. a shorter --timeout).
    """

    def __init__(self, database_url: str, instance: Path, extra_env: dict[str, str] | None = None,
                 workers: int = 2, gunicorn_options: tuple[str, ...] = ()) -> None:
        self.database_url = database_url
        self.instance = instance
        self.extra_env = dict(extra_env or {})
        self.workers = workers
        self.gunicorn_options = gunicorn_options
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = instance / "gunicorn.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dav(self) -> str:
        return f"{self.base}/dav/"

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return "(no server log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        self.instance.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDCAL_")}
        env.update({
            "FIELDCAL_INSTANCE": str(self.instance),
            "FIELDCAL_DATABASE_URL": self.database_url,
            "FIELDCAL_SECRET_KEYS": secrets.token_urlsafe(32),
            "FIELDCAL_AUDIT_KEYS": AUDIT_KEY,
            "FIELDCAL_BASE_URL": self.base,
            "FIELDCAL_ORGANIZER_EMAIL": ORGANIZER,
            "FIELDCAL_BUSINESS_PHONE": "+49 30 555 0100",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.extra_env)
        log = self.log_path.open("ab")
        options = ServeOptions(host="127.0.0.1", port=self.port, workers=self.workers, worker=False)
        self.process = subprocess.Popen(
            gunicorn_command(options, ("--graceful-timeout", "5", "--log-level", "info",
                                       *self.gunicorn_options)),
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"gunicorn exited with {self.process.returncode} during startup:\n"
                    f"{self.log_tail()}"
                )
            try:
                if requests.get(self.url("/healthz"), timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"gunicorn did not answer /healthz within {timeout:.0f} s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def use_audit_key(url: str) -> None:
    """Sign this process's audit entries in `url` with the key the live servers use."""
    from server import audit

    audit.configure(url, audit.AuditKeys((AUDIT_KEY,)))
