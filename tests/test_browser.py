"""The booking and manage pages in a real browser (Debian's chromium through Playwright).

A person's path: click, type, and the keyboard alone for picking a time; the
same flow with JavaScript switched off; the error states. Every page is saved
as a screenshot in tests/artifacts/ for a human to look at.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from bookkit import ORGANIZER, PHONE, BookingSeed, appointments_of, seed_booking
from live import LiveServer
from seeding import must_get

from server import directory, links
from server.actors import SYSTEM
from server.context import Context
from server.db import Database
from server.migrate import upgrade
from server.models import Appointment, AppointmentStatus, Role, ShareLink, utcnow
from server.scheduling import appointments, booking

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("FIELDCAL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
KEYS = secrets.token_urlsafe(32)
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TIMEOUT_MS = 20_000
LA = ZoneInfo("America/Los_Angeles")

try:
    from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
    HAVE_PLAYWRIGHT = True
except ImportError:  # reported by the browser fixture: a failure when CI=true
    HAVE_PLAYWRIGHT = False


def _browser_problem() -> str | None:
    if not HAVE_PLAYWRIGHT:
        return "playwright is not installed (pip install -e '.[test]')"
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"chromium not found at {CHROMIUM} (apt-get install chromium; ./dev test does it)"
    return None


@dataclass
class Site:
    server: LiveServer
    db: Database
    seed: BookingSeed
    signer: links.LinkSigner


@pytest.fixture(scope="module")
def site(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    db = Database(database_url)
    upgrade(db)
    seed = seed_booking(db, prefix="web-")
    server = LiveServer(database_url, tmp_path_factory.mktemp("browser"), {
        "FIELDCAL_SECRET_KEYS": KEYS,
        "FIELDCAL_BOOKING_RATE": "100000",
        "FIELDCAL_BUSINESS_PHONE": PHONE,
        "FIELDCAL_TIMEZONE": "Europe/Berlin",
    })
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield Site(server, db, seed, links.LinkSigner((KEYS,)))
    finally:
        server.stop()
        db.dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    problem = _browser_problem()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem} (CI=true: the browser tests must run)", pytrace=False)
        pytest.skip(problem)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def _context(browser: Browser, *, javascript: bool = True, width: int = 1100,
             height: int = 900) -> BrowserContext:
    context = browser.new_context(java_script_enabled=javascript,
                                  viewport={"width": width, "height": height},
                                  accept_downloads=True, locale="en-GB")
    context.set_default_timeout(TIMEOUT_MS)
    return context


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    context = _context(browser)
    try:
        yield context.new_page()
    finally:
        context.close()


class Shots:
    """Full-page screenshots named tests/artifacts/<test>-<step>.png."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.prefix = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")

    def __call__(self, page: Page, step: str, *, full_page: bool = True) -> Path:
        path = ARTIFACTS / f"{self.prefix}-{step}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path


@pytest.fixture()
def shots(request: pytest.FixtureRequest) -> Shots:
    return Shots(request)


def unique_email(tag: str) -> str:
    return f"{tag}-{secrets.token_hex(4)}@example.test"


def fill_details(page: Page, site: Site, email: str, timezone: str, *, name: str = "Dana Customer",
                 slug: str | None = None, shots: Shots | None = None) -> None:
    page.goto(site.server.url("/book"))
    service = "Compressor repair" if slug is None else "Air system survey"
    page.get_by_role("link", name=f"Choose {service}").click()
    page.get_by_label("What is wrong?").fill("It trips after ten minutes under load.")
    page.get_by_label("Make").fill("Kaeser")
    page.get_by_label("Model").fill("SK 22")
    page.get_by_label("Address where the compressor is").fill("Hauptstraße 1\n10115 Berlin")
    page.get_by_label("Your name").press_sequentially(name)
    page.get_by_label("Email address").press_sequentially(email)
    page.get_by_label("Phone number").fill("+49 30 1234567")
    page.get_by_label("Your time zone").select_option(timezone)
    if shots is not None:
        shots(page, "2-details")
    page.get_by_role("button", name="Continue to choose a time").click()
    page.get_by_role("heading", name="Choose a time").wait_for()


def pick(page: Page, index: int) -> tuple[str, str]:
    """Click the index-th offered time; (its UTC value, its label)."""
    radio = page.locator("input[name=slot]").nth(index)
    value = radio.get_attribute("value") or ""
    label = page.locator(f"label[for={radio.get_attribute('id')}]")
    text = label.inner_text()
    label.click()
    assert radio.is_checked()
    return value, text


def manage_path(page: Page) -> str:
    href = page.get_by_role("link", name="Manage your booking").get_attribute("href") or ""
    return "/m/" + href.split("/m/", 1)[1]


