"""The integrations screen in a real browser: seeded health (a dead letter, a pending push, a
needs-reconnect integration), adding a platform with its secret typed into a password field
(never shown back), retrying dead letters; axe finds nothing; a screenshot is kept."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
from axekit import axe_violations
from consolekit import PASSWORD, set_password
from integrationkit import KEY
from live import LiveServer
from playwright.sync_api import Browser, Page, expect
from seeding import Seed, domain
from test_browser import Shots, _context, browser, shots  # noqa: F401  (fixtures used by name)

from server import integrations, outbox
from server.db import Database
from server.integrations import PUSH, Status
from server.vault import Vault

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return {"FIELDCAL_CREDENTIAL_KEYS": KEY}


@pytest.fixture()
def signed_in(browser: Browser, live: LiveServer, db: Database, seed: Seed) -> Iterator[Page]:  # noqa: F811
    set_password(db, seed.dispatcher.login)
    context = _context(browser)
    page = context.new_page()
    page.goto(live.url("/console"))
    page.get_by_label("Login").fill(seed.dispatcher.login)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/board**")
    try:
        yield page
    finally:
        context.close()


def seeded(db: Database) -> tuple[int, int]:
    vault = Vault((KEY,))
    with domain(db) as ctx:
        room = integrations.add(ctx, vault, "slack", "Dispatch room", settings={"channel": "C01"},
                                secrets={"bot_token": "xoxb-seeded"})
        meetings = integrations.add(ctx, vault, "zoom", "Video calls", secrets={"access_token": "zat-seeded"})
        ctx.session.flush()
        for n, (integration_id, status) in enumerate(((room.id, "dead"), (room.id, "pending"),
                                                      (meetings.id, "pending"))):
            payload = {"integration_id": integration_id, "appointment_id": 7000 + n}
            row = outbox.enqueue(ctx.session, PUSH, payload,
                                 idempotency_key=f"push:{integration_id}:{7000 + n}:0:appointment.book")
            row.status = status
        integrations.set_status(ctx, meetings, Status.NEEDS_RECONNECT, "the platform refused our grant")
        return room.id, meetings.id


def test_the_integrations_screen(signed_in: Page, live: LiveServer, db: Database, shots: Shots) -> None:  # noqa: F811
    room, meetings = seeded(db)
    page = signed_in
    page.get_by_role("link", name="Settings").click()
    page.get_by_role("link", name="Integrations and webhooks").click()
    page.wait_for_url("**/console/integrations")
    row = page.locator(f"#integration-{room}")
    expect(row.locator(".pending")).to_have_text("1")
    expect(row.locator(".dead")).to_have_text("1")
    stuck = page.locator(f"#integration-{meetings}")
    expect(stuck).to_contain_text("Needs reconnecting")
    expect(stuck.locator(".pending")).to_have_text("1")
    expect(stuck.get_by_role("button", name="Connect Video calls")).to_be_visible()
    assert axe_violations(page) == []
    shots(page, "health")

    token = "xoxb-" + secrets.token_hex(12)
    page.get_by_label("Connect a platform").select_option("slack")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Name").fill("Night shift")
    page.get_by_label("channel (required)").fill("C99")
    secret_field = page.get_by_label("bot_token")
    expect(secret_field).to_have_attribute("type", "password")
    secret_field.fill(token)
    page.get_by_role("button", name="Add integration").click()
    expect(page.locator("#message")).to_contain_text("added. Secrets are stored encrypted.")
    expect(page.get_by_role("row", name="Night shift")).to_contain_text("Active")
    assert token not in page.content()

    row.get_by_role("button", name="Retry dead letters Dispatch room").click()
    expect(page.locator("#message")).to_have_text("1 dead letter(s) of Dispatch room queued again.")
    expect(page.locator(f"#integration-{room} .pending")).to_have_text("2")
    expect(page.locator(f"#integration-{room} .dead")).to_have_text("0")
    assert token not in page.content()
    shots(page, "after-add-and-retry")
