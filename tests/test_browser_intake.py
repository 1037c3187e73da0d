# ruff: noqa: F811  (the browser fixtures come from test_browser and are parameters here)
"""The request form in a real browser: a person with a photo at desktop and phone width;
axe-core finds nothing on the form or the thanks page; the browser's proof of work is
found while the person types and verified on sending."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from axekit import axe_violations
from intakekit import jpeg_with_exif
from live import LiveServer
from playwright.sync_api import Browser, FilePayload, Page
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from sqlalchemy import func, select
from test_browser import Shots, _context, browser, shots  # noqa: F401  (fixtures used by name)

from server.db import Database
from server.migrate import upgrade
from server.models import Customer, Job, JobPhoto, RateLimitBucket

pytestmark = pytest.mark.slow
KEYS = secrets.token_urlsafe(32)


@dataclass
class FormSite:
    server: LiveServer
    db: Database


@pytest.fixture(scope="module")
def form_site(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FormSite]:
    db = Database(database_url)
    upgrade(db)
    server = LiveServer(database_url, tmp_path_factory.mktemp("intake-browser"), {
        "FIELDCAL_SECRET_KEYS": KEYS,
        "FIELDCAL_BUSINESS_PHONE": "+49 30 555 0100",
        "FIELDCAL_INTAKE_RATE": "1000",
        "FIELDCAL_INTAKE_MIN_FILL_SECONDS": "0",
    })
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield FormSite(server, db)
    finally:
        server.stop()
        db.dispose()


def job_of(site: FormSite, email: str) -> Job | None:
    with site.db.read() as session:
        job = session.scalars(select(Job).join(Customer).where(Customer.email == email)).first()
        if job is not None:
            session.expunge(job)
        return job


def fill(page: Page, email: str) -> None:
    page.fill("#field-problem", "Trips after five minutes; the display shows E42.")
    page.select_option("#field-urgency", "high")
    page.fill("#field-address", "Werkstr. 5, 10115 Berlin")
    page.fill("#field-make", "Kaeser")
    page.fill("#field-model", "SK 22")
    page.fill("#field-name", "Greta Hahn")
    page.fill("#field-email", email)


@pytest.mark.parametrize("width", [1100, 390])
def test_a_person_sends_a_request_with_a_photo(browser: Browser, form_site: FormSite,
                                               shots: Shots, width: int) -> None:
    context = _context(browser, width=width, height=900)
    page = context.new_page()
    try:
        page.goto(form_site.server.url("/request"))
        assert axe_violations(page) == []
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width
        email = f"browser-{width}-{secrets.token_hex(3)}@person.example"
        fill(page, email)
        photo: FilePayload = {"name": "plate.jpg", "mimeType": "image/jpeg", "buffer": jpeg_with_exif()}
        page.set_input_files("#field-photos", files=[photo])
        shots(page, "filled")
        page.wait_for_function("() => document.getElementById('field-altcha').value !== ''",
                               timeout=10_000)
        verified_before = proofs_verified(form_site)
        started = time.monotonic()
        page.click("button[type=submit]")
        try:
            page.wait_for_selector("text=Thank you: we received your request")
        except PlaywrightTimeoutError as waited:
            raise AssertionError(f"no thanks page; the browser shows {page.url}:\n"
                                 f"{page.inner_text('body')[:1500]}\nserver log:\n"
                                 f"{form_site.server.log_tail(40)}") from waited
        took = time.monotonic() - started
        shots(page, "thanks")
        assert axe_violations(page) == []
    finally:
        context.close()
    assert proofs_verified(form_site) > verified_before, "the browser's proof of work was verified"
    assert took < 10, f"sending took {took:.1f} s"
    job = job_of(form_site, email)
    assert job is not None and job.source == "web"
    with form_site.db.read() as session:
        assert session.scalars(select(JobPhoto).where(JobPhoto.job_id == job.id)).one()


def proofs_verified(site: FormSite) -> int:
    """Each valid proof is recorded once (so it cannot be used again)."""
    with site.db.read() as session:
        return session.scalar(select(func.count()).select_from(RateLimitBucket)
                              .where(RateLimitBucket.key.like("intake-proof:%"))) or 0
