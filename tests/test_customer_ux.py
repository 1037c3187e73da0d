"""What a new customer meets: progress on their pages, a cancel that asks first, honest cut-off
promises, a way to reach the business, the start page, the icon, caching and compression."""

from __future__ import annotations

import datetime as dt
import gzip
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from bookkit import (
    ORGANIZER,
    PHONE,
    BookingSeed,
    confirmed_booking,
    details,
    free_starts,
    hidden,
    seed_booking,
)
from flask import Flask
from flask.testing import FlaskClient
from live import AUDIT_KEY
from seeding import must_get
from sqlalchemy import select

from server import links
from server.actors import SYSTEM
from server.app import create_app
from server.config import ConfigError, load_settings, read_served_url, write_served_url
from server.context import Context
from server.db import Database
from server.migrate import upgrade
from server.models import Appointment, AppointmentStatus, AuditEntry, JobStatus, utcnow
from server.scheduling import appointments
from share.forms import FormSigner, HoldRef
from share.zones import canonical, from_address, grouped, zone_choices

OFFICE = "office@compressor.example.test"


@dataclass
class Env:
    app: Flask
    client: FlaskClient
    database: Database
    seed: BookingSeed
    signer: links.LinkSigner
    keys: tuple[str, ...]

    def make_app(self, **overrides: object) -> Flask:
        return create_app(settings=self.app.config["FIELDCAL"].with_overrides(**overrides))


