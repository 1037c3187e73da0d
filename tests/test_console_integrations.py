"""The console's integrations screen: add (secrets typed once, sealed, never shown again),
health from a seeded state (a dead letter, a pending push, a needs-reconnect integration),
pause/resume/retry/remove, test against a fake platform, OAuth connect, and webhooks."""

from __future__ import annotations

import html
import re
import secrets
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from consolekit import make_app, set_password, sign_in, token
from flask import Flask
from flask.testing import FlaskClient
from integrationkit import KEY
from platformkit import FakePlatform, Recorded, fake_platform, json_answer
from seeding import Seed, domain, must_get
from sqlalchemy import select

from server import integrations, outbox, webhooks
from server.db import Database
from server.integrations import PUSH, Status
from server.models import AuditEntry, Integration, Webhook
from server.vault import Vault

MARKER = re.compile(r'id="message">([^<]*)<')


@pytest.fixture(scope="module")
def app(database_url: str, seed: Seed, tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return make_app(database_url, tmp_path_factory.mktemp("console-integrations"),
                    extra={"FIELDCAL_CREDENTIAL_KEYS": KEY})


@pytest.fixture(scope="module")
def desk(app: Flask, db: Database, seed: Seed) -> tuple[FlaskClient, str]:
    set_password(db, seed.dispatcher.login)
    client = app.test_client()
    assert sign_in(client, seed.dispatcher.login) == 303
    return client, token(client)


@pytest.fixture()
def slack() -> Iterator[FakePlatform]:
    def answer(recorded: Recorded) -> tuple[int, dict[str, str], bytes]:
        if recorded.header("Authorization") == "Bearer xoxb-refused":
            return json_answer(401, {"ok": False, "error": "invalid_auth"})
        return json_answer(200, {"ok": True, "team": "Fieldcal"})

    with fake_platform(answer) as platform:
        yield platform


def said(page: str) -> str:
    found = MARKER.search(page)
    return html.unescape(found.group(1)) if found else ""


def post(desk: tuple[FlaskClient, str], path: str, **form: str) -> tuple[int, str]:
    client, csrf = desk
    response = client.post(path, data={"csrf": csrf, **form})
    return response.status_code, response.get_data(as_text=True)


def every_page(desk: tuple[FlaskClient, str]) -> str:
    client, _ = desk
    pages = ["/console/integrations", "/console/links", "/console/api-keys", "/console/board"]
    with_hooks = re.findall(r'href="(/console/webhooks/\d+)"', client.get(pages[0]).get_data(as_text=True))
    return "".join(client.get(path).get_data(as_text=True) for path in pages + with_hooks)


def test_an_integration_added_in_the_console_keeps_its_secrets_out_of_every_page(
        desk: tuple[FlaskClient, str], db: Database, seed: Seed, slack: FakePlatform) -> None:
    client, _ = desk
    bot, signing = "xoxb-" + secrets.token_hex(12), "sig-" + secrets.token_hex(12)
    form = client.get("/console/integrations/new?platform=slack").get_data(as_text=True)
    assert 'name="secret.bot_token" type="password"' in form and 'name="set.channel"' in form
    typed = {"set.channel": "C042", "set.base_url": slack.url, "secret.bot_token": bot,
             "secret.signing_secret": signing}
    status, page = post(desk, "/console/integrations", platform="slack", name="Dispatch room",
                        scope="team:no-such-team", **typed)
    assert status == 404 and "no team 'no-such-team'" in said(page)
    assert 'value="C042"' in page and bot not in page and signing not in page  # typed settings come back
    status, page = post(desk, "/console/integrations", platform="slack", name="Dispatch room",
                        scope=f"team:{seed.team_slug}", **typed)
    assert status == 201 and bot not in page and signing not in page, said(page)
    with db.read() as session:
        row = session.scalars(select(Integration).where(Integration.name == "Dispatch room")).one()
        assert bot not in row.secrets and Vault((KEY,)).open(row.secrets) == {
            "bot_token": bot, "signing_secret": signing}
        assert row.scope == f"team:{seed.team_slug}" and row.settings == {"channel": "C042",
                                                                          "base_url": slack.url}
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "integration.add",
                                                         AuditEntry.entity_id == str(row.id))).one()
        assert entry.actor == seed.dispatcher.login and entry.channel == "console"
        integration_id = row.id
    status, page = post(desk, f"/console/integrations/{integration_id}/test")
    assert status == 200 and said(page).startswith("Test of Dispatch room passed: slack: token accepted")
    assert [r.path for r in slack.requests] == ["/auth.test"]
    assert slack.requests[0].header("Authorization") == f"Bearer {bot}"  # the vault's copy reached it
    for action, state in (("pause", Status.PAUSED), ("resume", Status.ACTIVE)):
        status, page = post(desk, f"/console/integrations/{integration_id}/{action}")
        assert status == 200
        with db.read() as session:
            assert integrations.get(session, integration_id).status == state
    assert bot not in every_page(desk) and signing not in every_page(desk)
    status, page = post(desk, f"/console/integrations/{integration_id}/remove")
    assert status == 200 and "removed" in said(page)
    with db.read() as session:
        assert session.get(Integration, integration_id) is None