def run_flow(page: Page, site: Site, shots: Shots, email: str, timezone: str) -> None:
    """Book → confirm → manage → reschedule → cancel, checking what the customer sees."""
    zone = ZoneInfo(timezone)
    page.goto(site.server.url("/book"))
    shots(page, "1-services")
    fill_details(page, site, email, timezone, shots=shots)
    shots(page, "3-slots")
    assert zone.key.replace("_", " ") in page.locator("main").inner_text()
    page.get_by_role("button", name="Next week ›").click()
    value, label = pick(page, 4)
    starts_at = dt.datetime.fromisoformat(value)
    assert label.startswith(starts_at.astimezone(zone).strftime("%H:%M"))
    shots(page, "4-slot-picked")
    page.get_by_role("button", name="Reserve this time").click()
    page.get_by_role("heading", name="Check and confirm your visit").wait_for()
    shots(page, "5-hold")
    main = page.locator("main").inner_text()
    assert starts_at.astimezone(zone).strftime("%A %-d %B %Y") in main
    assert starts_at.astimezone(zone).strftime("%H:%M") in main
    page.get_by_role("button", name="Confirm booking").click()
    page.get_by_role("heading", name="Your visit is booked").wait_for()
    shots(page, "6-confirmed")
    main = page.locator("main").inner_text()
    assert "Anna" in main and "Keller" not in main and "Hauptstraße 1" in main
    assert starts_at.astimezone(zone).strftime("%H:%M") in main
    subscribe = page.get_by_role("link", name="Subscribe in Apple Calendar").get_attribute("href")
    assert subscribe is not None and subscribe.startswith("webcal://")
    with page.expect_download() as download:
        page.get_by_role("link", name="Add to calendar (.ics)").click()
    assert "BEGIN:VEVENT" in Path(download.value.path()).read_text()
    [booked] = appointments_of(site.db, email)
    assert booked.status == AppointmentStatus.CONFIRMED and booked.starts_at == starts_at

    page.get_by_role("link", name="Manage your booking").click()
    page.get_by_role("heading", name="Move to another time").wait_for()
    shots(page, "7-manage")
    new_value, _label = pick(page, 6)
    shots(page, "8-manage-picked")
    page.get_by_role("button", name="Move my visit").click()
    page.get_by_text("Your visit has been moved").wait_for()
    shots(page, "9-moved")
    assert dt.datetime.fromisoformat(new_value).astimezone(zone).strftime("%H:%M") in page.locator(
        "main").inner_text()
    [moved] = appointments_of(site.db, email)
    assert moved.starts_at == dt.datetime.fromisoformat(new_value)
    page.get_by_role("link", name="Cancel this visit").click()
    page.get_by_role("heading", name="Cancel this visit?").wait_for()
    shots(page, "10-cancel-confirm")
    page.get_by_label("Why are you cancelling? (optional)").fill("We found another date.")
    page.get_by_role("button", name="Yes, cancel the visit").click()
    page.get_by_text("Your visit is cancelled").wait_for()
    shots(page, "11-cancelled")
    assert page.locator("form").count() == 0
    [cancelled] = appointments_of(site.db, email)
    assert cancelled.status == AppointmentStatus.CANCELLED


def test_customer_in_los_angeles_books_moves_and_cancels(page: Page, site: Site, shots: Shots) -> None:
    run_flow(page, site, shots, unique_email("la"), "America/Los_Angeles")


def test_the_same_flow_without_javascript(browser: Browser, site: Site, shots: Shots) -> None:
    context = _context(browser, javascript=False)
    try:
        page = context.new_page()
        run_flow(page, site, shots, unique_email("nojs"), "Europe/Berlin")
    finally:
        context.close()


def _focused(page: Page) -> dict[str, str]:
    return page.evaluate(
        "() => ({tag: document.activeElement.tagName, type: document.activeElement.type || '',"
        " name: document.activeElement.name || '', text: document.activeElement.innerText || '',"
        " value: document.activeElement.value || ''})")


def test_keyboard_only_slot_pick(page: Page, site: Site, shots: Shots) -> None:
    email = unique_email("keys")
    fill_details(page, site, email, "Europe/Berlin")
    for _ in range(40):  # from the top of the page to the first offered time
        page.keyboard.press("Tab")
        if _focused(page)["name"] == "slot":
            break
    first = _focused(page)
    assert first["type"] == "radio", "the times are reachable with Tab"
    page.keyboard.press("ArrowRight")  # arrows move within the group
    page.keyboard.press("Space")
    chosen = _focused(page)["value"]
    assert page.locator(f"input[name=slot][value='{chosen}']").is_checked()
    shots(page, "1-focused-slot", full_page=False)
    page.keyboard.press("Tab")
    assert _focused(page)["text"] == "Reserve this time"
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Check and confirm your visit").wait_for()
    for _ in range(20):
        page.keyboard.press("Tab")
        if _focused(page)["text"] == "Confirm booking":
            break
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Your visit is booked").wait_for()
    shots(page, "2-confirmed")
    [booked] = appointments_of(site.db, email)
    assert booked.starts_at == dt.datetime.fromisoformat(chosen)


def test_details_errors_in_the_browser(page: Page, site: Site, shots: Shots) -> None:
    page.goto(site.server.url("/book"))
    page.get_by_role("link", name="Choose Compressor repair").click()
    page.get_by_label("Email address").fill("not-an-email")
    page.get_by_role("button", name="Continue to choose a time").click()
    summary = page.get_by_role("alert")
    summary.wait_for()
    shots(page, "1-errors")
    assert page.evaluate("() => document.activeElement.className") == "error-summary", \
        "the error summary takes the focus, so a screen reader announces it"
    assert "Enter an email address like name@example.com" in summary.inner_text()
    summary.get_by_role("link", name="Enter your name").click()
    assert _focused(page)["name"] == "name"
    assert page.get_by_label("Email address").input_value() == "not-an-email"


