"""The technician's day page in tests: an instance with SMTP on loopback, a technician with
visits today (sites with coordinates), day links through the CLI, and the page's forms."""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from cryptography.fernet import Fernet
from live import AUDIT_KEY
from mailkit import Post, SmtpServer, post_office

from server import directory, scheduling
from server.actors import Actor
from server.app import create_app
from server.cli import cli
from server.config import load_settings
from server.context import Context
from server.db import Database
from server.models import Role, utcnow

BASE_URL = "https://cal.example.test"
DISPATCH_EMAIL = "dispatch@cal.example.test"
DESK = Actor(name="desk", channel="cli", role="dispatcher")
FORM_TOKEN = re.compile(r'name="csrf" value="([^"]+)"')
# Two sites in Berlin about 6 km apart: 6.2 km x 1.3 road factor at 40 km/h = 13 minutes.
MITTE = (52.5200, 13.4050)
KREUZBERG = (52.4990, 13.4900)


def environment(database_url: str, instance: Path, smtp_url: str) -> dict[str, str]:
    return {
        "FIELDCAL_INSTANCE": str(instance),
        "FIELDCAL_DATABASE_URL": database_url,
        "FIELDCAL_SECRET_KEYS": "day-page-tests-" + secrets.token_hex(20),
        "FIELDCAL_CREDENTIAL_KEYS": Fernet.generate_key().decode(),
        "FIELDCAL_AUDIT_KEYS": AUDIT_KEY,
        "FIELDCAL_BASE_URL": BASE_URL,
        "FIELDCAL_BUSINESS_PHONE": "+49 30 555 0100",
        "FIELDCAL_ORGANIZER_EMAIL": DISPATCH_EMAIL,
        "FIELDCAL_SMTP_URL": smtp_url,
        "FIELDCAL_TIMEZONE": "Europe/Berlin",
        "FIELDCAL_BOOKING_RATE": "1000",  # every test presses from the same address
    }


def run(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == code, f"{args}: {result.stdout} {result.stderr}"
    return result.stdout + result.stderr


@dataclass
class Instance:
    env: dict[str, str]
    app: Any  # flask.Flask
    db: Database
    post: Post
    smtp: SmtpServer

    def client(self) -> Any:
        return self.app.test_client()

    def new_day_link(self, login: str) -> tuple[int, str]:
        """`fieldcal link new day technician:LOGIN --json`: (id, path)."""
        issued = json.loads(run(self.env, "link", "new", "day", f"technician:{login}", "--json"))
        return issued["id"], issued["url"].removeprefix(BASE_URL)


@contextmanager
def instance(database_url: str, folder: Path, smtp: SmtpServer) -> Iterator[Instance]:
    env = environment(database_url, folder, smtp.url)
    run(env, "init")
    settings = load_settings(env)
    app = create_app(settings=settings)
    database: Database = app.extensions["fieldcal.db"]
    yield Instance(env, app, database, post_office(database, settings), smtp)


@contextmanager
def domain(db: Database, actor: Actor = DESK) -> Iterator[Context]:
    with db.write() as session:
        yield Context(session, actor, DISPATCH_EMAIL)


@dataclass(frozen=True)
class Day:
    """A technician with two visits today: `first` (Mitte) then `second` (Kreuzberg)."""

    login: str
    first: int
    second: int
    customer_email: str


def technician_with_visits(db: Database, tag: str) -> Day:
    """Visits start within the next hours, so they are on today's or tomorrow's list whatever
    the time of day (the page shows both days)."""
    login = f"{tag}{secrets.token_hex(3)}"
    email = f"{login}-customer@example.test"
    start = (utcnow() + dt.timedelta(hours=1)).replace(second=0, microsecond=0)
    with domain(db) as ctx:
        technician = directory.add_user(ctx, login, name=f"Tess {tag.title()}", email=f"{login}@crew.test",
                                        role=Role.TECHNICIAN, timezone="Europe/Berlin")
        visits = []
        for index, (point, title) in enumerate([(MITTE, "Annual service"), (KREUZBERG, "Oil leak")]):
            customer = directory.add_customer(
                ctx, f"Kunde {index} {login}", email=email if index else f"{login}-first@example.test",
                phone="+49 30 1234 567", timezone="Europe/Berlin",
                address=f"Straße {index + 1}\n1011{index} Berlin", compressor_make="Kaeser",
                compressor_model="SK 22", compressor_serial=f"KS-{index}", latitude=point[0],
                longitude=point[1])
            job = directory.add_job(ctx, customer, title, problem=f"{title}: pressure drops under load")
            starts = start + dt.timedelta(hours=2 * index)
            window = (starts, starts + dt.timedelta(hours=1))
            visits.append(scheduling.book(ctx, job, technician, starts, starts + dt.timedelta(hours=1),
                                          window=window).id)
    return Day(login, visits[0], visits[1], email)


def form_token(html: str) -> str:
    found = FORM_TOKEN.search(html)
    assert found, "the page carries no form token"
    return found.group(1)


def press(client: Any, path: str, visit: int, step: str, note: str = "") -> Any:
    """Open the day page and press one visit's button (as a phone would: GET, then POST)."""
    page = client.get(path)
    assert page.status_code == 200
    return client.post(f"{path}/visits/{visit}/{step}",
                        data={"csrf": form_token(page.get_data(as_text=True)), "note": note})