def test_a_refused_platform_test_says_why(desk: tuple[FlaskClient, str], db: Database,
                                          slack: FakePlatform) -> None:
    with domain(db) as ctx:
        row = integrations.add(ctx, Vault((KEY,)), "slack", "Old token", settings={
            "channel": "C1", "base_url": slack.url}, secrets={"bot_token": "xoxb-refused"})
        integration_id = row.id
    status, page = post(desk, f"/console/integrations/{integration_id}/test")
    assert status == 502 and "Test of Old token failed: slack: POST /auth.test answered 401" in said(page)
    assert "xoxb-refused" not in page
    post(desk, f"/console/integrations/{integration_id}/remove")


def _push(session: object, integration_id: int, n: int, status: str) -> None:
    row = outbox.enqueue(session, PUSH, {"integration_id": integration_id, "appointment_id": n,  # type: ignore[arg-type]
                                         "sequence": 0, "action": "appointment.book", "note": ""},
                         idempotency_key=f"push:{integration_id}:{n}:0:appointment.book")
    row.status = status


def _row(html: str, integration_id: int) -> str:
    found = re.search(rf'<tr id="integration-{integration_id}"(.*?)</tr>', html, re.S)
    assert found, f"integration {integration_id} is not listed"
    return found.group(0)


def test_health_numbers_match_the_seeded_state(desk: tuple[FlaskClient, str], db: Database) -> None:
    vault = Vault((KEY,))
    with domain(db) as ctx:
        healthy = integrations.add(ctx, vault, "slack", "Health room", settings={"channel": "C7"},
                                   secrets={"bot_token": "xoxb-health"})
        stuck = integrations.add(ctx, vault, "zoom", "Health zoom", secrets={"access_token": "zat-health"})
        ctx.session.flush()
        _push(ctx.session, healthy.id, 9001, "dead")
        _push(ctx.session, healthy.id, 9002, "pending")
        _push(ctx.session, healthy.id, 9003, "sent")
        _push(ctx.session, stuck.id, 9004, "pending")
        integrations.set_status(ctx, stuck, Status.NEEDS_RECONNECT, "the platform refused our grant")
        ids = healthy.id, stuck.id
    with db.read() as session:
        first, second = (integrations.health(session, integrations.get(session, i)) for i in ids)
        assert (first.pending, first.dead, first.sent) == (1, 1, 1)
        assert not first.needs_reconnect and not first.paused
        assert (second.pending, second.dead, second.needs_reconnect) == (1, 0, True)
        assert first.last_success_at is None and second.last_error == "the platform refused our grant"
    page = desk[0].get("/console/integrations").get_data(as_text=True)
    row = _row(page, ids[0])
    assert 'data-pending="1" data-dead="1" data-status="active"' in row and "Retry dead letters" in row
    assert ">never<" in row
    row = _row(page, ids[1])
    assert 'data-pending="1" data-dead="0" data-status="needs_reconnect"' in row
    assert "Needs reconnecting" in row and "Last error: the platform refused our grant" in row
    assert "Resume" in row and "Connect" in row  # zoom signs in with OAuth
    status, page = post(desk, f"/console/integrations/{ids[0]}/retry")
    assert status == 200 and said(page) == "1 dead letter(s) of Health room queued again."
    assert 'data-pending="2" data-dead="0"' in _row(page, ids[0])
    with db.write() as session:  # a push went out: the list says when
        integrations.record_push(session, integrations.get(session, ids[0]), 9003, None, 1)
    row = _row(desk[0].get("/console/integrations").get_data(as_text=True), ids[0])
    assert ">never<" not in row and re.search(r"<td>\w{3} \d\d \w{3} \d{4} \d\d:\d\d</td>", row)
    for integration_id in ids:
        post(desk, f"/console/integrations/{integration_id}/remove")