@pytest.fixture(scope="module")
def env(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    key = secrets.token_urlsafe(32)
    settings = load_settings({
        "FIELDCAL_INSTANCE": str(tmp_path_factory.mktemp("ux")),
        "FIELDCAL_DATABASE_URL": database_url,
        "FIELDCAL_BASE_URL": "https://cal.example.test",
        "FIELDCAL_SECRET_KEYS": key,
        "FIELDCAL_BUSINESS_PHONE": PHONE,
        "FIELDCAL_TIMEZONE": "Europe/Berlin",
        "FIELDCAL_BOOKING_RATE": "100000",
        "FIELDCAL_AUDIT_KEYS": AUDIT_KEY,
    })
    app = create_app(settings=settings)
    database = app.extensions["fieldcal.db"]
    upgrade(database)
    yield Env(app, app.test_client(), database, seed_booking(database, prefix="ux-"),
              links.LinkSigner((key,)), (key,))


def book_visit(env: Env, *, soon: bool = False) -> tuple[int, str]:
    """A confirmed self-booked visit (well after the cut-off, or the first free one): (id, token)."""
    now = utcnow()
    starts = free_starts(env.database, env.seed.repair, now)
    later = [s for s in starts if s - now > dt.timedelta(hours=48)]
    start = starts[0] if soon else later[len(later) // 2]
    return confirmed_booking(env.database, env.signer, env.seed.repair, start,
                             f"ux-{secrets.token_hex(4)}@example.test", secrets.token_urlsafe(18))


def set_progress(env: Env, appointment_id: int, status: JobStatus) -> None:
    with env.database.write() as session:
        ctx = Context(session, SYSTEM, ORGANIZER)
        appointments.set_status(ctx, appointments.get_appointment(session, appointment_id), status)


def badge(page: str) -> str:
    found = re.search(r'<p class="status status-([a-z-]+)">([^<]+)</p>', page)
    assert found, "the page shows a status badge"
    return f"{found[1]}:{found[2]}"


# -- progress ------------------------------------------------------------------------------------

def test_customer_pages_show_the_jobs_progress(env: Env) -> None:
    appointment_id, token = book_visit(env)
    with env.database.write() as session:
        share = links.issue(Context(session, SYSTEM, ORGANIZER), links.Purpose.SHARE,
                            links.Subject(links.SubjectKind.APPOINTMENT, appointment_id, "x"))
        share_path = f"/s/{env.signer.dumps(share)}"
    pages = (f"/m/{token}", share_path)
    for path in pages:
        assert badge(env.client.get(path).text) == "confirmed:Confirmed"
    steps = [(JobStatus.EN_ROUTE, "on-the-way:On the way"),
             (JobStatus.ON_SITE, "on-site:Technician on site"),
             (JobStatus.COMPLETED, "done:Done")]
    for status, shown in steps:
        set_progress(env, appointment_id, status)
        for path in pages:
            page = env.client.get(path).text
            assert badge(page) == shown, (path, status)
            assert ">Confirmed<" not in page


def test_a_cancelled_visit_says_cancelled(env: Env) -> None:
    appointment_id, token = book_visit(env)
    with env.database.write() as session:
        appointments.cancel(Context(session, SYSTEM, ORGANIZER),
                            appointments.get_appointment(session, appointment_id), "no parts")
    assert badge(env.client.get(f"/m/{token}").text) == "cancelled:Cancelled"


# -- cancel asks first ------------------------------------------------------------------------------

def test_cancel_asks_for_confirmation_and_takes_a_reason(env: Env) -> None:
    appointment_id, token = book_visit(env)
    manage = env.client.get(f"/m/{token}").text
    assert f'action="/m/{token}/cancel"' not in manage, "no one-tap cancel on the manage page"
    assert f'href="/m/{token}/cancel"' in manage
    # on a phone the way to cancel comes before the ~60 times of the picker
    assert manage.index(f'href="/m/{token}/cancel"') < manage.index('name="slot"')

    confirm = env.client.get(f"/m/{token}/cancel")
    assert confirm.status_code == 200 and "Cancel this visit?" in confirm.text
    assert 'name="reason"' in confirm.text and "Yes, cancel the visit" in confirm.text
    assert f'href="/m/{token}"' in confirm.text, "a way back that keeps the visit"
    with env.database.read() as session:  # GET changed nothing
        assert must_get(session, Appointment, appointment_id).status == AppointmentStatus.CONFIRMED

    csrf = hidden(confirm.text, "csrf")
    too_long = env.client.post(f"/m/{token}/cancel", data={"csrf": csrf, "reason": "x" * 501})
    assert too_long.status_code == 400 and "at most 500 characters" in too_long.text
    assert not_cancelled(env, appointment_id)
    no_csrf = env.client.post(f"/m/{token}/cancel", data={"reason": "gone"})
    assert no_csrf.status_code == 400 and not_cancelled(env, appointment_id)

    done = env.client.post(f"/m/{token}/cancel",
                           data={"csrf": csrf, "reason": "  The fault\x00 has gone.  "})
    assert done.status_code == 303
    assert "Your visit is cancelled" in env.client.get(done.headers["Location"]).text
    with env.database.read() as session:
        assert must_get(session, Appointment, appointment_id).status == AppointmentStatus.CANCELLED
        reasons = session.scalars(select(AuditEntry.after).where(
            AuditEntry.action == "appointment.cancel.reason",
            AuditEntry.entity_id == str(appointment_id))).all()
    assert reasons == [{"reason": "cancelled by the customer: The fault has gone."}]
    again = env.client.get(f"/m/{token}/cancel")
    assert again.status_code == 303 and again.headers["Location"].endswith(f"/m/{token}")


def not_cancelled(env: Env, appointment_id: int) -> bool:
    with env.database.read() as session:
        return must_get(session, Appointment, appointment_id).status == AppointmentStatus.CONFIRMED


# -- the cut-off and how to reach the business -------------------------------------------------------

def confirmation_page(env: Env, client: FlaskClient, appointment_id: int) -> str:
    with env.database.read() as session:
        key = must_get(session, Appointment, appointment_id).booking_key
    assert key is not None
    token = FormSigner(env.keys).hold_token(HoldRef(appointment_id, key, "Europe/Berlin"))
    response = client.get(f"/book/confirmed/{token}")
    assert response.status_code == 200
    return response.text


def test_inside_the_cutoff_nothing_promises_online_changes(env: Env) -> None:
    appointment_id, token = book_visit(env)
    roomy = confirmation_page(env, env.client, appointment_id)
    assert "you can move or cancel the visit yourself until" in roomy

    # the same visit under a cut-off longer than the time left: a same-day booking
    strict = env.make_app(manage_cutoff_hours=24 * 60).test_client()
    page = confirmation_page(env, strict, appointment_id)
    assert "yourself" not in page and "can no longer be moved or cancelled online" in page
    assert f'href="tel:+49305550100">{PHONE}</a>' in page
    manage = strict.get(f"/m/{token}").text
    assert "Need to change this visit?" in manage and f">{PHONE}</a>" in manage
    assert "/cancel" not in manage and 'name="slot"' not in manage
    assert strict.get(f"/m/{token}/cancel").status_code == 303

    by_email = env.make_app(manage_cutoff_hours=24 * 60, business_phone="",
                            business_email=OFFICE).test_client()
    manage = by_email.get(f"/m/{token}").text
    assert f'href="mailto:{OFFICE}">{OFFICE}</a>' in manage and "contact our office" not in manage


def test_no_start_without_a_phone_or_email_unless_there_is_no_cutoff(env: Env) -> None:
    with pytest.raises(ConfigError, match="FIELDCAL_BUSINESS_PHONE or FIELDCAL_BUSINESS_EMAIL"):
        env.make_app(business_phone="", business_email="")
    assert env.make_app(business_phone="", business_email=OFFICE)
    assert env.make_app(business_phone="", business_email="", manage_cutoff_hours=0)


def test_cli_links_follow_the_address_the_server_uses(tmp_path: Path) -> None:
    assert load_settings({"FIELDCAL_INSTANCE": str(tmp_path)}).base_url == "http://127.0.0.1:8000"
    write_served_url(tmp_path, "http://127.0.0.1:8123/")
    assert read_served_url(tmp_path) == "http://127.0.0.1:8123"
    assert load_settings({"FIELDCAL_INSTANCE": str(tmp_path)}).base_url == "http://127.0.0.1:8123"
    configured = load_settings({"FIELDCAL_INSTANCE": str(tmp_path),
                                "FIELDCAL_BASE_URL": "https://cal.example.test"})
    assert configured.base_url == "https://cal.example.test"


# -- time zones ------------------------------------------------------------------------------------

def test_zone_list_has_current_names_with_common_ones_first() -> None:
    choices = zone_choices()
    for legacy in ("US/Eastern", "Asia/Calcutta", "Europe/Kiev", "Canada/Pacific", "GB", "EST",
                   "America/Buenos_Aires", "Etc/GMT+5"):
        assert legacy not in choices
    assert {"UTC", "Europe/Berlin", "Asia/Kolkata", "Europe/Kyiv", "America/New_York"} <= set(choices)
    assert 300 < len(choices) < 450
    (_, common), (_, everything) = grouped("Asia/Tokyo")
    assert common[0] == "Asia/Tokyo" and "Europe/London" in common[:10]
    assert set(common) <= set(everything) and everything == list(choices)
    assert canonical("Asia/Calcutta") == "Asia/Kolkata" and canonical("US/Pacific") == "America/Los_Angeles"
    assert canonical("Europe/Berlin") == "Europe/Berlin" and canonical("Mars/Olympus") is None


@pytest.mark.parametrize(("address", "zone"), [
    ("Hauptstraße 1\n10115 Berlin\nGermany", "Europe/Berlin"),
    ("Hauptstraße 1, 10115 Berlin, Deutschland", "Europe/Berlin"),
    ("1 Main Street, Dublin, Ireland", "Europe/Dublin"),
    ("10 Downing St, London SW1A 2AA, UK", "Europe/London"),
    ("118 Richards St, Brooklyn, NY 11231", "America/New_York"),
    ("1 Infinite Loop, Cupertino, CA 95014, USA", "America/Los_Angeles"),
    ("400 Broad St, Seattle, WA 98109", "America/Los_Angeles"),
    ("Somewhere 5, Springfield", None),
    ("1 Road, Australia", None),  # several zones: not guessed
    ("", None),
])
def test_zone_from_the_address(address: str, zone: str | None) -> None:
    assert from_address(address) == zone


def test_details_form_works_out_the_zone(env: Env) -> None:
    form = env.client.get(f"/book/{env.seed.repair}/details").text
    assert '<option value="" selected>Work it out from my address' in form
    assert form.index('label="Common time zones"') < form.index('label="All time zones"')
    assert 'src="/static/share/zone.js?v=' in form and 'id="browser-zone"' in form

    def zone_of(**fields: str) -> str:
        page = env.client.post(f"/book/{env.seed.repair}/details",
                               data=details(f"z-{secrets.token_hex(3)}@example.test", **fields))
        assert page.status_code == 200, page.text
        shown = re.search(r"Times are shown in <strong>([^<]+)</strong>", page.text)
        assert shown is not None, page.text
        return shown[1]

    assert zone_of(timezone="", browser_zone="Asia/Calcutta") == "Asia/Kolkata"
    assert zone_of(timezone="", address="1 Main St, Boston, MA 02110") == "America/New York"
    assert zone_of(timezone="", address="Nowhere 1") == "Europe/Berlin"  # the business's zone
    assert zone_of(timezone="Asia/Tokyo", browser_zone="Europe/Paris") == "Asia/Tokyo"
    refused = env.client.post(f"/book/{env.seed.repair}/details",
                              data=details("z@example.test", timezone="US/Eastern"))
    assert refused.status_code == 400 and "Choose a time zone from the list" in refused.text


# -- start page, icon, caching, compression ------------------------------------------------------------

def test_start_page_links_the_booking_page(env: Env) -> None:
    page = env.client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert 'href="/book"' in page.text and "https://cal.example.test/dav/" in page.text
    assert page.headers["Cache-Control"] == "no-store"


def test_favicon_is_served_and_cacheable(env: Env) -> None:
    icon = env.client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.mimetype == "image/vnd.microsoft.icon"
    assert icon.data[:4] == b"\x00\x00\x01\x00", "an ICO file"
    assert "public" in icon.headers["Cache-Control"] and "max-age=604800" in icon.headers["Cache-Control"]
    again = env.client.get("/favicon.ico", headers={"If-None-Match": icon.headers["ETag"]})
    assert again.status_code == 304


def test_stylesheet_is_versioned_cached_and_compressed(env: Env) -> None:
    page = env.client.get("/book").text
    stylesheet = re.search(r'<link rel="stylesheet" href="([^"]+)"', page)
    assert stylesheet is not None, page
    css = stylesheet[1]
    assert re.fullmatch(r"/static/share/share\.css\?v=[0-9a-f]{12}", css)
    plain = env.client.get(css)
    assert plain.status_code == 200 and "Content-Encoding" not in plain.headers
    assert plain.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert "no-store" not in plain.headers["Cache-Control"]
    zipped = env.client.get(css, headers={"Accept-Encoding": "gzip, deflate, br"})
    assert zipped.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in zipped.headers["Vary"]
    assert gzip.decompress(zipped.data) == plain.data and len(zipped.data) < len(plain.data) / 2
    revalidated = env.client.get(css, headers={"Accept-Encoding": "gzip",
                                               "If-None-Match": zipped.headers["ETag"]})
    assert revalidated.status_code == 304 and revalidated.data == b""
    missing = env.client.get("/static/share/no-such.css?v=123456789abc")
    assert missing.status_code == 404 and missing.headers["Cache-Control"] == "no-store"


def test_pages_and_json_are_compressed_for_clients_that_accept_gzip(env: Env) -> None:
    for path in ("/", "/book", f"/book/{env.seed.repair}/details"):
        zipped = env.client.get(path, headers={"Accept-Encoding": "gzip"})
        assert zipped.headers["Content-Encoding"] == "gzip", path
        assert b"<html" in gzip.decompress(zipped.data)
        plain = env.client.get(path, headers={"Accept-Encoding": "identity"})
        assert "Content-Encoding" not in plain.headers and b"<html" in plain.data
    refusing = env.client.get("/book", headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "Content-Encoding" not in refusing.headers
    small = env.client.get("/healthz", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in small.headers  # not worth it under 512 bytes
