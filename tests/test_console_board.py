"""Moving visits from the board without a browser: versions (stale), overlaps, bad input."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
from consolekit import make_app, set_password, sign_in, token
from flask import Flask
from flask.testing import FlaskClient
from seeding import Seed, appointment_row, domain, must_get

from server import directory, scheduling
from server.actors import Actor
from server.db import Database
from server.models import Appointment, Site, TimeOff


@pytest.fixture(scope="module")
def app(database_url: str, seed: Seed, db: Database,
        tmp_path_factory: pytest.TempPathFactory) -> Flask:
    set_password(db, seed.dispatcher.login)
    return make_app(database_url, tmp_path_factory.mktemp("console-board"))


@pytest.fixture()
def client(app: Flask, seed: Seed) -> Iterator[FlaskClient]:
    with app.test_client() as client:
        assert sign_in(client, seed.dispatcher.login) == 303
        yield client


def version_on_board(client: FlaskClient, appointment_id: int, day: dt.date) -> str:
    html = client.get(f"/console/board?view=week&day={day}").get_data(as_text=True)
    found = re.search(rf'data-id="{appointment_id}" data-version="([0-9a-f]+)"', html)
    assert found, f"visit {appointment_id} is not on the board"
    return found.group(1)


def move(client: FlaskClient, appointment_id: int, version: str, technician: str,
         when: dt.datetime) -> tuple[int, str]:
    response = client.post(f"/console/visits/{appointment_id}/move", data={
        "csrf": token(client), "version": version, "technician": technician,
        "date": f"{when:%Y-%m-%d}", "time": f"{when:%H:%M}"})
    return response.status_code, response.get_data(as_text=True)


def test_a_stale_move_is_refused_naming_who_changed_the_visit(
        client: FlaskClient, seed: Seed, db: Database) -> None:
    booked = seed.jobs["alice"][1]
    version = version_on_board(client, booked.appointment_id, booked.starts_at.date())
    row = appointment_row(db, booked.appointment_id)
    with domain(db, Actor(name="erin", channel="api", role="dispatcher")) as ctx:
        appointment = ctx.session.get(Appointment, booked.appointment_id)
        assert appointment is not None
        scheduling.reschedule(ctx, appointment, row.starts_at + dt.timedelta(hours=1),
                              row.ends_at + dt.timedelta(hours=1))
    status, html = move(client, booked.appointment_id, version, "alice",
                        row.starts_at.astimezone(dt.UTC))
    assert status == 409
    assert "was changed by erin (via api)" in html
    assert appointment_row(db, booked.appointment_id).starts_at == row.starts_at + dt.timedelta(hours=1)


def test_an_overlapping_move_is_refused_naming_the_blocking_visit(
        client: FlaskClient, seed: Seed, db: Database) -> None:
    mover, blocker = seed.jobs["alice"][2], seed.jobs["alice"][0]
    version = version_on_board(client, mover.appointment_id, mover.starts_at.date())
    status, html = move(client, mover.appointment_id, version, "alice",
                        blocker.starts_at.astimezone(dt.UTC))
    assert status == 409
    assert "Annual service" in html and f"#{blocker.appointment_id}" in html
    assert appointment_row(db, mover.appointment_id).starts_at == mover.starts_at


def test_bad_dates_are_explained(client: FlaskClient, seed: Seed) -> None:
    booked = seed.jobs["alice"][2]
    response = client.post(f"/console/visits/{booked.appointment_id}/move",
                           data={"csrf": token(client), "date": "tomorrow", "time": "9"})
    assert response.status_code == 400
    assert "YYYY-MM-DD" in response.get_data(as_text=True)
    assert client.get("/console/board?day=someday").status_code == 400


def test_conflicts_and_short_drives_are_shown_where_they_happen(
        client: FlaskClient, seed: Seed, db: Database) -> None:
    """Time off added after a visit was booked, and a gap too short for the drive between two
    sites with coordinates, are named on the visit itself, in the dispatcher's time."""
    day = dt.date(2031, 6, 2)
    first_at = dt.datetime(2031, 6, 2, 7, 0, tzinfo=dt.UTC)  # 09:00 in Berlin (summer)
    with domain(db) as ctx:
        customer = directory.find_customer(ctx.session, seed.customer_ids[0])
        berlin = directory.add_site(ctx, customer, "Hauptstraße 1, 10115 Berlin",
                                    postcode="10115", country="DE")
        hamburg = directory.add_site(ctx, customer, "Jungfernstieg 1, 20354 Hamburg",
                                     postcode="20354", country="DE")
        carol = directory.find_user(ctx.session, "carol")
        visits = []
        for title, site, start in (("Morning check", berlin, first_at),
                                   ("Late check", hamburg, first_at + dt.timedelta(hours=1, minutes=30))):
            job = directory.add_job(ctx, customer, title, site=site)
            visits.append(scheduling.book(ctx, job, carol, start, start + dt.timedelta(hours=1)).id)
    with db.write() as session:  # later: the sites get coordinates, carol gets time off
        for site_id, (lat, lon) in ((berlin.id, (52.5200, 13.4050)), (hamburg.id, (53.5511, 9.9937))):
            site = must_get(session, Site, site_id)
            assert site is not None
            site.latitude, site.longitude = lat, lon
        session.add(TimeOff(technician_id=carol.id, reason="Training",
                            starts_at=first_at + dt.timedelta(hours=1, minutes=45),
                            ends_at=first_at + dt.timedelta(hours=4)))

    html = client.get(f"/console/board?view=day&day={day}").get_data(as_text=True)
    late = html[html.index(f'id="visit-{visits[1]}"'):]
    late = late[:late.index("</li>\n</ul>") if "</li>\n</ul>" in late else len(late)]
    assert "30 min free before" in late and "not enough for the drive" in late
    drive = re.search(r"· (\d+) min drive", late)
    assert drive and int(drive.group(1)) > 120, late[:400]  # about 255 km by road
    assert "time off “Training”" in late
    zone = re.search(r"Times in ([\w/]+)\.", html)
    assert zone is not None
    shown = (first_at + dt.timedelta(hours=1, minutes=45)).astimezone(ZoneInfo(zone.group(1)))
    assert f"{shown:%H:%M}" in late  # the time off's start, in the dispatcher's zone
    early = html[html.index(f'id="visit-{visits[0]}"'):html.index(f'id="visit-{visits[1]}"')]
    assert "conflict" not in early  # the first visit keeps every rule
