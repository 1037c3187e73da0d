"""Phone intake (/console/new) over HTTP, on both backends: search, a new caller, the
earliest times (area, skills, hours), booking (audit, confirmation email), a time taken
meanwhile, bad input."""

from __future__ import annotations

import datetime as dt
import html
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from consolekit import make_app, set_password, sign_in, token
from flask import Flask
from flask.testing import FlaskClient
from mailkit import post_office, settings_for, smtp_server
from phonekit import PhoneSeed, hidden_fields, new_caller, offers, seed_phone
from seeding import Seed, after_of, audit_entries, domain
from sqlalchemy import func, select

from server import directory, scheduling
from server.actions import Action
from server.db import Database
from server.models import Appointment, AppointmentStatus, Customer, Job, OutboxMessage, Site

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture(scope="module")
def phone(db: Database) -> PhoneSeed:
    return seed_phone(db)


@pytest.fixture(scope="module")
def app(database_url: str, seed: Seed, db: Database,
        tmp_path_factory: pytest.TempPathFactory) -> Flask:
    set_password(db, seed.dispatcher.login)
    return make_app(database_url, tmp_path_factory.mktemp("console-intake"))


@pytest.fixture(scope="module")
def client(app: Flask, seed: Seed) -> FlaskClient:
    """One signed-in dispatcher for the module (signing in is deliberately slow); no `with`,
    so no request context stays pushed between requests (each request gets its own `g`)."""
    client = app.test_client()
    assert sign_in(client, seed.dispatcher.login) == 303
    return client


def slots(client: FlaskClient, form: dict[str, str]) -> tuple[int, str]:
    response = client.post("/console/new/slots", data={**form, "csrf": token(client)})
    return response.status_code, response.get_data(as_text=True)


def book(client: FlaskClient, page: str, index: int = 0, /, **changes: str) -> tuple[int, str]:
    """Press the index-th "Book …" button of a slots page (its hidden fields go along)."""
    form = {**hidden_fields(page), "slot": offers(page)[index][0], **changes}
    response = client.post("/console/new/book", data=form)
    location = response.headers.get("Location", "")
    return response.status_code, location or response.get_data(as_text=True)


def customers_named(db: Database, email: str) -> int:
    with db.read() as session:
        return session.scalar(select(func.count()).select_from(Customer)
                              .where(Customer.email == email)) or 0


def stored(db: Database) -> tuple[int, ...]:
    """How many customers, sites, jobs and visits there are."""
    with db.read() as session:
        return tuple(session.scalar(select(func.count()).select_from(table)) or 0
                     for table in (Customer, Site, Job, Appointment))


def test_search_finds_the_caller_by_name_phone_and_postcode(client: FlaskClient,
                                                            phone: PhoneSeed) -> None:
    pick = f"/console/new/details?customer={phone.customer_id}&amp;site={phone.site_id}"
    digits = phone.customer_phone.replace("+49", "0").replace(" ", "")  # as a caller says it
    for query in (phone.customer_name[:12].lower(), digits, "10115", "pfannkuchstr"):
        html = client.get("/console/new", query_string={"q": query}).get_data(as_text=True)
        assert phone.customer_name in html and pick in html, query
    html = client.get("/console/new", query_string={"q": "Nobody Such"}).get_data(as_text=True)
    assert "0 customers found" in html
    assert 'id="field-name" name="name" type="text" value="Nobody Such"' in html  # starts the form
    html = client.get("/console/new", query_string={"q": "%"}).get_data(as_text=True)
    assert "Type at least 2 characters" in html


