"""Slot hoarding: open holds per contact (normalised), per phone and per client address;
the client address behind proxies (FIELDCAL_TRUSTED_PROXIES), with and without it."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from bookkit import ORGANIZER, BookingSeed, details, free_starts, hidden, seed_booking, slot_values
from live import LiveServer
from seeding import must_get
from sqlalchemy import select

from server.actors import SYSTEM
from server.context import Context
from server.db import Database
from server.errors import ConfigError
from server.migrate import upgrade
from server.models import Appointment, AppointmentStatus, utcnow
from server.scheduling import booking
from server.web.proxies import TrustedProxies


@dataclass
class Hoard:
    db: Database
    seed: BookingSeed
    starts: list[dt.datetime]


@pytest.fixture(scope="module")
def hoard(database_url: str) -> Iterator[Hoard]:
    db = Database(database_url)
    upgrade(db)
    seed = seed_booking(db, prefix="hoard-")
    starts: list[dt.datetime] = []
    for start in free_starts(db, seed.repair, utcnow() + dt.timedelta(days=2), days=25):
        if not starts or start >= starts[-1] + dt.timedelta(hours=2):  # never overlapping
            starts.append(start)
    assert len(starts) > 40
    try:
        yield Hoard(db, seed, starts)
    finally:
        db.dispose()


def contact(email: str, phone: str = "") -> booking.Contact:
    return booking.Contact(name="Dana", email=email, phone=phone, timezone="Europe/Berlin",
                           address="Hauptstraße 1, Berlin", problem="Leaks")


def hold(hoard: Hoard, who: booking.Contact, client: str) -> Appointment:
    with hoard.db.write() as session:
        ctx = Context(session, SYSTEM, ORGANIZER)
        service = booking.service_type_by_slug(session, hoard.seed.repair)
        return booking.hold(ctx, service, hoard.starts.pop(0), who,
                            idempotency_key=secrets.token_urlsafe(16),
                            client_address=client)


def open_holds(hoard: Hoard, ids: list[int]) -> list[int]:
    with hoard.db.read() as session:
        return list(session.scalars(select(Appointment.id).where(
            Appointment.id.in_(ids), Appointment.status != AppointmentStatus.CANCELLED,
            Appointment.hold_expires_at.is_not(None))))


def test_contact_and_phone_keys() -> None:
    assert booking.contact_key(" Dana+0@Example.TEST ") == "dana@example.test"
    assert booking.contact_key("dana+a+b@example.test") == "dana@example.test"
    assert booking.contact_key("D.a.n.a+x@googlemail.com") == "dana@gmail.com"
    assert booking.contact_key("d.ana@example.test") == "d.ana@example.test"  # dots only at gmail
    assert booking.contact_key("+x@example.test") == ""
    assert booking.phone_key("+49 (30) 555-0100") == booking.phone_key("0049 30 5550100")
    assert booking.phone_key("12345") == ""  # too short to tell people apart
    assert booking.client_key("203.0.113.7") != booking.client_key("203.0.113.8")
    assert "203.0.113.7" not in booking.client_key("203.0.113.7")


def test_plus_addresses_from_one_client_hold_one_slot(hoard: Hoard) -> None:
    tag = secrets.token_hex(3)
    ids = [hold(hoard, contact(f"dana{tag}+{n}@example.test"), "203.0.113.7").id for n in range(6)]
    assert open_holds(hoard, ids) == [ids[-1]]  # each new one replaced the one before


@pytest.mark.parametrize("variants", [
    ["Sam{t}@Example.TEST", "sam{t}@example.test", "SAM{t}+promo@example.test"],
    ["s.a.m{t}@gmail.com", "sam{t}+x@googlemail.com", "S.A.M{t}@GMAIL.COM"],
])
def test_case_and_provider_variants_are_one_contact(hoard: Hoard, variants: list[str]) -> None:
    tag = secrets.token_hex(3)
    ids = [hold(hoard, contact(v.format(t=tag)), f"198.51.100.{n}").id
           for n, v in enumerate(variants)]
    assert open_holds(hoard, ids) == [ids[-1]]


def test_one_phone_number_holds_one_slot(hoard: Hoard) -> None:
    phone = f"+49 30 {secrets.randbelow(10**7):07d}"
    ids = [hold(hoard, contact(f"p{secrets.token_hex(4)}@example.test", phone.replace(" ", sep)),
                f"192.0.2.{n}").id for n, sep in enumerate([" ", "-", ""])]
    assert open_holds(hoard, ids) == [ids[-1]]


def test_open_holds_per_client_address_are_capped(hoard: Hoard) -> None:
    client = f"2001:db8::{secrets.token_hex(2)}"
    ids = [hold(hoard, contact(f"c{secrets.token_hex(4)}@example.test"), client).id
           for _ in range(booking.MAX_OPEN_HOLDS_PER_CLIENT)]
    with pytest.raises(booking.TooManyHolds) as refused:
        hold(hoard, contact(f"c{secrets.token_hex(4)}@example.test"), client)
    assert refused.value.status == 429 and "confirm one of them" in refused.value.message
    assert len(open_holds(hoard, ids)) == booking.MAX_OPEN_HOLDS_PER_CLIENT
    hold(hoard, contact(f"c{secrets.token_hex(4)}@example.test"), client + "1")  # another client
    with hoard.db.write() as session:  # confirming one frees a place for this client
        appointment = must_get(session, Appointment, ids[0])
        booking.confirm(Context(session, SYSTEM, ORGANIZER), appointment)
        assert appointment.hold_client is None
    hold(hoard, contact(f"c{secrets.token_hex(4)}@example.test"), client)


def test_upcoming_visits_are_capped_across_plus_addresses(hoard: Hoard) -> None:
    tag = secrets.token_hex(3)
    for n in range(booking.MAX_UPCOMING_PER_CONTACT):
        held = hold(hoard, contact(f"up{tag}+{n}@example.test"), f"203.0.113.{100 + n}")
        with hoard.db.write() as session:
            booking.confirm(Context(session, SYSTEM, ORGANIZER),
                            must_get(session, Appointment, held.id))
    with pytest.raises(booking.TooManyBookings):
        hold(hoard, contact(f"UP{tag}+again@example.test"), "203.0.113.200")


# --------------------------------------------------------------------------- client address


def test_trusted_proxies_rules() -> None:
    assert TrustedProxies.parse("").client("10.0.0.1", ["1.2.3.4"]) == "10.0.0.1"
    one = TrustedProxies.parse("1")
    assert one.client("10.0.0.1", ["6.6.6.6", " 1.2.3.4"]) == "1.2.3.4"  # the last hop's view
    assert one.client("10.0.0.1", []) == "10.0.0.1"
    assert TrustedProxies.parse("2").client("10.0.0.1", ["6.6.6.6", "1.2.3.4", "10.0.0.2"]) \
        == "1.2.3.4"
    nets = TrustedProxies.parse("10.0.0.0/8, 2001:db8::/32")
    assert nets.client("10.0.0.1", ["6.6.6.6", "1.2.3.4", "10.9.9.9"]) == "1.2.3.4"
    assert nets.client("192.0.2.1", ["1.2.3.4"]) == "192.0.2.1"  # peer is no proxy: ignored
    assert nets.client("10.0.0.1", ["not-an-address"]) == "10.0.0.1"
    assert nets.client("2001:db8::1", ["10.1.1.1"]) == "10.1.1.1"  # all trusted: the first
    for bad in ("x", "10.0.0.0/33", "99"):
        with pytest.raises(ConfigError, match="FIELDCAL_TRUSTED_PROXIES"):
            TrustedProxies.parse(bad)


@pytest.fixture(scope="module")
def sqlite_booking(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, BookingSeed]:
    from live import use_audit_key

    url = f"sqlite:///{tmp_path_factory.mktemp('proxies') / 'fieldcal.sqlite3'}"
    use_audit_key(url)
    db = Database(url)
    upgrade(db)
    seed = seed_booking(db, prefix="px-")
    db.dispose()
    return url, seed


def serve(url: str, folder: Path, **env: str) -> LiveServer:
    server = LiveServer(url, folder, {"FIELDCAL_BOOKING_RATE": "3", **env}, workers=1)
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    return server


def post_details(server: LiveServer, slug: str, forwarded: str, email: str,
                 phone: str = "") -> requests.Response:
    return requests.post(server.url(f"/book/{slug}/details"), data=details(email, phone=phone),
                         headers={"X-Forwarded-For": forwarded}, timeout=30)


def hold_from(server: LiveServer, slug: str, forwarded: str, email: str) -> int:
    """Hold the first free time (never one already held) as this client and contact."""
    page = post_details(server, slug, forwarded, email, f"+1 555 {secrets.randbelow(10**7):07d}")
    assert page.status_code == 200, page.text
    form = {"details": hidden(page.text, "details"), "key": hidden(page.text, "key"),
            "slot": slot_values(page.text)[0], "week": hidden(page.text, "week")}
    return requests.post(server.url(f"/book/{slug}/hold"), data=form, allow_redirects=False,
                         headers={"X-Forwarded-For": forwarded}, timeout=30).status_code


def test_without_trusted_proxies_forwarded_for_is_ignored(
        sqlite_booking: tuple[str, BookingSeed], tmp_path: Path) -> None:
    url, seed = sqlite_booking
    server = serve(url, tmp_path)
    try:
        answers = [post_details(server, seed.repair, f"198.51.100.{n}", "a@example.test")
                   .status_code for n in range(4)]
        assert answers == [200, 200, 200, 429]  # one client, whatever the header claims
    finally:
        server.stop()


def test_with_trusted_proxies_each_forwarded_client_counts_alone(
        sqlite_booking: tuple[str, BookingSeed], tmp_path: Path) -> None:
    url, seed = sqlite_booking
    server = serve(url, tmp_path, FIELDCAL_TRUSTED_PROXIES="127.0.0.1/32",
                   FIELDCAL_BOOKING_RATE="6")
    try:
        answers = [post_details(server, seed.repair, f"6.6.6.6, 198.51.100.{n}", "b@example.test")
                   .status_code for n in range(8)]
        assert answers == [200] * 8  # eight clients behind the proxy, one request each
        answers = [post_details(server, seed.repair, "spoofed, 203.0.113.9", "b@example.test")
                   .status_code for _ in range(7)]
        assert answers == [200] * 6 + [429]  # the left, client-written part does not count
    finally:
        server.stop()


def test_holds_behind_a_proxy_are_capped_per_real_client(
        sqlite_booking: tuple[str, BookingSeed], tmp_path: Path) -> None:
    url, seed = sqlite_booking
    server = serve(url, tmp_path, FIELDCAL_TRUSTED_PROXIES="1", FIELDCAL_BOOKING_RATE="1000")
    try:
        tag = secrets.token_hex(3)
        mine = [hold_from(server, seed.repair, "203.0.113.50", f"h{tag}{n}@example.test")
                for n in range(booking.MAX_OPEN_HOLDS_PER_CLIENT + 1)]
        assert mine == [303] * booking.MAX_OPEN_HOLDS_PER_CLIENT + [429]
        other = hold_from(server, seed.repair, "203.0.113.51", f"o{tag}@example.test")
        assert other == 303
    finally:
        server.stop()