def test_connect_shows_the_platforms_sign_in_link(desk: tuple[FlaskClient, str], db: Database) -> None:
    client_secret = "gcs-" + secrets.token_hex(10)
    with domain(db) as ctx:
        row = integrations.add(ctx, Vault((KEY,)), "google-calendar", "Calendars", settings={
            "auth_url": "https://accounts.example.test/o/oauth2/auth"},
            secrets={"client_id": "client-123", "client_secret": client_secret})
        integration_id = row.id
    status, page = post(desk, f"/console/integrations/{integration_id}/connect")
    assert status == 200 and client_secret not in page
    url = re.search(r'id="authorize" href="([^"]+)"', page).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://accounts.example.test/o/oauth2/auth"
    assert query["client_id"] == ["client-123"] and query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == ["http://fieldcal.test/integrations/oauth/callback"]
    with db.read() as session:
        stored = Vault((KEY,)).open(integrations.get(session, integration_id).secrets)
        assert stored["oauth_state"] == query["state"][0] and stored["pkce_verifier"]
    status, page = post(desk, f"/console/integrations/{integration_id + 10_000}/connect")
    assert status == 404
    slack_id = _slack(db)
    status, page = post(desk, f"/console/integrations/{slack_id}/connect")
    assert status == 400 and "does not connect with OAuth" in said(page)
    for made in (integration_id, slack_id):
        post(desk, f"/console/integrations/{made}/remove")


def _slack(db: Database) -> int:
    with domain(db) as ctx:
        return integrations.add(ctx, Vault((KEY,)), "slack", "Plain", settings={"channel": "C9"},
                                secrets={"bot_token": "xoxb-plain"}).id


def test_unknown_platforms_and_settings_are_refused_with_what_is_known(desk: tuple[FlaskClient, str]) -> None:
    client, _ = desk
    response = client.get("/console/integrations/new?platform=fax")
    assert response.status_code == 400
    assert "no platform called 'fax'; known:" in said(response.get_data(as_text=True))
    status, page = post(desk, "/console/integrations", platform="slack", name="X",
                        **{"set.colour": "red", "secret.bot_token": "xoxb-unknown-setting"})
    assert status == 400 and "slack has no setting colour" in said(page)
    assert "xoxb-unknown-setting" not in page


def test_webhooks_show_their_secret_once_and_their_deliveries(desk: tuple[FlaskClient, str],
                                                              db: Database) -> None:
    status, page = post(desk, "/console/webhooks", url="http://127.0.0.1:9/hook")
    assert status == 400 and "non-public address 127.0.0.1" in said(page)
    status, page = post(desk, "/console/webhooks", url="http://127.0.0.1:9/hook", events="job.*",
                        allow_private="yes")
    assert status == 201
    secret = re.search(r'id="secret" class="secret" readonly value="(whsec_[^"]+)"', page).group(1)  # type: ignore[union-attr]
    with db.read() as session:
        hook = session.scalars(select(Webhook).where(Webhook.url == "http://127.0.0.1:9/hook",
                                                     Webhook.active.is_(True))).one()
        assert hook.events == ["job.*"] and secret not in hook.secrets
        hook_id = hook.id
        resource = {"appointment": {"id": 1}}
    with db.write() as session:
        webhooks.queue(session, must_get(session, Webhook, hook_id), "job.status", resource,
                       f"console-{hook_id}")
    log = desk[0].get(f"/console/webhooks/{hook_id}").get_data(as_text=True)
    assert "job.status" in log and "pending" in log
    assert secret not in every_page(desk)
    status, page = post(desk, f"/console/webhooks/{hook_id}/remove")
    assert status == 200 and f"Webhook #{hook_id}" in said(page)
    with db.read() as session:
        assert session.get(Webhook, hook_id).active is False  # type: ignore[union-attr]
