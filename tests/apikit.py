"""API test helpers: keys of every kind, an in-process client, request shorthands."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from live import AUDIT_KEY, ORGANIZER, LiveServer
from seeding import domain
from sqlalchemy import update

from server import apikeys
from server.app import create_app
from server.config import load_settings
from server.db import Database
from server.models import ApiKey, utcnow
from server.vault import Vault

ROLES = ("dispatcher", "readonly", "integration")
BAD = ("none", "revoked", "expired")


@dataclass(frozen=True)
class Keys:
    """A bearer key per role, plus a revoked and an expired one (all named after the role)."""

    keys: dict[str, str]

    def headers(self, who: str, **extra: str) -> dict[str, str]:
        headers = dict(extra)
        if who != "none":
            headers["Authorization"] = f"Bearer {self.keys[who]}"
        return headers


def make_keys(db: Database) -> Keys:
    keys: dict[str, str] = {}
    with domain(db) as ctx:
        for role in ROLES:
            _, keys[role] = apikeys.issue_key(ctx, f"{role}-{secrets.token_hex(2)}",
                                              apikeys.ApiRole(role))
        revoked, keys["revoked"] = apikeys.issue_key(ctx, "revoked", apikeys.ApiRole.DISPATCHER)
        apikeys.revoke_key(ctx, revoked.id)
        expired, keys["expired"] = apikeys.issue_key(
            ctx, "expired", apikeys.ApiRole.DISPATCHER, utcnow() + dt.timedelta(days=1))
        ctx.session.execute(update(ApiKey).where(ApiKey.id == expired.id)
                            .values(expires_at=utcnow() - dt.timedelta(minutes=1)))
    return Keys(keys)


def make_app(database_url: str, instance: Path, timezone: str = "Europe/Berlin", **extra: str) -> Flask:
    """The app with test settings; `extra`: more FIELDCAL_* settings."""
    settings = load_settings({**extra,
        "FIELDCAL_INSTANCE": str(instance), "FIELDCAL_DATABASE_URL": database_url,
        "FIELDCAL_SECRET_KEYS": secrets.token_urlsafe(32), "FIELDCAL_TIMEZONE": timezone,
        "FIELDCAL_ORGANIZER_EMAIL": ORGANIZER, "FIELDCAL_BASE_URL": "http://fieldcal.test",
        "FIELDCAL_AUDIT_KEYS": AUDIT_KEY, "FIELDCAL_BUSINESS_PHONE": "+49 30 555 0100",
        "FIELDCAL_CREDENTIAL_KEYS": Vault.new_key(),
    })
    app = create_app(settings=settings)
    app.testing = True
    return app


def body_of(client: FlaskClient, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    response = client.open(path, method=method, **kwargs)
    return response.status_code, response.get_json(silent=True)


STARTUP_TIMEOUT_S = 120.0  # a loaded CI machine imports the app slowly


def live_server(database_url: str, instance: Path) -> Iterator[LiveServer]:
    server = LiveServer(database_url, instance)
    try:
        server.start(timeout=STARTUP_TIMEOUT_S)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()
