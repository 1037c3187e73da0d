"""The console's settings pages change what the domain then does: working hours, time off,
skills and service areas of a technician, service types and holidays, each edit audited as the
signed-in dispatcher (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import secrets

from apikit import Keys
from flask import Flask
from flask.testing import FlaskClient
from seeding import Seed, domain
from settingskit import (  # noqa: F401  (app, keys and desk are fixtures used by name)
    BERLIN,
    app,
    desk,
    hours,
    keys,
    last_console_entry,
    monday,
    offers,
    post,
    service,
    technician,
    user_id,
)

from server import directory
from server.actions import Action
from server.db import Database
from server.models import ServiceArea, Site, TimeOff
from server.scheduling import capacity


def test_working_hours_skills_and_time_off_change_what_is_offered(
        app: Flask, db: Database, seed: Seed, keys: Keys, desk: tuple[FlaskClient, str]) -> None:  # noqa: F811
    skill = f"hrs{secrets.token_hex(3)}"
    login = technician(db, "hours")
    slug = service(desk, skill)
    day = monday(2)
    client = app.test_client()
    assert offers(client, keys, slug, day) == []  # nobody has the skill yet

    response = post(desk, f"/console/settings/technicians/{login}/skills",
                    {"skills": f"{skill}, piston"})
    assert response.status_code == 303
    assert offers(client, keys, slug, day) == []  # skilled, but no working hours
    audit = last_console_entry(db, "user", user_id(db, login), Action.USER_UPDATE,
                               seed.dispatcher.login)
    assert audit["after"]["skills"] == sorted([skill, "piston"])

    response = post(desk, f"/console/settings/technicians/{login}/hours",
                    hours(login, mon="09:00-11:00, 14:00–15:00", tue="08:00-12:00"))
    assert response.status_code == 303
    assert response.location.split("?")[0].endswith(f"/console/settings/technicians/{login}")
    assert offers(client, keys, slug, day) == [("09:00", login), ("09:30", login),
                                               ("10:00", login), ("14:00", login)]
    audit = last_console_entry(db, "user", user_id(db, login), Action.WORKING_HOURS_SET,
                               seed.dispatcher.login)
    assert audit["after"]["mon"] == ["09:00-11:00", "14:00-15:00"]
    page = desk[0].get(f"/console/settings/technicians/{login}?saved=hours").get_data(as_text=True)
    assert 'value="09:00-11:00, 14:00-15:00"' in page and "Working hours saved." in page

    # a whole day off (typed in the technician's zone): Monday offers nothing, Tuesday still does
    response = post(desk, f"/console/settings/technicians/{login}/time-off",
                    {"first_day": day.isoformat(), "last_day": day.isoformat(),
                     "reason": "Training"})
    assert response.status_code == 303
    assert offers(client, keys, slug, day) == []
    assert offers(client, keys, slug, day + dt.timedelta(days=1))[0] == ("08:00", login)
    with db.read() as session:
        (row,) = session.query(TimeOff).filter_by(technician_id=user_id(db, login)).all()
        assert row.starts_at == dt.datetime.combine(day, dt.time(), BERLIN)
        assert row.ends_at == dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), BERLIN)
        time_off_id = row.id
    last_console_entry(db, "user", user_id(db, login), Action.TIME_OFF_ADD, seed.dispatcher.login)
    page = desk[0].get(f"/console/settings/technicians/{login}").get_data(as_text=True)
    assert f"{day:%a %d %b %Y} — Training" in page

    # part of a day: from 10:00 on Monday, the morning stays
    response = post(desk, f"/console/settings/technicians/{login}/time-off/{time_off_id}/remove",
                    {})
    assert response.status_code == 303
    last_console_entry(db, "user", user_id(db, login), Action.TIME_OFF_REMOVE,
                       seed.dispatcher.login)
    response = post(desk, f"/console/settings/technicians/{login}/time-off",
                    {"first_day": day.isoformat(), "from_time": "10:00",
                     "last_day": day.isoformat(), "until_time": "15:00"})
    assert response.status_code == 303
    assert offers(client, keys, slug, day) == [("09:00", login)]


def test_service_areas_change_who_is_offered_for_a_postcode(
        app: Flask, db: Database, seed: Seed, keys: Keys, desk: tuple[FlaskClient, str]) -> None:  # noqa: F811
    skills = {"berlin": f"ber{secrets.token_hex(3)}", "hamburg": f"ham{secrets.token_hex(3)}"}
    people = {city: technician(db, city, [skill]) for city, skill in skills.items()}
    services = {city: service(desk, skill) for city, skill in skills.items()}
    for login in people.values():
        assert post(desk, f"/console/settings/technicians/{login}/hours",
                    hours(login, mon="08:00-09:00")).status_code == 303
    with domain(db) as ctx:
        customer = directory.add_customer(ctx, "Area Check GmbH", email="area@x.test",
                                          timezone="Europe/Berlin")
        in_berlin = directory.add_site(ctx, customer, "Hauptstraße 1, 10115 Berlin",
                                       postcode="10115", country="DE").id
        in_hamburg = directory.add_site(ctx, customer, "Jungfernstieg 1, 20095 Hamburg",
                                        postcode="20095", country="DE").id
    day, client = monday(2), app.test_client()
    berlin, hamburg = people["berlin"], people["hamburg"]
    assert offers(client, keys, services["berlin"], day, in_hamburg) == [("08:00", berlin)]

    assert post(desk, f"/console/settings/technicians/{berlin}/areas",
                {"country": "de", "prefixes": "10, 12"}).status_code == 303
    assert offers(client, keys, services["berlin"], day, in_berlin) == [("08:00", berlin)]
    assert offers(client, keys, services["berlin"], day, in_hamburg) == []
    audit = last_console_entry(db, "user", user_id(db, berlin), Action.SERVICE_AREA_ADD,
                               seed.dispatcher.login)
    assert audit["after"]["postcode_prefix"] == "12"
    page = desk[0].get(f"/console/settings/technicians/{berlin}").get_data(as_text=True)
    assert "DE 10…" in page and "DE 12…" in page

    assert post(desk, f"/console/settings/technicians/{hamburg}/areas",
                {"country": "DE", "centre": "53.5511, 9.9937", "radius_km": "30"}
                ).status_code == 303
    assert offers(client, keys, services["hamburg"], day, in_hamburg) == []  # no point yet
    with domain(db) as ctx:  # the Hamburg site gets its coordinates: inside the circle
        hamburg_site = ctx.session.get(Site, in_hamburg)
        assert hamburg_site is not None
        directory.update_site(ctx, hamburg_site, coordinates=(53.5503, 9.9930))
    assert offers(client, keys, services["hamburg"], day, in_hamburg) == [("08:00", hamburg)]

    with db.read() as session:
        rule = session.query(ServiceArea).filter_by(technician_id=user_id(db, berlin),
                                                    postcode_prefix="10").one()
    assert post(desk, f"/console/settings/technicians/{berlin}/areas/{rule.id}/remove",
                {}).status_code == 303
    assert offers(client, keys, services["berlin"], day, in_berlin) == []  # serves only 12…
    last_console_entry(db, "user", user_id(db, berlin), Action.SERVICE_AREA_REMOVE,
                       seed.dispatcher.login)


def test_a_service_type_added_and_edited_from_the_console(
        app: Flask, db: Database, seed: Seed, keys: Keys, desk: tuple[FlaskClient, str]) -> None:  # noqa: F811
    skill = f"svc{secrets.token_hex(3)}"
    login = technician(db, "svc", [skill])
    assert post(desk, f"/console/settings/technicians/{login}/hours",
                hours(login, mon="08:00-12:00")).status_code == 303
    slug = service(desk, skill, arrival_windows="08:00-10:00, 10:00–12:00")
    day, client = monday(3), app.test_client()
    assert offers(client, keys, slug, day) == [("08:00", login), ("10:00", login)]

    page = desk[0].get(f"/console/settings/services/{slug}").get_data(as_text=True)
    assert 'value="08:00-10:00, 10:00-12:00"' in page
    response = post(desk, f"/console/settings/services/{slug}", {
        "name": "Longer check", "duration_minutes": "180", "buffer_before_minutes": "15",
        "buffer_after_minutes": "15", "travel_minutes": "0", "min_notice_minutes": "0",
        "horizon_days": "60", "window_capacity": "0", "skills": skill, "arrival_windows": "",
        "active": "on"})
    assert response.status_code == 303
    assert offers(client, keys, slug, day) == [("08:00", login), ("08:30", login),
                                               ("09:00", login)]  # 3 h in 08:00-12:00
    with db.read() as session:
        edited = capacity.find_service_type(session, slug)
        assert (edited.name, edited.duration_minutes, edited.arrival_windows) == (
            "Longer check", 180, [])
        service_id = edited.id
    audit = last_console_entry(db, "service_type", service_id, Action.SERVICE_TYPE_EDIT,
                               seed.dispatcher.login)
    assert audit["before"]["duration_minutes"] == 60 and audit["after"]["duration_minutes"] == 180

    stale = {"version": "0" * 16, "name": "Lost edit", "duration_minutes": "30",
             **{n: "0" for n in ("buffer_before_minutes", "buffer_after_minutes", "travel_minutes",
                                 "min_notice_minutes", "window_capacity")}, "horizon_days": "60"}
    response = post(desk, f"/console/settings/services/{slug}", stale)
    assert response.status_code == 409
    assert "This service type was changed since you loaded this page" in response.get_data(
        as_text=True)
    with db.read() as session:
        assert capacity.find_service_type(session, slug).name == "Longer check"
    response = post(desk, f"/console/settings/services/{slug}", {  # "active" unticked
        "name": "Longer check", "duration_minutes": "180", "buffer_before_minutes": "15",
        "buffer_after_minutes": "15", "travel_minutes": "0", "min_notice_minutes": "0",
        "horizon_days": "60", "window_capacity": "0", "skills": skill, "arrival_windows": ""})
    assert response.status_code == 303
    with db.read() as session:
        assert capacity.find_service_type(session, slug).active is False


def test_a_holiday_stops_every_offer_that_day(
        app: Flask, db: Database, seed: Seed, keys: Keys, desk: tuple[FlaskClient, str]) -> None:  # noqa: F811
    skill = f"hol{secrets.token_hex(3)}"
    login = technician(db, "hol", [skill])
    assert post(desk, f"/console/settings/technicians/{login}/hours",
                hours(login, mon="08:00-10:00", tue="08:00-10:00")).status_code == 303
    slug = service(desk, skill)
    day, client = monday(5), app.test_client()
    assert offers(client, keys, slug, day)
    response = post(desk, "/console/settings/holidays",
                    {"first_day": day.isoformat(), "last_day": day.isoformat(),
                     "reason": "Company outing"})
    assert response.status_code == 303
    assert offers(client, keys, slug, day) == []
    assert offers(client, keys, slug, day + dt.timedelta(days=1))
    page = desk[0].get("/console/settings/holidays").get_data(as_text=True)
    assert f"{day:%a %d %b %Y} — Company outing" in page
    with db.read() as session:
        holiday = session.query(TimeOff).filter_by(technician_id=None,
                                                   reason="Company outing").one()
    # typed in the dispatcher's zone (the seeded dispatcher reads UTC), not a technician's
    assert holiday.starts_at == dt.datetime.combine(day, dt.time(), dt.UTC)
    last_console_entry(db, "holiday", holiday.id, Action.HOLIDAY_ADD, seed.dispatcher.login)
    assert post(desk, f"/console/settings/holidays/{holiday.id}/remove", {}).status_code == 303
    assert offers(client, keys, slug, day)
    last_console_entry(db, "holiday", holiday.id, Action.HOLIDAY_REMOVE, seed.dispatcher.login)
