# ruff: noqa: F811  (the browser fixtures come from test_browser and are parameters here)
"""Every public page in a real browser, at phone and desktop widths: axe-core finds nothing,
nothing scrolls sideways (even with a long email address), every target is at least 44 px,
the focus ring stands out, the cancel button is not buried under the times, and the time
zone comes from the browser (with JavaScript) or from the address (without)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest
from axekit import axe_violations
from bookkit import appointments_of
from playwright.sync_api import Browser, Page, expect
from test_browser import (  # noqa: F401  (fixtures used by name)
    Shots,
    Site,
    _context,
    _near_visit,
    browser,
    page,
    pick,
    shots,
    site,
)

from server import links
from server.actors import SYSTEM
from server.context import Context

pytestmark = pytest.mark.slow

WIDTHS = (320, 390, 1100)
TARGET_PX = 44
TARGETS = ("main .button, main button, .chip label, .back a, .error-summary a, .weeknav a, "
           "summary")


def long_email() -> str:  # 31 characters and more break narrow layouts
    return f"maximilian.mustermann-{secrets.token_hex(3)}@werkstatt-grosskunde.example.test"


def small_targets(page: Page) -> list[dict[str, Any]]:
    return page.evaluate(
        """(selector) => Array.from(document.querySelectorAll(selector))
            .filter(e => e.getClientRects().length > 0)
            .map(e => { const r = e.getBoundingClientRect();
                        return {text: e.innerText.trim().slice(0, 40), width: r.width,
                                height: r.height}; })
            .filter(t => t.height < 43.5 || t.width < 43.5)""", TARGETS)


class Checker:
    """Checks each page it is given and collects what fails, per page."""

    def __init__(self, width: int, shots: Shots) -> None:
        self.width = width
        self.shots = shots
        self.problems: dict[str, list[str]] = {}
        self.pages: list[str] = []

    def __call__(self, page: Page, name: str) -> None:
        page.wait_for_load_state("load")
        self.pages.append(name)
        self.shots(page, f"{self.width}-{name}")
        found = axe_violations(page)
        scroll = page.evaluate("() => document.documentElement.scrollWidth")
        if scroll > self.width:
            found.append(f"scrolls sideways: {scroll} px wide at {self.width} px")
        found += [f"target under {TARGET_PX} px: {t}" for t in small_targets(page)]
        if found:
            self.problems[name] = found


def share_links(site: Site, email: str) -> tuple[str, str]:
    """The share page of the customer with this email, and a technician's schedule page."""
    [booked, *_] = appointments_of(site.db, email)
    with site.db.write() as session:
        ctx = Context(session, SYSTEM, "dispatch@example.test")
        customer = links.issue(ctx, links.Purpose.SHARE, links.parse_subject(
            session, f"customer:{booked.job.customer_id}"))
        schedule = links.issue(ctx, links.Purpose.SHARE,
                               links.parse_subject(session, f"technician:{site.seed.technician}"))
        return (site.server.url(f"/s/{site.signer.dumps(customer)}"),
                site.server.url(f"/s/{site.signer.dumps(schedule)}"))


def walk(page: Page, site: Site, check: Callable[[Page, str], None], email: str) -> None:
    """Every public page, in the order a customer meets them."""
    page.goto(site.server.url("/"))
    check(page, "start")
    page.get_by_role("link", name="Book a visit").click()
    check(page, "services")
    page.get_by_role("link", name="Choose Compressor repair").click()
    check(page, "details")
    page.get_by_role("button", name="Continue to choose a time").click()
    page.get_by_role("alert").wait_for()
    check(page, "details-errors")
    page.get_by_label("What is wrong?").fill("It trips after ten minutes under load.")
    page.get_by_label("Address where the compressor is").fill("Hauptstraße 1\n10115 Berlin\nGermany")
    page.get_by_label("Your name").fill("Maximilian Mustermann")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Your time zone").select_option("Europe/Berlin")
    page.get_by_role("button", name="Continue to choose a time").click()
    page.get_by_role("heading", name="Choose a time").wait_for()
    page.get_by_role("button", name="Next week ›").click()
    check(page, "slots")
    pick(page, 3)
    page.get_by_role("button", name="Reserve this time").click()
    page.get_by_role("heading", name="Check and confirm your visit").wait_for()
    check(page, "hold")
    page.get_by_role("button", name="Confirm booking").click()
    page.get_by_role("heading", name="Your visit is booked").wait_for()
    check(page, "confirmed")
    page.get_by_role("link", name="Manage your booking").click()
    page.get_by_role("heading", name="Move to another time").wait_for()
    check(page, "manage")
    cancel = page.get_by_role("link", name="Cancel this visit").bounding_box()
    first_time = page.locator(".chip label").first.bounding_box()
    assert cancel and first_time and cancel["y"] < first_time["y"], \
        "the way to cancel comes before the list of times"
    page.get_by_role("link", name="Cancel this visit").click()
    check(page, "cancel-confirm")
    page.get_by_role("button", name="Yes, cancel the visit").click()
    page.get_by_text("Your visit is cancelled").wait_for()
    check(page, "cancelled")
    page.goto(_near_visit(site, hours=3))
    check(page, "past-cutoff")
    customer, schedule = share_links(site, email)
    page.goto(customer)
    check(page, "share-customer")
    page.goto(schedule)
    check(page, "share-schedule")
    page.get_by_text("Google Calendar").first.click()  # a calendar-help toggle, opened
    check(page, "share-schedule-help")
    page.goto(site.server.url("/m/not-a-real-link"))
    check(page, "not-found")
    page.goto(site.server.url("/book/no-such-service/details"))
    check(page, "problem")


