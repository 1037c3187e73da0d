"""The technician's day page in a real browser at phone size: each button, with screenshots
kept in tests/artifacts/ for a person to look at."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from axekit import axe_violations
from daykit import domain, technician_with_visits
from live import LiveServer
from playwright.sync_api import Browser, Page, ViewportSize, expect
from test_browser import Shots, browser, shots  # noqa: F401  (fixtures used by name)

from server import links
from server.db import Database
from server.models import Appointment, JobStatus

pytestmark = pytest.mark.slow
KEY = "day-browser-" + secrets.token_hex(20)
PHONE: ViewportSize = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return {"FIELDCAL_SECRET_KEYS": KEY, "FIELDCAL_BOOKING_RATE": "100000"}


@pytest.fixture()
def phone(browser: Browser) -> Iterator[Page]:  # noqa: F811
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True,
                                  device_scale_factor=2, locale="en-GB")
    context.set_default_timeout(20_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def _day_path(db: Database, login: str) -> str:
    with domain(db) as ctx:
        link = links.issue(ctx, links.Purpose.DAY, links.parse_subject(ctx.session, f"technician:{login}"))
        return links.path(link.purpose, links.LinkSigner((KEY,)).dumps(link))


def _row(db: Database, appointment_id: int) -> Appointment:
    with db.read() as session:
        found = session.get(Appointment, appointment_id)
        assert found is not None
        return found


def test_every_button_at_phone_width(live: LiveServer, db: Database, phone: Page,
                                     shots: Shots) -> None:  # noqa: F811
    day = technician_with_visits(db, "phone")
    phone.goto(live.url(_day_path(db, day.login)))
    expect(phone.locator("h1")).to_have_text("Tess's day")
    first, second = phone.locator(f"#visit-{day.first}"), phone.locator(f"#visit-{day.second}")
    expect(second.get_by_role("link", name="Open in map")).to_have_attribute(
        "href", "https://www.openstreetmap.org/?mlat=52.49900&mlon=13.49000#map=17/52.49900/13.49000")
    expect(second.get_by_role("link", name="+49 30 1234 567")).to_have_attribute("href", "tel:+49301234567")
    expect(second).to_contain_text("Kaeser SK 22 (serial KS-1)")
    expect(second).to_contain_text("Oil leak: pressure drops under load")
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # no sideways scroll
    assert axe_violations(phone) == []
    shots(phone, "1-start")

    second.get_by_role("button", name="On my way").click()
    expect(phone.get_by_role("status")).to_contain_text("the customer has been told")
    expect(second.locator(".status")).to_contain_text("On the way · arriving about")
    assert _row(db, day.second).progress is JobStatus.EN_ROUTE
    shots(phone, "2-on-my-way")

    second.get_by_role("button", name="On site").click()
    expect(second.locator(".status")).to_have_text("Technician on site")
    assert _row(db, day.second).progress is JobStatus.ON_SITE
    shots(phone, "3-on-site")

    second.get_by_label("Note").fill("Replaced the pressure switch; filter due in May.")
    second.get_by_role("button", name="Done").click()
    expect(second.locator(".status")).to_have_text("Done")
    expect(second).to_contain_text("Replaced the pressure switch; filter due in May.")
    expect(second.get_by_role("button")).to_have_count(0)
    assert _row(db, day.second).progress is JobStatus.COMPLETED
    shots(phone, "4-done")

    first.get_by_text("Can't make it").click()
    first.get_by_label("Why?").fill("Van broke down")
    shots(phone, "5-cant-make-it")
    first.get_by_role("button", name="Give this visit back").click()
    expect(phone.get_by_role("status")).to_contain_text("back with dispatch")
    expect(phone.locator(f"#visit-{day.first}")).to_have_count(0)
    assert _row(db, day.first).technician_id is None
    shots(phone, "6-given-back")
