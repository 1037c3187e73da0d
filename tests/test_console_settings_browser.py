"""The settings pages in a real browser, by keyboard only: a technician's working hours and
time off, a refusal shown beside its field; axe finds nothing; screenshots in tests/artifacts/."""

from __future__ import annotations

import datetime as dt
import secrets
from zoneinfo import ZoneInfo

import pytest
from axekit import axe_violations
from live import LiveServer
from playwright.sync_api import Page, expect
from seeding import Seed, domain
from test_browser import Shots, browser, shots  # noqa: F401  (fixtures used by name)
from test_console_browser import desk, signed_in  # noqa: F401  (fixtures used by name)

from server import directory
from server.db import Database
from server.models import Role, TimeOff, WorkingHours

pytestmark = pytest.mark.slow
BERLIN = ZoneInfo("Europe/Berlin")


def _type_into(page: Page, label: str, value: str) -> None:
    """Focus a field by its label and replace what it holds, as a person would with keys."""
    page.get_by_label(label, exact=True).focus()
    page.keyboard.press("Control+A")
    page.keyboard.type(value)


def test_working_hours_and_time_off_by_keyboard(live: LiveServer, seed: Seed, db: Database,
                                                signed_in: Page, shots: Shots) -> None:  # noqa: F811
    login = f"kbd-{secrets.token_hex(3)}"
    with domain(db) as ctx:
        user = directory.add_user(ctx, login, name="Kim Keyboard", email=f"{login}@x.test",
                                  role=Role.TECHNICIAN, timezone="Europe/Berlin")
        user_id = user.id
    page = signed_in
    page.get_by_role("link", name="Settings").focus()
    page.keyboard.press("Enter")
    page.get_by_role("link", name="Technicians").focus()
    page.keyboard.press("Enter")
    page.get_by_role("link", name="Kim Keyboard").focus()
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_contain_text("Kim Keyboard")
    assert axe_violations(page) == []

    _type_into(page, "Monday", "08:00-12:00, 13:00-16:00")
    page.keyboard.press("Tab")
    page.keyboard.type("09:00-17:00")  # Tuesday, reached with Tab
    page.keyboard.press("Tab")
    page.keyboard.type("9-5")  # Wednesday: not HH:MM
    page.keyboard.press("Enter")
    wednesday = page.get_by_label("Wednesday", exact=True)
    expect(wednesday).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#hours_wed-error")).to_contain_text("must be HH:MM-HH:MM")
    expect(page.get_by_label("Monday", exact=True)).to_have_value("08:00-12:00, 13:00-16:00")
    shots(page, "hours-refused")
    with db.read() as session:
        assert session.query(WorkingHours).filter_by(technician_id=user_id).count() == 0

    _type_into(page, "Wednesday", "10:00-14:00")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("Working hours saved.")
    with db.read() as session:
        rows = sorted((r.weekday, r.starts, r.ends) for r in
                      session.query(WorkingHours).filter_by(technician_id=user_id))
    assert rows == [(0, "08:00", "12:00"), (0, "13:00", "16:00"), (1, "09:00", "17:00"),
                    (2, "10:00", "14:00")]

    first = dt.datetime.now(BERLIN).date() + dt.timedelta(days=30)
    last = first + dt.timedelta(days=2)
    page.get_by_label("First day", exact=True).focus()
    page.keyboard.type(first.isoformat())
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")  # past "From (optional)" to "Last day"
    page.keyboard.type(last.isoformat())
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")  # past "Until (optional)" to "Reason"
    page.keyboard.type("Training course")
    page.keyboard.press("Enter")
    expect(page.get_by_role("status")).to_have_text("Time off added.")
    expect(page.locator("#time-off")).to_contain_text(
        f"{first:%a %d %b %Y} – {last:%a %d %b %Y} — Training course")
    with db.read() as session:
        (row,) = session.query(TimeOff).filter_by(technician_id=user_id).all()
    assert row.starts_at == dt.datetime.combine(first, dt.time(), BERLIN)
    assert row.ends_at == dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), BERLIN)
    assert axe_violations(page) == []
    shots(page, "technician-settings")
    for path, step in (("/console/settings/services", "service-types"),
                       ("/console/settings/holidays", "holidays")):
        page.goto(live.url(path))
        assert axe_violations(page) == [], step
        shots(page, step)
