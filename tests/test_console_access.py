"""The console's share links and API keys: issue a link and see its last fetch (and by which
client), revoke it; create an API key that is shown once and works at /api/v1, revoke it."""

from __future__ import annotations

import html
import re

import pytest
from consolekit import make_app, set_password, sign_in, token
from flask import Flask
from flask.testing import FlaskClient
from seeding import Seed
from sqlalchemy import select

from server.db import Database
from server.models import ApiKey, AuditEntry, ShareLink

MARKER = re.compile(r'id="message">([^<]*)<')
BASE = "http://fieldcal.test"


@pytest.fixture(scope="module")
def app(database_url: str, seed: Seed, tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return make_app(database_url, tmp_path_factory.mktemp("console-access"), base_url=BASE)


@pytest.fixture(scope="module")
def desk(app: Flask, db: Database, seed: Seed) -> tuple[FlaskClient, str]:
    set_password(db, seed.dispatcher.login)
    client = app.test_client()
    assert sign_in(client, seed.dispatcher.login) == 303
    return client, token(client)


def post(desk: tuple[FlaskClient, str], path: str, **form: str) -> tuple[int, str]:
    client, csrf = desk
    response = client.post(path, data={"csrf": csrf, **form})
    return response.status_code, response.get_data(as_text=True)


def said(page: str) -> str:
    found = MARKER.search(page)
    return html.unescape(found.group(1)) if found else ""


def row_of(page: str, kind: str, row_id: int) -> str:
    found = re.search(rf'<tr id="{kind}-{row_id}">(.*?)</tr>', page, re.S)
    assert found, f"{kind} {row_id} is not listed"
    return html.unescape(found.group(1))


def test_a_share_link_issued_in_the_console_shows_its_last_fetch_and_revokes(
        desk: tuple[FlaskClient, str], app: Flask, db: Database) -> None:
    status, page = post(desk, "/console/links", purpose="share", subject="technician:nobody")
    assert status == 404 and said(page) and 'value="technician:nobody"' in page
    status, page = post(desk, "/console/links", purpose="share", subject="technician:alice",
                        label="Alice's phone", expires_days="30")
    assert status == 201
    issued = re.match(r"Link #(\d+) issued: (\S+)$", said(page))
    assert issued, said(page)
    link_id, url = int(issued.group(1)), issued.group(2)
    assert url.startswith(f"{BASE}/s/")
    with db.read() as session:
        link = session.get(ShareLink, link_id)
        assert link is not None and link.label == "Alice's phone" and link.expires_at is not None
        assert link.created_by == "dispatch" and link.last_used_at is None
    listed = row_of(desk[0].get("/console/links").get_data(as_text=True), "link", link_id)
    assert "never" in listed and url in listed and "Alice's phone" in listed
    visitor = app.test_client()
    opened = visitor.get(url.removeprefix(BASE), headers={"User-Agent": "PocketCalendar/2.1"})
    assert opened.status_code == 200
    listed = row_of(desk[0].get("/console/links").get_data(as_text=True), "link", link_id)
    assert "never" not in listed and "by PocketCalendar/2.1" in listed
    status, page = post(desk, f"/console/links/{link_id}/revoke")
    assert status == 200 and said(page).startswith(f"Link #{link_id} is revoked")
    assert visitor.get(url.removeprefix(BASE)).status_code == 404
    listed = row_of(page, "link", link_id)
    assert "revoked" in listed and url not in listed and "Revoke" not in listed
    with db.read() as session:
        assert session.scalars(select(AuditEntry.channel).where(
            AuditEntry.action == "link.revoke", AuditEntry.entity_id == str(link_id))).one() == "console"


def test_link_forms_refuse_what_they_cannot_issue(desk: tuple[FlaskClient, str]) -> None:
    status, page = post(desk, "/console/links", purpose="manage", subject="technician:alice")
    assert status == 400 and said(page) == "Choose a share page or a feed link."
    status, page = post(desk, "/console/links", purpose="feed", subject="team:north", audience="customer")
    assert status == 400 and "cannot have audience 'customer'" in said(page)
    status, page = post(desk, "/console/links", purpose="feed", subject="team:north", expires_days="-3")
    assert status == 400 and "number of days" in said(page)
    assert post(desk, "/console/links/999999/revoke")[0] == 404


def test_an_api_key_is_shown_once_works_and_revokes(desk: tuple[FlaskClient, str], app: Flask,
                                                    db: Database) -> None:
    status, page = post(desk, "/console/api-keys", name="", role="readonly")
    assert status == 400 and "needs a name" in said(page)
    status, page = post(desk, "/console/api-keys", name="Reporting", role="owner")
    assert status == 400 and "Unknown API role 'owner'" in said(page)
    status, page = post(desk, "/console/api-keys", name="Reporting", role="readonly")
    assert status == 201
    key = re.search(r'id="key" class="secret" readonly value="(fck_[^"]+)"', page).group(1)  # type: ignore[union-attr]
    with db.read() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.name == "Reporting")).one()
        assert row.role == "readonly" and key not in (row.key_hash, row.prefix) and key.startswith(row.prefix)
        key_id = row.id
    listing = desk[0].get("/console/api-keys").get_data(as_text=True)
    assert key not in listing and f"{row.prefix}…" in row_of(listing, "key", key_id)
    api = app.test_client()
    bearer = {"Authorization": f"Bearer {key}"}
    assert api.get("/api/v1/technicians", headers=bearer).status_code == 200
    assert "never" not in row_of(desk[0].get("/console/api-keys").get_data(as_text=True), "key", key_id)
    status, page = post(desk, f"/console/api-keys/{key_id}/revoke")
    assert status == 200
    assert said(page) == "API key 'Reporting' is revoked: requests with it are refused from now on."
    assert key not in page and "revoked" in row_of(page, "key", key_id)
    assert api.get("/api/v1/technicians", headers=bearer).status_code == 401
    assert post(desk, "/console/api-keys/999999/revoke")[0] == 404