def test_slot_taken_while_choosing(browser: Browser, site: Site, shots: Shots) -> None:
    slow, quick = _context(browser), _context(browser)
    try:
        mine = slow.new_page()
        theirs = quick.new_page()
        fill_details(mine, site, unique_email("slow"), "Europe/Berlin")
        fill_details(theirs, site, unique_email("quick"), "Europe/Berlin")
        value, _ = pick(mine, 10)
        theirs.locator(f"input[name=slot][value='{value}'] + label").click()
        theirs.get_by_role("button", name="Reserve this time").click()
        theirs.get_by_role("heading", name="Check and confirm your visit").wait_for()
        mine.get_by_role("button", name="Reserve this time").click()
        mine.get_by_text("That time was just taken").wait_for()
        shots(mine, "1-taken")
        offered = [mine.locator("input[name=slot]").nth(i).get_attribute("value")
                   for i in range(mine.locator("input[name=slot]").count())]
        assert offered and value not in offered
        pick(mine, 0)
        mine.get_by_role("button", name="Reserve this time").click()
        mine.get_by_role("heading", name="Check and confirm your visit").wait_for()
    finally:
        slow.close()
        quick.close()


def _near_visit(site: Site, hours: float) -> str:
    with site.db.write() as session:
        ctx = Context(session, SYSTEM, ORGANIZER)
        technician = directory.add_user(ctx, f"near-{secrets.token_hex(3)}", name="Nora Near",
                                        email="nora@example.test", role=Role.TECHNICIAN)
        customer = directory.add_customer(ctx, "Near Customer", email=unique_email("near"),
                                          address="Close Road 1", timezone="America/Los_Angeles")
        job = directory.add_job(ctx, customer, "Compressor repair", source="web")
        start = (utcnow() + dt.timedelta(hours=hours)).replace(microsecond=0)
        service = booking.service_type_by_slug(session, site.seed.repair)
        appointment = appointments.book(ctx, job, technician, start, start + dt.timedelta(hours=1),
                                        service_type=service)
        return site.server.url(f"/m/{site.signer.dumps(booking.manage_link(ctx, appointment))}")


def test_past_the_cutoff_and_bad_links(page: Page, site: Site, shots: Shots) -> None:
    page.goto(_near_visit(site, hours=3))
    page.get_by_role("heading", name="Need to change this visit?").wait_for()
    shots(page, "1-past-cutoff")
    assert page.locator("form").count() == 0
    assert PHONE in page.locator("main").inner_text()
    assert page.get_by_role("link", name=PHONE).get_attribute("href") == "tel:+49305550100"

    response = page.goto(site.server.url("/m/not-a-real-link"))
    assert response is not None and response.status == 404
    page.get_by_role("heading", name="This link is not valid").wait_for()
    shots(page, "2-invalid-link")

    url = _near_visit(site, hours=24 * 6)
    token = url.rsplit("/", 1)[1]
    link_id, _version = site.signer.loads(token, links.Purpose.MANAGE)
    with site.db.write() as session:
        links.revoke(Context(session, SYSTEM, ORGANIZER), must_get(session, ShareLink, link_id))
    response = page.goto(url)
    assert response is not None and response.status == 404
    shots(page, "3-revoked-link")


def test_expired_hold(page: Page, site: Site, shots: Shots) -> None:
    email = unique_email("late")
    fill_details(page, site, email, "Europe/Berlin")
    pick(page, 14)
    page.get_by_role("button", name="Reserve this time").click()
    page.get_by_role("heading", name="Check and confirm your visit").wait_for()
    [held] = appointments_of(site.db, email)
    with site.db.write() as session:  # the customer went for coffee
        row = session.get(Appointment, held.id)
        assert row is not None
        row.hold_expires_at = utcnow() - dt.timedelta(minutes=1)
    page.get_by_role("button", name="Confirm booking").click()
    page.get_by_text("expired before it was confirmed").wait_for()
    shots(page, "1-expired")
    assert page.locator("input[name=slot]").count() > 0, "back to the picker"
    [still] = appointments_of(site.db, email)
    assert still.status == AppointmentStatus.TENTATIVE


def test_slot_picker_on_a_phone(browser: Browser, site: Site, shots: Shots) -> None:
    context = _context(browser, width=390, height=844)
    try:
        page = context.new_page()
        fill_details(page, site, unique_email("phone"), "America/Los_Angeles")
        shots(page, "1-slots-viewport", full_page=False)
        shots(page, "2-slots-full")
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390, "nothing sticks out sideways on a phone"
        pick(page, 2)
        page.get_by_role("button", name="Reserve this time").click()
        page.get_by_role("heading", name="Check and confirm your visit").wait_for()
        shots(page, "3-hold")
    finally:
        context.close()
