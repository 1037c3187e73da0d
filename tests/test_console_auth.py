"""Console sign-in: passwords, cookies, CSRF, throttling, sign out (everywhere), audit, rights."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from consolekit import PASSWORD, make_app, set_password, sign_in, token
from flask import Flask
from flask.testing import FlaskClient
from seeding import Seed, audit_entries, domain

from server import directory, login_throttle
from server.cli import cli
from server.db import Database
from server.models import Role, User


@pytest.fixture(scope="module")
def app(database_url: str, seed: Seed, db: Database,
        tmp_path_factory: pytest.TempPathFactory) -> Flask:
    set_password(db, seed.dispatcher.login)
    set_password(db, "alice")
    return make_app(database_url, tmp_path_factory.mktemp("console"))


@pytest.fixture()
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as client:
        yield client


def fresh_dispatcher(db: Database, tag: str) -> str:
    login = f"{tag}-{secrets.token_hex(3)}"
    with domain(db) as ctx:
        directory.add_user(ctx, login, name=f"{tag.capitalize()} Desk", email=f"{login}@x.test",
                           role=Role.DISPATCHER, timezone="Europe/Berlin")
    set_password(db, login)
    return login


def test_sign_in_sets_a_protected_cookie_and_is_audited(client: FlaskClient, seed: Seed,
                                                        db: Database) -> None:
    login = fresh_dispatcher(db, "cookie")
    token_page = client.get("/console")
    assert token_page.status_code == 200
    html = token_page.get_data(as_text=True)
    assert "Sign in" in html
    response = client.post("/console", data={
        "login": login, "password": PASSWORD,
        "csrf": re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)})  # type: ignore[union-attr]
    assert response.status_code == 303 and response.location.endswith("/console/board")
    cookie = next(h for h in response.headers.getlist("Set-Cookie")
                  if h.startswith("fieldcal_console="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert client.get("/console/board").status_code == 200
    with db.read() as session:
        user = directory.find_user(session, login)
    entries = audit_entries(db, "user", user.id, "staff.sign_in")
    assert len(entries) == 1 and entries[0].channel == "console" and entries[0].actor == login


def test_https_base_url_makes_the_cookie_secure(database_url: str, seed: Seed,
                                                tmp_path: Path) -> None:
    app = make_app(database_url, tmp_path, base_url="https://dispatch.example.test")
    with app.test_client() as client:
        client.get("/console")
        page = client.get("/console").get_data(as_text=True)
        response = client.post("/console", data={
            "login": seed.dispatcher.login, "password": PASSWORD,
            "csrf": re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)})  # type: ignore[union-attr]
    assert response.status_code == 303
    cookie = next(h for h in response.headers.getlist("Set-Cookie")
                  if h.startswith("fieldcal_console="))
    assert "Secure" in cookie and "HttpOnly" in cookie


def test_wrong_password_and_missing_csrf_are_refused(client: FlaskClient, seed: Seed) -> None:
    assert sign_in(client, seed.dispatcher.login, "not the password") == 401
    assert client.get("/console/board").status_code == 303
    client.get("/console")
    missing = client.post("/console", data={"login": seed.dispatcher.login,
                                            "password": PASSWORD})
    assert missing.status_code == 403
    assert client.post("/console", data={"login": "", "password": "", "csrf": "x"}
                       ).status_code == 403


def test_guessing_one_login_is_throttled_but_the_owner_still_gets_in(
        app: Flask, db: Database) -> None:
    login = fresh_dispatcher(db, "guess")
    with app.test_client() as guesser:
        codes = [sign_in(guesser, login, f"guess-{i}") for i in
                 range(login_throttle.LOGIN_FAILURES + 1)]
    assert codes[:login_throttle.LOGIN_FAILURES] == [401] * login_throttle.LOGIN_FAILURES
    assert codes[-1] == 429
    with app.test_client() as owner:
        assert sign_in(owner, login) == 303


def test_sign_out_and_sign_out_everywhere(app: Flask, db: Database) -> None:
    login = fresh_dispatcher(db, "everywhere")
    laptop, tablet = app.test_client(), app.test_client()
    assert sign_in(laptop, login) == 303 and sign_in(tablet, login) == 303
    assert laptop.post("/console/sign-out-everywhere", data={}).status_code == 403
    out = laptop.post("/console/sign-out-everywhere", data={"csrf": token(laptop)})
    assert out.status_code == 303
    assert tablet.get("/console/board").status_code == 303  # its generation is gone
    assert laptop.get("/console/board").status_code == 303
    assert sign_in(tablet, login) == 303
    tablet.post("/console/sign-out", data={"csrf": token(tablet)})
    assert tablet.get("/console/board").status_code == 303
    with db.read() as session:
        user = directory.find_user(session, login)
    assert len(audit_entries(db, "user", user.id, "staff.sign_out_everywhere")) == 1


def test_a_deactivated_dispatcher_is_signed_out(app: Flask, db: Database) -> None:
    login = fresh_dispatcher(db, "leaver")
    with app.test_client() as client:
        assert sign_in(client, login) == 303
        with domain(db) as ctx:
            directory.update_user(ctx, directory.find_user(ctx.session, login), active=False)
        assert client.get("/console/board").status_code == 303
        assert sign_in(client, login) == 401


def test_a_session_calls_the_api_as_a_dispatcher_with_csrf_on_writes(
        client: FlaskClient, seed: Seed) -> None:
    assert sign_in(client, seed.dispatcher.login) == 303
    assert client.get("/api/v1/technicians").status_code == 200
    slug = f"t-{secrets.token_hex(3)}"
    assert client.post("/api/v1/teams", json={"slug": slug, "name": "T"}).status_code == 401
    created = client.post("/api/v1/teams", json={"slug": slug, "name": "T"},
                          headers={"X-CSRF-Token": token(client)})
    assert created.status_code == 201, created.get_data(as_text=True)


def test_a_technician_session_is_not_a_dispatcher(client: FlaskClient) -> None:
    assert sign_in(client, "alice") == 303
    assert client.get("/console/board").status_code == 403
    assert client.get("/api/v1/technicians").status_code == 401


def test_the_cli_sets_a_password(database_url: str, seed: Seed, db: Database,
                                 tmp_path: Path) -> None:
    login = fresh_dispatcher(db, "cli")
    env = {"FIELDCAL_INSTANCE": str(tmp_path), "FIELDCAL_DATABASE_URL": database_url,
           "FIELDCAL_SECRET_KEYS": secrets.token_urlsafe(32)}
    result = CliRunner().invoke(cli, ["dispatcher", "password", login, "--generate"], env=env,
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    password = result.output.split("shown only now): ")[1].strip()
    app = make_app(database_url, tmp_path / "app")
    with app.test_client() as client:
        assert sign_in(client, login, PASSWORD) == 401
        assert sign_in(client, login, password) == 303
    short = CliRunner().invoke(cli, ["dispatcher", "password", login], env=env,
                               input="short\nshort\n")
    assert short.exit_code != 0 and "10 to 200 characters" in short.output
    with db.read() as session:
        assert session.query(User).filter_by(login=login).one().active
