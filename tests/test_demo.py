"""What `fieldcal init --demo` prints works: booking page, share pages, feeds."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from zoneinfo import ZoneInfo

from bookkit import details, hidden, slot_values
from click.testing import CliRunner, Result
from feedkit import strict_parse
from sqlalchemy import select

from server.app import create_app
from server.cli import cli
from server.config import load_settings
from server.db import get_database
from server.models import Appointment, Customer, Job, User, utcnow
from server.scheduling import areas, booking
from server.scheduling.availability import free_slots

BERLIN = ZoneInfo("Europe/Berlin")


def test_demo_links_and_booking_work(tmp_path: Path) -> None:
    env = {"FIELDCAL_INSTANCE": str(tmp_path), "FIELDCAL_BASE_URL": "http://demo.test",
           "FIELDCAL_SECRET_KEYS": None, "FIELDCAL_AUDIT_KEYS": None, "FIELDCAL_TIMEZONE": None,
           "FIELDCAL_DATABASE_URL": None}
    result = CliRunner().invoke(cli, ["init", "--demo"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "FIELDCAL_TIMEZONE=Europe/Berlin" in (tmp_path / "fieldcal.env").read_text()
    urls = re.findall(r"http://demo\.test(/\S+)", result.output)
    assert "/book" in urls and len([u for u in urls if u.startswith("/s/")]) == 2
    assert len([u for u in urls if u.startswith("/feeds/")]) == 2
    assert len([u for u in urls if u.startswith("/d/")]) == 1  # Anna's day page
    settings = load_settings({"FIELDCAL_INSTANCE": str(tmp_path)})
    client = create_app(settings=settings).test_client()
    for url in (u for u in urls if not u.startswith("/dav/")):  # /dav/ is Radicale's (wsgi.py)
        response = client.get(url)
        assert response.status_code == 200, url
        if url.startswith("/feeds/"):
            strict_parse(response.data)
    services = client.get("/book").get_data(as_text=True)
    assert "Repair visit" in services and "Annual service" in services
    with get_database(settings.database_url).read() as session:
        repair = booking.service_type_by_slug(session, "repair")
        now = utcnow()
        assert free_slots(session, repair, start=now, end=now + dt.timedelta(days=14), now=now)


def test_berlin_bookings_stay_with_the_berlin_crew(tmp_path: Path) -> None:
    """Booking page and CLI: a Berlin address never gets a New York technician; a Hamburg job
    is refused for a Berlin technician unless a dispatcher forces it (with a reason, audited)."""
    env = {"FIELDCAL_INSTANCE": str(tmp_path), "FIELDCAL_BASE_URL": "http://demo.test",
           "FIELDCAL_SECRET_KEYS": None, "FIELDCAL_TIMEZONE": None, "FIELDCAL_DATABASE_URL": None,
           "FIELDCAL_BOOKING_RATE": "100000"}
    runner = CliRunner()
    assert runner.invoke(cli, ["init", "--demo"], env=env, catch_exceptions=False).exit_code == 0
    settings = load_settings({"FIELDCAL_INSTANCE": str(tmp_path), "FIELDCAL_BOOKING_RATE": "100000"})
    client = create_app(settings=settings).test_client()
    database = get_database(settings.database_url)
    with database.read() as session:
        crew = {u.login: u.id for u in session.scalars(select(User))}
        berlin, new_york = {crew["anna"], crew["jonas"]}, {crew["maria"], crew["sam"]}
        repair = booking.service_type_by_slug(session, "repair")
        now = utcnow()
        offers = free_slots(session, repair, start=now, end=now + dt.timedelta(days=14), now=now,
                            area=areas.area_of_address("Alexanderplatz 1, 10178 Berlin"))
        assert offers and all(set(o.technician_ids) <= berlin for o in offers)
        everyone = free_slots(session, repair, start=now, end=now + dt.timedelta(days=14), now=now)
        assert any(set(o.technician_ids) & new_york for o in everyone)  # the filter matters

    form = details("kim@example.test", address="Alexanderplatz 1, 10178 Berlin",
                   timezone="Europe/Berlin")
    page = client.post("/book/repair/details", data=form)
    assert page.status_code == 200, page.text
    offered = [dt.datetime.fromisoformat(v) for v in slot_values(page.text)]
    assert offered
    # Berlin crew hours are 08:00-17:00 Berlin; New York's would be 14:00-23:00 Berlin.
    assert max(o.astimezone(BERLIN).time() for o in offered) <= dt.time(15, 0)
    latest = max(offered, key=lambda o: o.astimezone(BERLIN).time())
    held = client.post("/book/repair/hold", data={
        "details": hidden(page.text, "details"), "key": hidden(page.text, "key"),
        "slot": latest.isoformat(), "week": hidden(page.text, "week")})
    assert held.status_code == 303, held.text
    no_postcode = client.post("/book/repair/details",
                              data=details("lee@example.test", address="Somewhere in town"))
    assert no_postcode.status_code == 400 and "postcode" in no_postcode.text
    with database.read() as session:
        mine = session.scalars(select(Appointment).join(Job, Job.id == Appointment.job_id)
                               .join(Customer, Customer.id == Job.customer_id)
                               .where(Customer.email == "kim@example.test")).one()
        assert mine.technician_id in berlin

    def fieldcal(*args: str) -> Result:
        return runner.invoke(cli, list(args), env=env, catch_exceptions=False)

    added = json.loads(fieldcal("customer", "add", "Hafen Kälte GmbH", "--tz", "Europe/Berlin",
                                "--address", "Große Elbstraße 14, 22767 Hamburg", "--json").output)
    assert added["sites"][0]["postcode"] == "22767" and added["sites"][0]["country"] == "DE"
    job = json.loads(fieldcal("job", "add", str(added["id"]), "Compressor trips", "--json").output)
    start = next(o for o in offers if crew["anna"] in o.technician_ids).starts_at.isoformat()
    refused = fieldcal("appointment", "add", str(job["id"]), "--technician", "anna",
                       "--start", start, "--duration", "1h")
    assert refused.exit_code == 1
    assert "Anna Schmidt (anna) does not serve DE 22767" in refused.output
    assert "--force --reason" in refused.output
    berlin_job = json.loads(fieldcal("job", "add", "1", "Check-up", "--json").output)
    to_new_york = fieldcal("appointment", "add", str(berlin_job["id"]), "--technician", "maria",
                           "--start", start, "--duration", "1h")
    assert to_new_york.exit_code == 1 and "does not serve DE 10435" in to_new_york.output
    forced = fieldcal("appointment", "add", str(job["id"]), "--technician", "anna", "--start",
                      start, "--duration", "1h", "--force", "--reason", "Anna is in Hamburg",
                      "--json")
    assert forced.exit_code == 0, forced.output
    booked = json.loads(forced.output)
    trail = json.loads(fieldcal("audit", "show", str(booked["id"]), "--json").output)
    override = [e for e in trail if e["action"] == "appointment.override"]
    assert override[0]["after"]["reason"] == "Anna is in Hamburg"
    assert override[0]["after"]["overridden"][0]["rule"] == "area"
