"""Booking and manage pages through the Flask test client, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import pytest
from bookkit import (
    ORGANIZER,
    PHONE,
    BookingSeed,
    appointments_of,
    confirmed_booking,
    details,
    free_starts,
    hidden,
    seed_booking,
    slot_labels,
    slot_values,
)
from flask import Flask
from flask.testing import FlaskClient
from live import AUDIT_KEY
from seeding import must_get
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from server import directory, links
from server.actors import SYSTEM
from server.app import create_app
from server.config import load_settings
from server.context import Context
from server.db import Database
from server.migrate import upgrade
from server.models import (
    Appointment,
    AppointmentStatus,
    AuditEntry,
    OutboxMessage,
    RateLimitBucket,
    Role,
    ShareLink,
    utcnow,
)
from server.scheduling import appointments, booking

LA = ZoneInfo("America/Los_Angeles")
BERLIN = ZoneInfo("Europe/Berlin")


@dataclass
class Env:
    app: Flask
    client: FlaskClient
    database: Database
    seed: BookingSeed
    responses: list[TestResponse] = field(default_factory=list)

    def make_app(self, **overrides: object) -> Flask:
        settings = self.app.config["FIELDCAL"].with_overrides(**overrides)
        return create_app(settings=settings)


@pytest.fixture(scope="module")
def env(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    settings = load_settings({
        "FIELDCAL_INSTANCE": str(tmp_path_factory.mktemp("booking")),
        "FIELDCAL_DATABASE_URL": database_url,
        "FIELDCAL_BASE_URL": "https://cal.example.test",
        "FIELDCAL_SECRET_KEYS": secrets.token_urlsafe(32),
        "FIELDCAL_AUDIT_KEYS": AUDIT_KEY,
        "FIELDCAL_BUSINESS_PHONE": PHONE,
        "FIELDCAL_TIMEZONE": "Europe/Berlin",
        "FIELDCAL_BOOKING_RATE": "100000",
    })
    app = create_app(settings=settings)
    database = app.extensions["fieldcal.db"]
    upgrade(database)
    yield Env(app, app.test_client(), database, seed_booking(database))


def unique_email(tag: str) -> str:
    return f"{tag}-{secrets.token_hex(4)}@example.test"


def track(env: Env, response: TestResponse) -> TestResponse:
    env.responses.append(response)
    return response


def later_than(values: list[str], hours: int) -> list[str]:
    """Offers starting more than `hours` from now (clear of the manage cut-off)."""
    limit = utcnow() + dt.timedelta(hours=hours)
    return [v for v in values if dt.datetime.fromisoformat(v) > limit]


def picker(env: Env, slug: str, form: dict[str, str], week: str = "") -> str:
    response = track(env, env.client.post(f"/book/{slug}/details", data=form))
    assert response.status_code == 200, response.text
    page = response.text
    if week:
        response = track(env, env.client.post(f"/book/{slug}/slots",
                                              data={"details": hidden(page, "details"), "week": week}))
        assert response.status_code == 200
        page = response.text
    return page


def next_week_picker(env: Env, slug: str, form: dict[str, str]) -> str:
    """The picker one week ahead: every offer is well clear of the 24-hour cut-off."""
    first = picker(env, slug, form)
    monday = dt.date.fromisoformat(hidden(first, "week")) + dt.timedelta(days=7)
    return picker(env, slug, form, monday.isoformat())


def hold_form(page: str, slot: str) -> dict[str, str]:
    return {"details": hidden(page, "details"), "key": hidden(page, "key"), "slot": slot,
            "week": hidden(page, "week")}


def book(env: Env, email: str, *, slot_index: int = 0, timezone: str = "Europe/Berlin",
         slug: str | None = None, **overrides: str) -> tuple[str, str, str]:
    """The whole flow: (slot booked, manage path, confirmation page)."""
    slug = slug or env.seed.repair
    page = next_week_picker(env, slug, details(email, timezone=timezone, **overrides))
    slot = slot_values(page)[slot_index]
    held = track(env, env.client.post(f"/book/{slug}/hold", data=hold_form(page, slot)))
    assert held.status_code == 303, held.text
    hold_page = track(env, env.client.get(held.headers["Location"]))
    assert hold_page.status_code == 200
    confirmed = track(env, env.client.post(held.headers["Location"] + "/confirm",
                                           data={"csrf": hidden(hold_page.text, "csrf")}))
    assert confirmed.status_code == 303
    done = track(env, env.client.get(confirmed.headers["Location"]))
    assert done.status_code == 200
    manage = re.search(r'href="https://cal\.example\.test(/m/[^"]+)"', done.text)
    assert manage, "the confirmation page links the manage page"
    return slot, manage.group(1), done.text


def status_of(env: Env, appointment_id: int) -> tuple[str, dt.datetime]:
    with env.database.read() as session:
        appointment = session.get(Appointment, appointment_id)
        assert appointment is not None
        return appointment.status, appointment.starts_at


def write_counts(env: Env) -> tuple[int, int, int]:
    with env.database.read() as session:
        return tuple(session.scalar(select(func.count()).select_from(m)) or 0  # type: ignore[return-value]
                     for m in (Appointment, AuditEntry, OutboxMessage))


# --------------------------------------------------------------------------- the happy path


def test_book_confirm_manage_reschedule_cancel(env: Env) -> None:
    email = unique_email("happy")
    services = track(env, env.client.get("/book"))
    assert "Compressor repair" in services.text and f"/book/{env.seed.repair}/details" in services.text
    form_page = track(env, env.client.get(f"/book/{env.seed.repair}/details"))
    assert '<option value="" selected>Work it out from my address (else Europe/Berlin)' in form_page.text

    slot, manage_path, done = book(env, email)
    [appointment] = appointments_of(env.database, email)
    assert appointment.status == AppointmentStatus.CONFIRMED and appointment.hold_expires_at is None
    assert appointment.starts_at == dt.datetime.fromisoformat(slot)
    assert appointment.technician is not None and appointment.job.site is not None
    assert appointment.technician.login == env.seed.technician
    assert appointment.job.source == "web" and "Kaeser" in (appointment.job.site.compressor_make or "")
    assert "Your visit is booked" in done and "Anna" in done and "Keller" not in done
    assert "Hauptstraße 1" in done
    assert re.search(r'href="webcal://cal\.example\.test/feeds/[^"]+\.ics"', done)

    ics = re.search(r'href="(/s/[^"]+/visits/\d+\.ics)"', done)
    assert ics
    download = track(env, env.client.get(ics.group(1)))
    assert download.status_code == 200 and b"BEGIN:VEVENT" in download.data

    with env.database.read() as session:
        audit = session.scalars(select(AuditEntry).where(AuditEntry.action == "appointment.confirm")
                                .order_by(AuditEntry.id.desc())).first()
        assert audit is not None and audit.actor == email and audit.channel == "booking"

    manage = track(env, env.client.get(manage_path))
    assert manage.status_code == 200 and "Move to another time" in manage.text
    targets = [v for v in slot_values(manage.text) if v != slot]
    assert slot not in slot_values(manage.text), "the visit's own time is not offered"
    moved = track(env, env.client.post(f"{manage_path}/reschedule",
                                       data={"csrf": hidden(manage.text, "csrf"), "slot": targets[2]}))
    assert moved.status_code == 303
    after = track(env, env.client.get(moved.headers["Location"]))
    assert "has been moved" in after.text
    assert status_of(env, appointment.id) == (AppointmentStatus.CONFIRMED,
                                              dt.datetime.fromisoformat(targets[2]))

    cancelled = track(env, env.client.post(f"{manage_path}/cancel",
                                           data={"csrf": hidden(after.text, "csrf")}))
    assert cancelled.status_code == 303
    final = track(env, env.client.get(cancelled.headers["Location"]))
    assert "Your visit is cancelled" in final.text and "<form" not in final.text
    assert status_of(env, appointment.id)[0] == AppointmentStatus.CANCELLED
    with env.database.read() as session:
        trail = session.scalars(select(AuditEntry).where(
            AuditEntry.entity_id == str(appointment.id), AuditEntry.entity == "appointment",
            AuditEntry.action.in_(["appointment.reschedule", "appointment.cancel"]))).all()
        assert {(a.action, a.channel, a.actor) for a in trail} == {
            ("appointment.reschedule", "manage", email), ("appointment.cancel", "manage", email)}


def test_customer_in_los_angeles_technician_in_berlin(env: Env) -> None:
    email = unique_email("la")
    page = next_week_picker(env, env.seed.repair, details(email, timezone="America/Los_Angeles"))
    assert "America/Los Angeles" in page
    values, labels = slot_values(page), slot_labels(page)
    assert len(values) == len(labels) > 0
    for value, label in zip(values, labels, strict=True):
        start = dt.datetime.fromisoformat(value)
        assert label.startswith(start.astimezone(LA).strftime("%H:%M")), (value, label)
        # Anna works 07:00-19:00 in Berlin, whatever the customer's zone.
        assert 7 <= start.astimezone(BERLIN).hour < 19
    assert any(label.startswith(("22:", "23:")) for label in labels), "Berlin mornings are LA evenings"
    chosen = values[0]
    held = track(env, env.client.post(f"/book/{env.seed.repair}/hold", data=hold_form(page, chosen)))
    hold_page = track(env, env.client.get(held.headers["Location"]))
    local = dt.datetime.fromisoformat(chosen).astimezone(LA)
    assert local.strftime("%H:%M") in hold_page.text and local.strftime("%A %-d %B %Y") in hold_page.text
    [appointment] = appointments_of(env.database, email)
    assert appointment.starts_at == dt.datetime.fromisoformat(chosen)
    assert appointment.starts_at.utcoffset() == dt.timedelta(0)
    assert appointment.job.customer.timezone == "America/Los_Angeles"


def test_returning_customer_books_for_another_site(env: Env) -> None:
    email = unique_email("again")
    book(env, email, slot_index=65)
    _slot, _path, done = book(env, email, slot_index=70, address="Werkstraße 9\n20095 Hamburg")
    assert "Werkstraße 9" in done and "Hauptstraße" not in done
    first, second = appointments_of(env.database, email)
    assert first.job.customer_id == second.job.customer_id, "one customer, two sites"
    assert first.job.site is not None and second.job.site is not None
    assert first.job.site.address.startswith("Hauptstraße")
    assert second.job.site.address == "Werkstraße 9\n20095 Hamburg"


def test_arrival_windows_are_offered_as_windows(env: Env) -> None:
    page = next_week_picker(env, env.seed.windows, details(unique_email("win")))
    labels = slot_labels(page)
    assert labels and set(labels) <= {"08:00–12:00", "13:00–17:00"}
    assert "arrival window" in page


# --------------------------------------------------------------------------- no double booking


def test_double_submit_of_the_hold_form_books_once(env: Env) -> None:
    email = unique_email("twice")
    page = next_week_picker(env, env.seed.repair, details(email))
    form = hold_form(page, slot_values(page)[5])
    first = track(env, env.client.post(f"/book/{env.seed.repair}/hold", data=form))
    second = track(env, env.client.post(f"/book/{env.seed.repair}/hold", data=form))
    assert first.status_code == second.status_code == 303
    # both lead to the one hold (their links may differ in the second they were signed)
    pages = [env.client.get(r.headers["Location"]) for r in (first, second)]
    assert [p.status_code for p in pages] == [200, 200]
    assert len(appointments_of(env.database, email)) == 1


def test_taken_slot_shows_the_picker_again_with_alternatives(env: Env) -> None:
    slot, _manage, _done = book(env, unique_email("first"), slot_index=7)
    email = unique_email("second")
    page = next_week_picker(env, env.seed.repair, details(email))
    assert slot not in slot_values(page)
    stale = hold_form(page, slot)  # as if the page was rendered before the first booking
    response = track(env, env.client.post(f"/book/{env.seed.repair}/hold", data=stale))
    assert response.status_code == 409
    assert "That time was just taken" in response.text
    alternatives = slot_values(response.text)
    assert alternatives and slot not in alternatives
    assert hidden(response.text, "key") != stale["key"], "a fresh idempotency key"
    assert appointments_of(env.database, email) == []


def test_one_contact_cannot_hoard_slots(env: Env) -> None:
    email = unique_email("hoard")
    for index in range(booking.MAX_UPCOMING_PER_CONTACT):
        book(env, email, slot_index=10 + index * 3)
    page = next_week_picker(env, env.seed.repair, details(email))
    response = track(env, env.client.post(f"/book/{env.seed.repair}/hold",
                                          data=hold_form(page, slot_values(page)[20])))
    assert response.status_code == 409
    assert "already have 3 upcoming visits" in response.text and PHONE in response.text
    assert len(appointments_of(env.database, email)) == booking.MAX_UPCOMING_PER_CONTACT


# --------------------------------------------------------------------------- holds and cut-off


def test_expired_hold_cannot_be_confirmed(env: Env) -> None:
    email = unique_email("late")
    page = next_week_picker(env, env.seed.repair, details(email))
    slot = slot_values(page)[12]
    held = track(env, env.client.post(f"/book/{env.seed.repair}/hold", data=hold_form(page, slot)))
    hold_page = track(env, env.client.get(held.headers["Location"]))
    [appointment] = appointments_of(env.database, email)
    with env.database.write() as session:  # the customer walked away for a while
        row = session.get(Appointment, appointment.id)
        assert row is not None
        row.hold_expires_at = utcnow() - dt.timedelta(minutes=1)
    response = track(env, env.client.post(held.headers["Location"] + "/confirm",
                                          data={"csrf": hidden(hold_page.text, "csrf")}))
    assert response.status_code == 410
    assert "expired before it was confirmed" in response.text
    assert slot in slot_values(response.text), "the lapsed hold no longer blocks its time"
    assert status_of(env, appointment.id)[0] == AppointmentStatus.TENTATIVE
    again = track(env, env.client.get(held.headers["Location"]))
    assert again.status_code == 410
    assert "/m/" not in again.text
    with env.database.read() as session:
        assert session.scalars(select(ShareLink).where(
            ShareLink.subject_id == appointment.id, ShareLink.purpose == links.Purpose.MANAGE)
        ).first() is None


def _near_visit(env: Env, hours: float) -> tuple[int, str]:
    """A confirmed visit `hours` from now (arranged directly) and its manage path."""
    email = unique_email("near")
    with env.database.write() as session:
        ctx = Context(session, SYSTEM, ORGANIZER)
        technician = directory.add_user(ctx, f"near-{secrets.token_hex(3)}", name="Nora Near",
                                        email="nora@example.test", role=Role.TECHNICIAN)
        customer = directory.add_customer(ctx, "Near Customer", email=email, address="Close Road 1")
        job = directory.add_job(ctx, customer, "Compressor repair", source="web")
        start = (utcnow() + dt.timedelta(hours=hours)).replace(microsecond=0)
        service = booking.service_type_by_slug(session, env.seed.repair)
        appointment = appointments.book(ctx, job, technician, start, start + dt.timedelta(hours=1),
                                        service_type=service)
        link = booking.manage_link(ctx, appointment)
        return appointment.id, f"/m/{env.app.extensions['fieldcal.signer'].dumps(link)}"


def test_past_the_cutoff_the_page_says_whom_to_call(env: Env) -> None:
    appointment_id, path = _near_visit(env, hours=3)
    far_id, far_path = _near_visit(env, hours=24 * 5)
    page = track(env, env.client.get(path))
    assert page.status_code == 200
    assert "<form" not in page.text and PHONE in page.text and "tel:+49305550100" in page.text
    assert "24 hours before" in page.text
    far_page = track(env, env.client.get(far_path))
    csrf_for_far = hidden(far_page.text, "csrf")
    # A crafted POST with a genuine form token (the near link's own) is refused by the domain.
    near_link_id, near_version = env.app.extensions["fieldcal.signer"].loads(
        path.removeprefix("/m/"), links.Purpose.MANAGE)
    signer = env.app.extensions["fieldcal.form_signer"]
    csrf = signer.csrf_token("manage", near_link_id, near_version)
    before = status_of(env, appointment_id), write_counts(env)
    refused = track(env, env.client.post(f"{path}/cancel", data={"csrf": csrf}))
    assert refused.status_code == 403 and PHONE in refused.text
    target = (utcnow() + dt.timedelta(days=9)).replace(minute=0, second=0, microsecond=0)
    moved = track(env, env.client.post(f"{path}/reschedule",
                                       data={"csrf": csrf, "slot": target.isoformat()}))
    assert moved.status_code == 403
    assert (status_of(env, appointment_id), write_counts(env)) == before
    assert status_of(env, far_id)[0] == AppointmentStatus.CONFIRMED and csrf_for_far


def _clock_at(monkeypatch: pytest.MonkeyPatch, moment: dt.datetime) -> None:
    """The page and the domain rule read the same (fixed) clock."""
    monkeypatch.setattr("share.manage.utcnow", lambda: moment)
    monkeypatch.setattr("server.scheduling.booking.utcnow", lambda: moment)


def _manage_csrf(env: Env, path: str) -> str:
    link_id, version = env.app.extensions["fieldcal.signer"].loads(path.removeprefix("/m/"),
                                                                   links.Purpose.MANAGE)
    return env.app.extensions["fieldcal.form_signer"].csrf_token("manage", link_id, version)


def test_cutoff_setting_at_its_exact_boundary(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """FIELDCAL_MANAGE_CUTOFF_HOURS=2: open at exactly two hours before, closed one second later,
    the page and the domain rule agreeing at both instants."""
    client = env.make_app(manage_cutoff_hours=2).test_client()
    open_id, open_path = _near_visit(env, hours=5)
    closed_id, closed_path = _near_visit(env, hours=5)
    for visit_id, path, moment, still_open in (
            (open_id, open_path, status_of(env, open_id)[1] - dt.timedelta(hours=2), True),
            (closed_id, closed_path,
             status_of(env, closed_id)[1] - dt.timedelta(hours=2) + dt.timedelta(seconds=1), False)):
        _clock_at(monkeypatch, moment)
        page = track(env, client.get(path))
        assert page.status_code == 200
        assert ("<form" in page.text) is still_open, page.text
        assert ("2 hours before" in page.text and PHONE in page.text) is not still_open
        cancelled = track(env, client.post(f"{path}/cancel", data={"csrf": _manage_csrf(env, path)}))
        assert cancelled.status_code == (303 if still_open else 403), cancelled.text
        assert (status_of(env, visit_id)[0] == AppointmentStatus.CANCELLED) is still_open


def test_a_move_into_the_cutoff_window_is_a_last_change(env: Env) -> None:
    """A visit may be moved to a time inside the cut-off window (as a same-day booking may be
    made), and then it is closed to online changes like any visit that close."""
    cutoff_hours = 72  # wide enough to hold working hours whatever the time of day
    client = env.make_app(manage_cutoff_hours=cutoff_hours).test_client()
    now = utcnow()
    starts = free_starts(env.database, env.seed.repair, now, days=10)
    origin = next(s for s in starts if s > now + dt.timedelta(days=5))
    target = next(s for s in starts if now + dt.timedelta(hours=2) < s < now + dt.timedelta(hours=60))
    email = unique_email("late-move")
    visit_id, token = confirmed_booking(env.database, env.app.extensions["fieldcal.signer"],
                                        env.seed.repair, origin, email, secrets.token_urlsafe(18))
    path = f"/m/{token}"
    page = track(env, client.get(path))
    assert "Move to another time" in page.text
    moved = track(env, client.post(f"{path}/reschedule",
                                   data={"csrf": hidden(page.text, "csrf"), "slot": target.isoformat()}))
    assert moved.status_code == 303, moved.text
    assert status_of(env, visit_id) == (AppointmentStatus.CONFIRMED, target)
    after = track(env, client.get(path))
    assert "<form" not in after.text and PHONE in after.text
    assert f"{cutoff_hours} hours before" in after.text
    before = write_counts(env)
    again = track(env, client.post(f"{path}/cancel", data={"csrf": _manage_csrf(env, path)}))
    assert again.status_code == 403
    assert status_of(env, visit_id) == (AppointmentStatus.CONFIRMED, target)
    assert write_counts(env) == before


def test_manage_posts_are_rate_limited(env: Env) -> None:
    client = env.make_app(booking_rate=3).test_client()
    _visit_id, path = _near_visit(env, hours=24 * 6)
    address = {"REMOTE_ADDR": f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.9"}
    codes = [client.post(f"{path}/cancel", data={"csrf": "x" * 40}, environ_base=address).status_code
             for _ in range(4)]
    assert codes == [403, 403, 403, 429], codes
    with env.database.read() as session:
        assert session.get(RateLimitBucket, f"manage:{address['REMOTE_ADDR']}") is not None


# --------------------------------------------------------------------------- protections


def test_manage_forms_need_a_matching_token_and_origin(env: Env) -> None:
    email = unique_email("csrf")
    _slot, path, _done = book(env, email, slot_index=30)
    other_slot, other_path, _ = book(env, unique_email("csrf2"), slot_index=33)
    page = track(env, env.client.get(path))
    csrf = hidden(page.text, "csrf")
    other_csrf = hidden(track(env, env.client.get(other_path)).text, "csrf")
    [appointment] = appointments_of(env.database, email)
    appointment_id = appointment.id
    before = status_of(env, appointment_id), write_counts(env)
    missing = track(env, env.client.post(f"{path}/cancel", data={}))
    assert missing.status_code == 400
    wrong = track(env, env.client.post(f"{path}/cancel", data={"csrf": other_csrf}))
    assert wrong.status_code == 403
    garbage = track(env, env.client.post(f"{path}/cancel", data={"csrf": "x" * 40}))
    assert garbage.status_code == 403
    foreign = track(env, env.client.post(f"{path}/cancel", data={"csrf": csrf},
                                         headers={"Origin": "https://evil.example"}))
    assert foreign.status_code == 403
    referred = track(env, env.client.post(f"{path}/reschedule", data={"csrf": csrf, "slot": other_slot},
                                          headers={"Referer": "https://evil.example/page"}))
    assert referred.status_code == 403
    assert (status_of(env, appointment_id), write_counts(env)) == before
    same_site = track(env, env.client.post(f"{path}/cancel", data={"csrf": csrf},
                                           headers={"Origin": "https://cal.example.test"}))
    assert same_site.status_code == 303
    assert status_of(env, appointment_id)[0] == AppointmentStatus.CANCELLED


def test_confirm_needs_its_form_token(env: Env) -> None:
    email = unique_email("confirm")
    page = next_week_picker(env, env.seed.repair, details(email))
    held = track(env, env.client.post(f"/book/{env.seed.repair}/hold",
                                      data=hold_form(page, slot_values(page)[40])))
    assert track(env, env.client.post(held.headers["Location"] + "/confirm")).status_code == 400
    bad = track(env, env.client.post(held.headers["Location"] + "/confirm", data={"csrf": "nope"}))
    assert bad.status_code == 403
    [appointment] = appointments_of(env.database, email)
    assert appointment.status == AppointmentStatus.TENTATIVE and appointment.hold_expires_at


def test_get_of_the_manage_page_changes_nothing(env: Env) -> None:
    _slot, path, _done = book(env, unique_email("get"), slot_index=45)
    with env.database.read() as session:
        links_before = [(link.id, link.version, link.last_used_at) for link in
                        session.scalars(select(ShareLink).order_by(ShareLink.id))]
    before = write_counts(env)
    for query in ("", "?week=2000-01-01", "?week=garbage", "?done=moved"):
        assert track(env, env.client.get(path + query)).status_code == 200
    assert track(env, env.client.get(f"{path}/visit.ics")).status_code == 200
    assert write_counts(env) == before
    with env.database.read() as session:
        assert links_before == [(link.id, link.version, link.last_used_at) for link in
                                session.scalars(select(ShareLink).order_by(ShareLink.id))]


def test_bad_manage_links_get_the_plain_404(env: Env) -> None:
    reference = track(env, env.client.get("/s/nonsense"))
    _slot, path, done = book(env, unique_email("revoke"), slot_index=50)
    feed_like = re.search(r"/feeds/([^\"]+)\.ics", done)
    assert feed_like
    for bad in ("/m/nonsense", f"/m/{feed_like.group(1)}", path + "x"):
        response = track(env, env.client.get(bad))
        assert response.status_code == 404 and response.data == reference.data
    token = path.removeprefix("/m/")
    link_id, _version = env.app.extensions["fieldcal.signer"].loads(token, links.Purpose.MANAGE)
    with env.database.write() as session:
        links.revoke(Context(session, SYSTEM, ORGANIZER), must_get(session, ShareLink, link_id))
    revoked = track(env, env.client.get(path))
    assert revoked.status_code == 404 and revoked.data == reference.data
    assert track(env, env.client.post(f"{path}/cancel", data={"csrf": "x"})).status_code == 404


def test_booking_posts_are_rate_limited(env: Env) -> None:
    app = env.make_app(booking_rate=3)
    client = app.test_client()
    address = {"REMOTE_ADDR": f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.7"}
    form = details(unique_email("rate"))
    codes = [client.post(f"/book/{env.seed.repair}/details", data=form, environ_base=address).status_code
             for _ in range(3)]
    assert codes == [200, 200, 200]
    limited = track(env, client.post(f"/book/{env.seed.repair}/details", data=form,
                                     environ_base=address))
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert "Please slow down" in limited.text and "<form" not in limited.text
    other = client.post(f"/book/{env.seed.repair}/details", data=form,
                        environ_base={"REMOTE_ADDR": "10.255.255.1"})
    assert other.status_code == 200, "the limit is per client address"
    with env.database.read() as session:
        assert session.get(RateLimitBucket, f"book:{address['REMOTE_ADDR']}") is not None


# --------------------------------------------------------------------------- input and output


def test_details_errors_are_listed_and_linked(env: Env) -> None:
    response = track(env, env.client.post(f"/book/{env.seed.repair}/details",
                                          data=details("not-an-email", name="", problem="")))
    assert response.status_code == 400
    text = response.text
    assert '<div class="error-summary" role="alert"' in text
    for name in ("email", "name", "problem"):
        assert f'href="#field-{name}"' in text
        assert re.search(rf'id="field-{name}"[^>]*aria-invalid="true"', text, re.S)
        assert re.search(rf'id="field-{name}"[^>]*aria-describedby="[^"]*{name}-error', text, re.S)
    assert 'value="not-an-email"' in text, "what was typed is kept"
    assert "<title>Error:" in text


def test_tampered_details_are_refused(env: Env) -> None:
    page = next_week_picker(env, env.seed.repair, details(unique_email("tamper")))
    form = hold_form(page, slot_values(page)[0])
    form["details"] = form["details"][:-3] + "abc"
    response = track(env, env.client.post(f"/book/{env.seed.repair}/hold", data=form))
    assert response.status_code == 400 and "Please start again" in response.text


def test_user_text_is_escaped(env: Env) -> None:
    evil = "<script>alert(1)</script>"
    email = unique_email("evil")
    page = next_week_picker(env, env.seed.repair,
                            details(email, name=f"Eve {evil}", problem=f"Broken {evil}",
                                    address=f'1 "Quote" Street {evil}', model=f"M{evil}"))
    _slot, path, done = book(env, email, slot_index=55, name=f"Eve {evil}", problem=f"Broken {evil}",
                             address=f'1 "Quote" Street {evil}')
    manage = track(env, env.client.get(path)).text
    for text in (page, done, manage):
        assert "<script>" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_unknown_service_and_stale_get(env: Env) -> None:
    assert track(env, env.client.get("/book/nope/details")).status_code == 404
    stale = track(env, env.client.get(f"/book/{env.seed.repair}/slots"))
    assert stale.status_code == 303 and stale.headers["Location"].endswith("/details")


def test_every_page_sends_the_protective_headers(env: Env) -> None:
    """Every page kind, fetched by this test itself (it does not rely on what others fetched)."""
    env.responses.clear()
    slug = env.seed.repair
    track(env, env.client.get("/book"))
    track(env, env.client.get(f"/book/{slug}/details"))
    track(env, env.client.post(f"/book/{slug}/details", data=details("not-an-email")))
    slot, path, _done = book(env, unique_email("headers"), slot_index=60)
    page = next_week_picker(env, slug, details(unique_email("headers-taken")))
    track(env, env.client.post(f"/book/{slug}/hold", data=hold_form(page, slot)))  # 409
    track(env, env.client.get(path))
    track(env, env.client.get(f"{path}?done=moved"))
    track(env, env.client.post(f"{path}/cancel", data={"csrf": "x" * 40}))  # 403
    track(env, env.client.get("/m/nonsense"))
    statuses = {response.status_code for response in env.responses}
    assert {200, 303, 400, 403, 404, 409} <= statuses, statuses
    for response in env.responses:
        if response.headers.get("Content-Type", "").startswith("text/calendar"):
            continue
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Cache-Control"] == "no-store"
        assert "noindex" in response.headers["X-Robots-Tag"]
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "'unsafe-inline'" not in csp
        assert "script-src" not in csp or "script-src 'self';" in csp  # our files, never inline
        if response.status_code != 303:
            assert '<html lang="en">' in response.text
