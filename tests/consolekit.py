"""Signing in to the dispatch console from tests (Flask's client or plain HTTP)."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from live import AUDIT_KEY
from seeding import ORGANIZER, domain

from server import staff
from server.app import create_app
from server.config import load_settings
from server.db import Database

CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
PASSWORD = "correct horse battery"


def make_app(database_url: str, instance: Path, base_url: str = "http://fieldcal.test",
             extra: dict[str, str] | None = None) -> Flask:
    settings = load_settings({**(extra or {}),
        "FIELDCAL_INSTANCE": str(instance), "FIELDCAL_DATABASE_URL": database_url,
        "FIELDCAL_SECRET_KEYS": secrets.token_urlsafe(32), "FIELDCAL_TIMEZONE": "Europe/Berlin",
        "FIELDCAL_ORGANIZER_EMAIL": ORGANIZER, "FIELDCAL_BASE_URL": base_url,
        "FIELDCAL_BUSINESS_PHONE": "+49 30 555 0100", "FIELDCAL_AUDIT_KEYS": AUDIT_KEY,
    })
    app = create_app(settings=settings)
    app.testing = True
    return app


def set_password(db: Database, login: str, password: str = PASSWORD) -> None:
    with domain(db) as ctx:
        staff.set_password(ctx, login, password)


def csrf_of(html: str) -> str:
    found = CSRF_META.search(html)
    assert found, "the page carries no CSRF token"
    return found.group(1)


def sign_in(client: FlaskClient, login: str, password: str = PASSWORD) -> int:
    """Sign in through the form; the status of the POST (303 when it worked)."""
    token = csrf_of(client.get("/console").get_data(as_text=True))
    response = client.post("/console", data={"login": login, "password": password,
                                             "csrf": token})
    return response.status_code


def token(client: FlaskClient) -> str:
    """The signed-in session's CSRF token (read from a console page)."""
    return csrf_of(client.get("/console/board").get_data(as_text=True))
