"""The console's day-link page: issue a technician's day link, show it as a QR code, revoke it."""

from __future__ import annotations

import html
import re

import pytest
from consolekit import make_app, set_password, sign_in, token
from flask import Flask
from seeding import Seed

from server.console.daylinks import qr_data_uri
from server.db import Database

URL = re.compile(r'<input id="url-(\d+)" class="copy" type="text" readonly value="([^"]+)">')


@pytest.fixture(scope="module")
def app(database_url: str, seed: Seed, tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return make_app(database_url, tmp_path_factory.mktemp("console-day-link"))


def test_issue_show_as_qr_and_revoke(app: Flask, db: Database, seed: Seed) -> None:
    set_password(db, seed.dispatcher.login)
    client = app.test_client()
    assert sign_in(client, seed.dispatcher.login) == 303
    csrf = token(client)
    board = client.get("/console/board").get_data(as_text=True)
    assert "/console/technicians/alice/day-link" in board  # reachable from the technician's row

    empty = client.get("/console/technicians/carol/day-link")
    assert empty.status_code == 200 and "has no day link yet" in empty.get_data(as_text=True)
    issued = client.post("/console/technicians/carol/day-link", data={"csrf": csrf})
    assert issued.status_code == 303
    page = client.get(issued.location).get_data(as_text=True)
    found = URL.search(page)
    assert found, page[-2000:]
    link_id, url = found.group(1), html.unescape(found.group(2))
    assert url.startswith("http://fieldcal.test/d/")
    assert f'src="{html.escape(qr_data_uri(url))}"' in page  # the QR code encodes that address
    assert 'src="data:image/svg+xml' in page

    day_path = url.removeprefix("http://fieldcal.test")
    assert "Carol" in app.test_client().get(day_path).get_data(as_text=True)

    wrong_owner = client.post(f"/console/technicians/alice/day-link/{link_id}/revoke",
                              data={"csrf": csrf})
    assert wrong_owner.status_code == 404
    assert app.test_client().get(day_path).status_code == 200
    revoked = client.post(f"/console/technicians/carol/day-link/{link_id}/revoke", data={"csrf": csrf})
    assert revoked.status_code == 303
    assert app.test_client().get(day_path).status_code == 404
    assert "has no day link yet" in client.get("/console/technicians/carol/day-link").get_data(as_text=True)


def test_unknown_or_non_technician_logins_are_refused(app: Flask, db: Database, seed: Seed) -> None:
    set_password(db, seed.dispatcher.login)
    client = app.test_client()
    assert sign_in(client, seed.dispatcher.login) == 303
    assert client.get("/console/technicians/nobody/day-link").status_code == 404
    refused = client.post(f"/console/technicians/{seed.dispatcher.login}/day-link",
                          data={"csrf": token(client)})
    assert refused.status_code == 400 and "not a technician" in refused.get_data(as_text=True)
