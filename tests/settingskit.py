"""Console settings from tests: a signed-in dispatcher, forms sent as the pages send them,
what the API then offers, and the audit entries the edits leave."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apikit import Keys, make_keys
from consolekit import make_app, set_password, sign_in, token
from flask import Flask
from flask.testing import FlaskClient
from seeding import Seed, audit_entries, domain, row_counts

from server import directory
from server.actions import Action
from server.db import Database
from server.models import Role, ServiceArea, ServiceType, TimeOff, WorkingHours

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture(scope="module")
def app(database_url: str, seed: Seed, tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return make_app(database_url, tmp_path_factory.mktemp("console-settings"))


@pytest.fixture(scope="module")
def keys(db: Database) -> Keys:
    return make_keys(db)


@pytest.fixture(scope="module")
def desk(app: Flask, db: Database, seed: Seed) -> tuple[FlaskClient, str]:
    """A dispatcher signed in to the console, and the session's CSRF token."""
    set_password(db, seed.dispatcher.login)
    client = app.test_client()
    assert sign_in(client, seed.dispatcher.login) == 303
    return client, token(client)


# edits that replace a whole state send back the version of the page they were made on
EDITS = re.compile(r"^(/console/settings/technicians/[^/]+)/(?:hours|skills)$"
                   r"|^(/console/settings/services/[^/]+)$")


def form_version(client: FlaskClient, page: str, action: str) -> str:
    html = client.get(page).get_data(as_text=True)
    found = re.search(rf'action="{re.escape(action)}"[^>]*>\s*<input type="hidden" name="csrf" '
                      r'value="[^"]*"><input type="hidden" name="version" value="([^"]+)"', html)
    assert found, f"no version in the form of {action}"
    return found.group(1)


def post(desk: tuple[FlaskClient, str], path: str, data: dict[str, str]) -> Any:
    """A console form sent as the page would send it (with the version it was loaded at)."""
    client, csrf = desk
    edit = EDITS.match(path)
    if edit and "version" not in data:
        data = {"version": form_version(client, edit.group(1) or edit.group(2), path), **data}
    return client.post(path, data={"csrf": csrf, **data})


def monday(weeks: int) -> dt.date:
    today = dt.datetime.now(BERLIN).date()
    return today + dt.timedelta(days=7 * weeks - today.weekday())


def technician(db: Database, prefix: str, skills: list[str] | None = None) -> str:
    login = f"{prefix}-{secrets.token_hex(3)}"
    with domain(db) as ctx:
        directory.add_user(ctx, login, name=f"{prefix.title()} Tester", email=f"{login}@x.test",
                           role=Role.TECHNICIAN, timezone="Europe/Berlin", skills=skills or [])
    return login


def service(desk: tuple[FlaskClient, str], skill: str, **fields: str) -> str:
    slug = f"svc-{secrets.token_hex(3)}"
    response = post(desk, "/console/settings/services", {
        "slug": slug, "name": f"Check {slug}", "duration_minutes": "60",
        "buffer_before_minutes": "0", "buffer_after_minutes": "0", "travel_minutes": "0",
        "min_notice_minutes": "0", "horizon_days": "60", "window_capacity": "0",
        "skills": skill, "arrival_windows": "", **fields})
    assert response.status_code == 303, response.get_data(as_text=True)
    return slug


def offers(client: FlaskClient, keys: Keys, slug: str, day: dt.date,
           site: int | None = None) -> list[tuple[str, str]]:
    """(Berlin HH:MM, technician) of every slot the API offers that day."""
    start = dt.datetime.combine(day, dt.time(), BERLIN)
    query = {"service": slug, "from": start.isoformat(),
             "to": (start + dt.timedelta(days=1)).isoformat()}
    if site is not None:
        query["site"] = str(site)
    response = client.get("/api/v1/availability", query_string=query,
                          headers=keys.headers("dispatcher"))
    assert response.status_code == 200, response.get_json()
    return [(dt.datetime.fromisoformat(s["starts_at"]).astimezone(BERLIN).strftime("%H:%M"),
             s["technician"]) for s in response.get_json()["items"]]


def hours(login: str, **days: str) -> dict[str, str]:
    return {f"hours_{day}": days.get(day, "") for day in
            ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}


def field_error(html: str, field: str) -> str:
    """The message shown beside a form field (its id-error element), tied to the input."""
    found = re.search(rf'<span class="field-error" id="{field}-error">([^<]*)</span>', html)
    assert found, f"no error beside {field}"
    assert re.search(rf'id="{field}"[^>]*aria-describedby="[^"]*{field}-error[^"]*"[^>]*'
                     r'aria-invalid="true"', html, re.S), f"{field} is not tied to its error"
    return found.group(1)


def last_console_entry(db: Database, entity: str, entity_id: object, action: Action,
                       actor: str) -> dict[str, Any]:
    entries = audit_entries(db, entity, entity_id, action.value)
    assert entries, f"no {action} audit entry"
    entry = entries[-1]
    assert (entry.actor, entry.channel) == (actor, "console")
    return {"before": entry.before, "after": entry.after}


def user_id(db: Database, login: str) -> int:
    with db.read() as session:
        return directory.find_user(session, login).id


def stored(db: Database, login: str) -> tuple[Any, ...]:
    with db.read() as session:
        user = directory.find_user(session, login)
        return (sorted((r.weekday, r.starts, r.ends) for r in session.query(WorkingHours)
                       .filter_by(technician_id=user.id)),
                list(user.skills), session.query(TimeOff).count(),
                session.query(ServiceArea).count(), session.query(ServiceType).count(),
                row_counts(db))