@pytest.mark.parametrize("width", WIDTHS)
def test_every_public_page_passes_axe_and_fits(browser: Browser, site: Site, shots: Shots,
                                               width: int) -> None:
    context = _context(browser, width=width, height=844 if width < 600 else 900)
    try:
        page = context.new_page()
        check = Checker(width, shots)
        walk(page, site, check, long_email())
        assert len(check.pages) == 16
        assert check.problems == {}, "\n".join(
            f"{name}: {problem}" for name, found in check.problems.items() for problem in found)
    finally:
        context.close()


def contrast(rgb: str, against: tuple[int, int, int] = (255, 255, 255)) -> float:
    def luminance(channels: tuple[int, ...]) -> float:
        linear = [c / 12.92 if c <= 10.31 else ((c / 255 + 0.055) / 1.055) ** 2.4 * 255
                  for c in channels]
        return (0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]) / 255
    values = tuple(int(v) for v in rgb[rgb.index("(") + 1:rgb.index(")")].split(",")[:3])
    light, dark = sorted((luminance(values), luminance(against)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_focus_ring_stands_out_against_white(page: Page, site: Site) -> None:
    page.goto(site.server.url("/book"))
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.classList.contains('button')"):
            break
    style = page.evaluate("() => { const s = getComputedStyle(document.activeElement);"
                          " return {color: s.outlineColor, width: s.outlineWidth,"
                          " style: s.outlineStyle}; }")
    assert style["style"] == "solid" and float(style["width"].removesuffix("px")) >= 2
    assert contrast(style["color"]) >= 3, style


def zone_shown(page: Page) -> str:
    return page.locator(".lead strong").inner_text()


@pytest.mark.parametrize(("javascript", "address", "expected"), [
    (True, "1 Main St\nBoston, MA 02110", "America/Los Angeles"),  # the browser's zone wins
    (False, "1 Infinite Loop\nCupertino, CA 95014", "America/Los Angeles"),  # from the address
    (False, "Hauptstraße 1\n10115 Berlin\nGermany", "Europe/Berlin"),
])
def test_time_zone_comes_from_the_browser_or_the_address(
        browser: Browser, site: Site, javascript: bool, address: str, expected: str) -> None:
    context = browser.new_context(java_script_enabled=javascript, timezone_id="America/Los_Angeles",
                                  viewport={"width": 390, "height": 844}, locale="en-US")
    try:
        page = context.new_page()
        page.goto(site.server.url("/book"))
        page.get_by_role("link", name="Choose Compressor repair").click()
        select = page.get_by_label("Your time zone")
        # The page's script fills in the browser's zone once it has run: wait for it.
        expect(select).to_have_value("America/Los_Angeles" if javascript else "")
        page.get_by_label("What is wrong?").fill("Oil in the air line.")
        page.get_by_label("Address where the compressor is").fill(address)
        page.get_by_label("Your name").fill("Pat Customer")
        page.get_by_label("Email address").fill(f"zone-{secrets.token_hex(3)}@example.test")
        page.get_by_role("button", name="Continue to choose a time").click()
        page.get_by_role("heading", name="Choose a time").wait_for()
        assert zone_shown(page) == expected
    finally:
        context.close()