def test_times_respect_the_service_area_skills_and_working_hours(client: FlaskClient,
                                                                 phone: PhoneSeed) -> None:
    status, page = slots(client, new_caller(phone.service))
    assert status == 200, page
    offered = offers(page)
    assert len(offered) == 8
    for value, label in offered:
        assert phone.berlin in label and phone.new_york not in label, label  # he serves 10115
        starts = dt.datetime.fromisoformat(value).astimezone(BERLIN)
        assert starts.weekday() < 5 and dt.time(8) <= starts.time() <= dt.time(16), label
    assert [v for v, _ in offered] == sorted(v for v, _ in offered)
    status, page = slots(client, new_caller(phone.service, address="350 5th Ave, New York, NY 10018",
                                            timezone="America/New_York"))
    assert status == 200
    assert offers(page) and all(phone.new_york in label for _, label in offers(page))
    status, page = slots(client, new_caller(phone.service, address="Marienplatz 1, 80331 München"))
    assert status == 200 and offers(page) == [] and 'id="no-times"' in page  # nobody goes there
    status, page = slots(client, {**new_caller(phone.service), "after": offered[-1][0]})  # "Later"
    assert status == 200 and offers(page)[0][0] > offered[-1][0]


def test_arrival_windows_are_offered_and_kept(client: FlaskClient, phone: PhoneSeed,
                                              db: Database) -> None:
    _, page = slots(client, new_caller(phone.windowed))
    labels = [label for _, label in offers(page)]
    assert labels and all(re.search(r"\(arrival (08:00–12:00|13:00–17:00)\)", label) for label in labels)
    status, where = book(client, page)
    assert status == 303, where
    with db.read() as session:
        appointment = session.get(Appointment, int(where.rsplit("/", 1)[1]))
        assert appointment is not None and appointment.window_start is not None
        assert appointment.window_end is not None
        window = (f"{appointment.window_start.astimezone(BERLIN):%H:%M}–"
                  f"{appointment.window_end.astimezone(BERLIN):%H:%M}")
    assert f"(arrival {window})" in labels[0]
    assert f"arrival {window}" in client.get(where).get_data(as_text=True)


def test_a_new_caller_is_booked_audited_and_emailed(client: FlaskClient, phone: PhoneSeed,
                                                    db: Database, database_url: str,
                                                    tmp_path: Path) -> None:
    form = new_caller(phone.service)
    _, page = slots(client, form)
    status, where = book(client, page)
    assert status == 303 and re.fullmatch(r".*/console/new/booked/\d+", where), where
    appointment_id = int(where.rsplit("/", 1)[1])
    html = client.get(where).get_data(as_text=True)
    assert f"is on its way to {form['email']}" in html and phone.berlin in html
    with db.read() as session:
        appointment = session.get(Appointment, appointment_id)
        assert appointment is not None and appointment.technician is not None
        assert appointment.status == AppointmentStatus.CONFIRMED
        assert appointment.technician.name == phone.berlin
        assert appointment.service_type is not None and appointment.service_type.slug == phone.service
        assert appointment.starts_at == dt.datetime.fromisoformat(offers(page)[0][0])
        job = appointment.job
        assert (job.source, job.priority) == ("phone", "high")
        assert "E42" in job.problem and "Serial: KS-9911" in job.problem
        assert job.customer.email == form["email"] and job.customer.phone == form["phone"]
        site = job.site
        assert site is not None and (site.country, site.postcode) == ("DE", "10115")
        assert (site.compressor_make, site.compressor_model, site.compressor_serial) == (
            "Kaeser", "SK 22", "KS-9911")
        queued = session.scalars(select(OutboxMessage).where(
            OutboxMessage.kind == "appointment.changed")).all()
        assert [m.payload["action"] for m in queued
                if m.payload["appointment_id"] == appointment_id] == ["appointment.book"]
    entries = audit_entries(db, "job", appointment.job_id, Action.INTAKE_PHONE.value)
    assert len(entries) == 1 and entries[0].channel == "console" and entries[0].actor == "dispatch"
    after = after_of(entries[0])
    assert after["new_customer"] is True and after["appointment"] == appointment_id
    assert audit_entries(db, "appointment", appointment_id, Action.APPOINTMENT_BOOK.value)
    with smtp_server() as smtp:
        post_office(db, settings_for(database_url, tmp_path, smtp.url)).drain()
        mails = smtp.inbox.to(form["email"])
    assert len(mails) == 1
    text = mails[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert re.search(r"https://fieldcal\.example\.test/m/\S+", text), text


def test_a_returning_caller_keeps_customer_and_site_and_the_equipment_is_noted(
        client: FlaskClient, phone: PhoneSeed, db: Database) -> None:
    html = client.get(f"/console/new/details?customer={phone.customer_id}&site={phone.site_id}")
    page = html.get_data(as_text=True)
    assert 'value="Atlas Copco"' in page and "Pfannkuchstraße 3" in page
    with db.read() as session:
        before = session.scalar(select(func.count()).select_from(Customer))
    form = {"customer": str(phone.customer_id), "site": str(phone.site_id),
            "make": "Atlas Copco", "model": "GA 30", "serial": "AII-123456",
            "problem": "Oil in the air line", "urgency": "normal", "service": phone.service}
    status, page = slots(client, form)
    assert status == 200 and phone.customer_name in page
    status, where = book(client, page, 1)
    assert status == 303, where
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Customer)) == before
        site = session.get(Site, phone.site_id)
        assert site is not None and site.compressor_serial == "AII-123456"
        job = session.scalars(select(Job).where(Job.customer_id == phone.customer_id)
                              .order_by(Job.id.desc())).first()
        assert job is not None and job.site_id == phone.site_id and job.title.endswith(
            "Oil in the air line")


