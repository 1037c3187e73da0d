"""Console settings refusals: bad input is refused beside its field with nothing stored; an
edit from a page loaded before another change, a write without the session's CSRF token and
one from read-only staff change nothing (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

import pytest
from apikit import Keys
from click.testing import CliRunner
from consolekit import set_password, sign_in
from flask import Flask
from flask.testing import FlaskClient
from settingskit import (  # noqa: F401  (app, keys and desk are fixtures used by name)
    app,
    desk,
    field_error,
    form_version,
    hours,
    keys,
    post,
    stored,
    technician,
)

from server.cli import cli
from server.db import Database

BAD_INPUT = [
    # (path under the technician (or /console/settings/...), form, field, words of the message)
    ("hours", hours("x", mon="08:00-12:00", tue="9-17"), "hours_tue", "must be HH:MM-HH:MM"),
    ("hours", hours("x", wed="08:00-12:00, 11:00-13:00"), "hours_wed", "must not overlap"),
    ("skills", {"skills": "screw compressors"}, "skills", "no spaces"),
    ("time-off", {"first_day": "2031-05-02", "last_day": "2031-05-01"}, "last_day",
     "must end after it starts"),
    ("time-off", {"first_day": "next week", "last_day": "2031-05-01"}, "first_day",
     "YYYY-MM-DD"),
    ("time-off", {"first_day": "2031-05-01", "from_time": "9am", "last_day": "2031-05-01"},
     "from_time", "HH:MM"),
    ("areas", {"country": "Narnia", "prefixes": "10"}, "country", "ISO code"),
    ("areas", {"country": "DE", "prefixes": "10-12"}, "prefixes", "letters and digits"),
    ("areas", {"country": "DE", "centre": "52.5"}, "centre", "latitude,longitude"),
    ("areas", {"country": "DE", "centre": "52.5,13.4", "radius_km": "5000"}, "radius_km",
     "between 0 and 1000"),
    ("/console/settings/services", {"slug": "Bad Slug", "name": "X", "duration_minutes": "60"},
     "slug", "lower-case"),
    ("/console/settings/services", {"slug": "fine", "name": "X", "duration_minutes": "an hour"},
     "duration_minutes", "whole number"),
    ("/console/settings/services", {"slug": "fine", "name": "X", "duration_minutes": "0"},
     "duration_minutes", "from 1 to 720"),
    ("/console/settings/services", {"slug": "fine", "name": "X", "duration_minutes": "30",
                                    "arrival_windows": "12:00-08:00"},
     "arrival_windows", "must look like 08:00-12:00"),
    ("/console/settings/holidays", {"first_day": "2031-12-24", "last_day": "2033-01-01"},
     "last_day", "at most a year"),
]


@pytest.mark.parametrize("case", range(len(BAD_INPUT)))
def test_bad_input_is_refused_beside_its_field_and_nothing_changes(
        db: Database, desk: tuple[FlaskClient, str], case: int) -> None:  # noqa: F811
    where, form, field, words = BAD_INPUT[case]
    login = technician(db, "bad")
    assert post(desk, f"/console/settings/technicians/{login}/hours",
                hours(login, fri="07:00-15:00")).status_code == 303
    numbers = {"buffer_before_minutes": "0", "buffer_after_minutes": "0", "travel_minutes": "0",
               "min_notice_minutes": "0", "horizon_days": "30", "window_capacity": "0"}
    if where.startswith("/console/settings/services"):
        form = {**numbers, **form}
    path = where if where.startswith("/") else f"/console/settings/technicians/{login}/{where}"
    before = stored(db, login)
    response = post(desk, path, form)
    html = response.get_data(as_text=True)
    assert response.status_code == 400, html
    assert words in field_error(html, field)
    for name, value in form.items():  # what was typed is kept for correcting
        if value and name in ("prefixes", "skills", "slug", f"hours_{name[-3:]}"):
            assert f'value="{value}"' in html
    assert stored(db, login) == before


def test_writes_without_the_token_or_from_read_only_staff_change_nothing(
        app: Flask, db: Database, database_url: str, tmp_path: Path,  # noqa: F811
        desk: tuple[FlaskClient, str]) -> None:  # noqa: F811
    login = technician(db, "csrf")
    viewer = f"view-{secrets.token_hex(3)}"
    added = CliRunner().invoke(cli, ["dispatcher", "add", viewer, "--name", "Vera Viewer",
                                     "--email", f"{viewer}@x.test", "--readonly", "--json"],
                               env={"FIELDCAL_INSTANCE": str(tmp_path),
                                    "FIELDCAL_DATABASE_URL": database_url,
                                    "FIELDCAL_SECRET_KEYS": None,
                                    "FIELDCAL_TIMEZONE": "Europe/Berlin"},
                               catch_exceptions=False)
    assert added.exit_code == 0, added.output
    assert json.loads(added.output)["role"] == "readonly"
    set_password(db, viewer)
    looker = app.test_client()
    assert sign_in(looker, viewer) == 303
    assert looker.get("/console").location.endswith("/console/settings")  # not the board
    assert looker.get("/console/board").status_code == 403
    before = stored(db, login)
    client, _ = desk
    for data in ({}, {"csrf": "forged"}):
        response = client.post(f"/console/settings/technicians/{login}/hours",
                               data={**data, **hours(login, mon="08:00-12:00")})
        assert response.status_code == 403
        assert "This form has expired" in response.get_data(as_text=True)
    page = looker.get(f"/console/settings/technicians/{login}").get_data(as_text=True)
    assert "Weekly working hours" in page and "<fieldset disabled>" in page
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    response = looker.post(f"/console/settings/technicians/{login}/hours",
                           data={"csrf": csrf, **hours(login, mon="08:00-12:00")})
    assert response.status_code == 403
    assert "may look at the settings but not change them" in response.get_data(as_text=True)
    assert stored(db, login) == before
    assert client.get("/console/board").status_code == 200  # the dispatcher is still signed in


def test_an_edit_from_a_page_loaded_before_another_change_is_refused(
        app: Flask, db: Database, keys: Keys, desk: tuple[FlaskClient, str]) -> None:  # noqa: F811
    login = technician(db, "stale")
    client, _ = desk
    page = f"/console/settings/technicians/{login}"
    loaded = form_version(client, page, f"{page}/hours")
    api = app.test_client()
    etag = api.get(f"/api/v1/technicians/{login}", headers=keys.headers("dispatcher")).headers["ETag"]
    response = api.put(f"/api/v1/technicians/{login}/working-hours",
                       headers=keys.headers("dispatcher", **{"If-Match": etag}),
                       json={"working_hours": [{"weekday": 0, "starts": "07:00", "ends": "11:00"}]})
    assert response.status_code == 200, response.get_json()
    before = stored(db, login)
    response = post(desk, f"{page}/hours", {"version": loaded, **hours(login, mon="12:00-18:00")})
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "These working hours were changed since you loaded this page" in html
    assert "(via api)" in html and 'value="07:00-11:00"' in html  # what is stored now
    assert stored(db, login) == before
    assert post(desk, f"{page}/hours", hours(login, mon="12:00-18:00")).status_code == 303
