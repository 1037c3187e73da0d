# ruff: noqa: F811  (the browser fixtures come from test_browser and test_console_browser)
"""Phone intake in a real browser: a new caller and a returning one booked end to end,
counting the dispatcher's steps (page loads + clicks + fields typed or chosen); axe-core
finds nothing on any page; the confirmation reaches the SMTP server with a manage link
that opens the customer's page."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
from axekit import axe_violations
from live import LiveServer
from mailkit import SmtpServer, post_office
from phonekit import PhoneSeed, seed_phone
from playwright.sync_api import Page, expect
from seeding import Seed
from test_browser import Shots, _context, browser, shots  # noqa: F401  (fixtures used by name)
from test_console_browser import desk, signed_in  # noqa: F401  (fixtures used by name)

from server.config import Settings
from server.db import Database

pytestmark = pytest.mark.slow
KEYS = secrets.token_urlsafe(32)
NEW_CALLER_STEPS = 12  # the target: a whole phone booking in under a minute of clicks
RETURNING_CALLER_STEPS = 9  # from the board, through the menu


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return {"FIELDCAL_SECRET_KEYS": KEYS, "FIELDCAL_TIMEZONE": "Europe/Berlin"}


@pytest.fixture(scope="module")
def phone(db: Database, seed: Seed) -> PhoneSeed:
    return seed_phone(db)


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Steps:
    """What the dispatcher does, one count per page load, click, field typed or option chosen."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.done: list[str] = []

    def goto(self, url: str) -> None:
        self.done.append(f"load {url}")
        self.page.goto(url)

    def fill(self, label: str, text: str) -> None:
        self.done.append(f"type {label}")
        self.page.get_by_label(label, exact=True).fill(text)

    def choose(self, label: str, value: str) -> None:
        self.done.append(f"choose {label}")
        self.page.get_by_label(label, exact=True).select_option(value)

    def click(self, role: str, name: str, *, exact: bool = False) -> None:
        self.done.append(f"click {name}")
        self.page.get_by_role(role, name=name, exact=exact).first.click()  # type: ignore[arg-type]

    def enter(self, label: str) -> None:
        """Enter in a field: the keyboard submits its form."""
        self.done.append(f"enter in {label}")
        self.page.get_by_label(label, exact=True).press("Enter")


def deliver(live: LiveServer, db: Database, smtp: SmtpServer) -> None:
    """The worker's run: compose the confirmation and hand it to the SMTP server."""
    settings = Settings(instance_path=live.instance, database_url=live.database_url,
                        secret_keys=(KEYS,), base_url=live.base, smtp_url=smtp.url,
                        business_phone="+49 30 555 0100", timezone="Europe/Berlin")
    post_office(db, settings).drain()


def test_a_new_caller_booked_in_twelve_steps_gets_the_confirmation(
        signed_in: Page, live: LiveServer, db: Database, phone: PhoneSeed, smtp: SmtpServer,
        shots: Shots) -> None:
    email = f"hahn-{secrets.token_hex(3)}@example.test"
    name = f"Greta Hahn-{''.join(secrets.choice('bcdfghklmnpqrstvwxz') for _ in range(5))}"
    steps = Steps(signed_in)
    steps.goto(live.url("/console/new"))
    assert axe_violations(signed_in) == []
    steps.fill("Name, phone number, email, address or postcode", name)
    steps.click("button", "Search", exact=True)
    expect(signed_in.get_by_role("status")).to_contain_text("0 customers found")
    expect(signed_in.get_by_label("Customer name")).to_have_value(name)  # started from the search
    steps.fill("Phone number (optional)", "+49 30 1112223")
    steps.fill("Email address (optional)", email)
    steps.fill("Service address", "Werkstraße 5\n10115 Berlin")
    steps.fill("What is wrong?", "Trips after five minutes; the display shows E42.")
    steps.fill("Make (optional)", "Kaeser")
    steps.fill("Model (optional)", "SK 22")
    steps.choose("Service", phone.service)
    shots(signed_in, "1-details")
    assert axe_violations(signed_in) == []
    steps.click("button", "Show the earliest times")
    expect(signed_in.locator("h1")).to_contain_text("Pick a time")
    first = signed_in.locator("button.offer").first
    expect(first).to_contain_text(f"with {phone.berlin}")
    assert axe_violations(signed_in) == []
    shots(signed_in, "2-times")
    steps.click("button", "Book ")
    expect(signed_in.locator("h1")).to_have_text("Booked")
    expect(signed_in.locator("#mail-note")).to_contain_text(f"is on its way to {email}")
    assert axe_violations(signed_in) == []
    shots(signed_in, "3-booked")
    assert len(steps.done) <= NEW_CALLER_STEPS, steps.done
    print(f"new caller: {len(steps.done)} steps: {steps.done}")

    deliver(live, db, smtp)
    mails = smtp.inbox.to(email)
    assert len(mails) == 1
    text = mails[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    manage = re.search(rf"{re.escape(live.base)}/m/\S+", text)
    assert manage, text
    signed_in.goto(manage.group(0))  # the customer's link works
    expect(signed_in.locator("h1")).to_have_text("Your service visit")
    expect(signed_in.locator("main")).to_contain_text(phone.service_name)


def test_a_returning_caller_by_keyboard_in_nine_steps(
        signed_in: Page, live: LiveServer, phone: PhoneSeed, shots: Shots) -> None:
    steps = Steps(signed_in)
    steps.goto(live.url("/console/board"))
    steps.click("link", "New job", exact=True)  # from the console's menu
    steps.fill("Name, phone number, email, address or postcode", phone.customer_phone)
    steps.enter("Name, phone number, email, address or postcode")
    expect(signed_in.get_by_role("status")).to_contain_text("1 customer found")
    pick = signed_in.get_by_role("link", name=f"Book for {phone.customer_name} at Pfannkuchstraße 3")
    pick.focus()
    steps.done.append("enter on the site")
    signed_in.keyboard.press("Enter")
    expect(signed_in.get_by_label("Make (optional)")).to_have_value("Atlas Copco")
    steps.fill("What is wrong?", "Oil in the air line")
    steps.choose("Service", phone.service)
    steps.enter("Serial number (optional)")  # Enter in any field asks for the times
    offer = signed_in.locator("button.offer").nth(1)
    offer.focus()
    steps.done.append("enter on a time")
    signed_in.keyboard.press("Enter")
    expect(signed_in.locator("h1")).to_have_text("Booked")
    expect(signed_in.locator("#mail-note")).to_contain_text(phone.customer_email)
    shots(signed_in, "booked")
    assert len(steps.done) <= RETURNING_CALLER_STEPS, steps.done
    print(f"returning caller: {len(steps.done)} steps: {steps.done}")