def test_a_time_taken_meanwhile_says_so_and_offers_fresh_times(
        client: FlaskClient, phone: PhoneSeed, db: Database) -> None:
    form = new_caller(phone.service)
    _, page = slots(client, form)
    first = dt.datetime.fromisoformat(offers(page)[0][0])
    with domain(db) as ctx:  # someone else books him then (from the API, the board, a phone…)
        customer = directory.find_customer(ctx.session, phone.customer_id)
        job = directory.add_job(ctx, customer, "Urgent leak", site=customer.sites[0])
        berlin = next(u for u in ctx.session.scalars(select(scheduling.appointments.User))
                      if u.name == phone.berlin)
        scheduling.book(ctx, job, berlin, first, first + dt.timedelta(minutes=60))
    status, again = book(client, page)
    assert status == 409
    assert "That time was taken a moment ago" in again
    assert offers(again) and offers(page)[0][0] not in [v for v, _ in offers(again)]
    assert customers_named(db, form["email"]) == 0  # nothing of the caller stayed behind
    status, _ = book(client, again)  # the fresh page books fine
    assert status == 303 and customers_named(db, form["email"]) == 1


def test_two_dispatchers_racing_for_one_time_one_books_it(app: Flask, seed: Seed,
                                                         phone: PhoneSeed, db: Database) -> None:
    """Only he serves the site: two callers, one time, at once: one booked, one told."""
    desks = []
    for _ in range(2):
        desk = app.test_client()
        assert sign_in(desk, seed.dispatcher.login) == 303
        form = new_caller(phone.service)
        desks.append((desk, form, slots(desk, form)[1]))
    wanted = offers(desks[0][2])[0][0]
    assert offers(desks[1][2])[0][0] == wanted
    start = threading.Barrier(2)

    def race(desk: FlaskClient, page: str) -> tuple[int, str]:
        start.wait()
        return book(desk, page)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(race, [d for d, _, _ in desks], [p for _, _, p in desks]))
    assert sorted(status for status, _ in results) == [303, 409], [r[0] for r in results]
    loser = next(i for i, (status, _) in enumerate(results) if status == 409)
    assert "That time was taken a moment ago" in results[loser][1]
    assert wanted not in [v for v, _ in offers(results[loser][1])]
    assert [customers_named(db, form["email"]) for _, form, _ in desks] == [
        0 if i == loser else 1 for i in range(2)]
    with db.read() as session:
        at_that_time = session.scalar(select(func.count()).select_from(Appointment).where(
            Appointment.starts_at == dt.datetime.fromisoformat(wanted),
            Appointment.status != AppointmentStatus.CANCELLED,
            Appointment.technician.has(name=phone.berlin)))
    assert at_that_time == 1


def test_the_same_form_sent_twice_books_once(client: FlaskClient, phone: PhoneSeed,
                                             db: Database) -> None:
    form = new_caller(phone.service)
    _, page = slots(client, form)
    first = book(client, page)
    second = book(client, page)
    assert first[0] == second[0] == 303 and first[1] == second[1]
    assert customers_named(db, form["email"]) == 1


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"name": ""}, "name", "Enter the customer's name."),
    ({"email": "greta at example", "phone": ""}, "email", "does not look like an email address"),
    ({"email": "", "phone": ""}, "email", "Enter an email address"),
    ({"phone": "call me maybe"}, "phone", "digits, spaces and"),
    ({"problem": "  "}, "problem", "Note what is wrong"),
    ({"address": "Somewhere without a postcode"}, "address", "Include the postcode"),
    ({"service": "no-such-service"}, "service", "Choose the service"),
    ({"urgency": "yesterday"}, "urgency", "Choose how urgent"),
    ({"timezone": "Mars/Olympus"}, "timezone", "Unknown time zone"),
    ({"serial": "x" * 101}, "serial", "under 100 characters"),
])
def test_bad_input_is_named_beside_its_field_and_nothing_is_stored(
        client: FlaskClient, phone: PhoneSeed, db: Database, changes: dict[str, str], field: str,
        message: str) -> None:
    before = stored(db)
    status, page = slots(client, new_caller(phone.service, **changes))
    assert status == 400
    beside = re.search(rf'id="{field}-error"><span class="visually-hidden">Error:</span> ([^<]+)<', page)
    assert beside and message in html.unescape(beside.group(1)), page[:3000]
    assert 'aria-describedby="' in page and 'aria-invalid="true"' in page
    good, valid = slots(client, new_caller(phone.service))
    assert good == 200
    status, again = book(client, valid, **changes)  # the same mistake sent straight to the booking
    assert status == 400 and message in html.unescape(again)
    assert stored(db) == before


def test_the_details_can_be_changed_from_the_times(client: FlaskClient, phone: PhoneSeed,
                                                   db: Database) -> None:
    before = stored(db)
    _, page = slots(client, new_caller(phone.service, problem="Loud bang & smoke <now>"))
    response = client.post("/console/new/slots", data={**hidden_fields(page), "edit": "1"})
    form = response.get_data(as_text=True)
    assert response.status_code == 200 and 'id="field-form"' in form
    assert "Loud bang &amp; smoke &lt;now&gt;</textarea>" in form  # kept, escaped
    assert f'<option value="{phone.service}" selected>' in form
    assert stored(db) == before


def test_a_forged_or_missing_time_is_refused_plainly(client: FlaskClient, phone: PhoneSeed,
                                                     db: Database) -> None:
    form = new_caller(phone.service)
    _, page = slots(client, form)
    for slot in ("", "tomorrow", "2031-03-03T03:00:00", "9999-12-31T23:59:59+00:00"):
        status, html = book(client, page, slot=slot)
        assert status == 400 and "Pick one of the times below." in html, slot
    status, html = book(client, page, slot="2020-01-06T09:00:00+00:00")  # a time never offered
    assert status == 409 and "That time was taken a moment ago" in html
    status, html = book(client, page, customer="999999", site="")
    assert status == 400 and "search again" in html
    status, html = book(client, page, customer="²", site="")
    assert status == 400 and "search again" in html
    status, later = slots(client, {**form, "after": "9999-12-31T23:59:59+00:00"})
    assert status == 200 and offers(later)[0][0] <= offers(page)[-1][0]  # no "after": the earliest
    assert client.get("/console/new/details?customer=%C2%B2").status_code == 303
    assert customers_named(db, form["email"]) == 0
