"""Every console route x (signed out, technician, dispatcher, read-only staff, revoked session):
one table (and one for the settings screens)."""

from __future__ import annotations

import re
import secrets

import pytest
from consolekit import make_app, set_password, sign_in, token
from flask import Flask
from flask.testing import FlaskClient
from seeding import Seed, domain

from server import directory, staff
from server.db import Database
from server.models import Role

WHO = ("signed_out", "technician", "dispatcher", "readonly", "revoked")
SIGN_IN = "303 /console"  # sent to the sign-in page
# (method, path) -> {who: expected status (and where a redirect goes)}
ROUTES: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/console"): {"signed_out": "200", "technician": "200",
                          "dispatcher": "303 /console/board",
                          "readonly": "303 /console/settings", "revoked": "200"},
    ("POST", "/console/sign-out"): dict.fromkeys(WHO, SIGN_IN),
    ("POST", "/console/sign-out-everywhere"): {"signed_out": SIGN_IN, "technician": SIGN_IN,
                                               "dispatcher": SIGN_IN, "revoked": SIGN_IN},
    ("GET", "/console/board"): {"signed_out": SIGN_IN, "technician": "403",
                                "dispatcher": "200", "revoked": SIGN_IN},
    ("GET", "/console/reports"): {"signed_out": SIGN_IN, "technician": "403",
                                  "dispatcher": "200", "revoked": SIGN_IN},
    # an empty form: a dispatcher gets past the door and is stopped by validation
    ("POST", "/console/visits/<int:appointment_id>/move"): {
        "signed_out": SIGN_IN, "technician": "403", "dispatcher": "400", "revoked": SIGN_IN},
    ("GET", "/console/technicians/<login>/day-link"): {
        "signed_out": SIGN_IN, "technician": "403", "dispatcher": "200", "revoked": SIGN_IN},
    ("POST", "/console/technicians/<login>/day-link"): {
        "signed_out": SIGN_IN, "technician": "403", "dispatcher": "303 /console/technicians/alice/day-link",
        "revoked": SIGN_IN},
    # a link that is not alice's day link: a dispatcher gets past the door and finds nothing
    ("POST", "/console/technicians/<login>/day-link/<int:link_id>/revoke"): {
        "signed_out": SIGN_IN, "technician": "403", "dispatcher": "404", "revoked": SIGN_IN},
}


def _desk(dispatcher: str) -> dict[str, str]:
    return {"signed_out": SIGN_IN, "technician": "403", "dispatcher": dispatcher, "revoked": SIGN_IN}


# the settings screens: integrations, webhooks, share links, API keys. An empty form gets past
# the door and is refused by validation (400); a missing id is a 404.
ROUTES |= {
    ("GET", "/console/integrations"): _desk("200"),
    ("GET", "/console/integrations/new"): _desk("400"),  # no platform chosen
    ("POST", "/console/integrations"): _desk("400"),
    **{("POST", f"/console/integrations/<int:integration_id>/{action}"): _desk("404")
       for action in ("pause", "resume", "retry", "remove", "test", "connect")},
    ("POST", "/console/webhooks"): _desk("400"),
    ("GET", "/console/webhooks/<int:webhook_id>"): _desk("404"),
    ("POST", "/console/webhooks/<int:webhook_id>/remove"): _desk("404"),
    ("GET", "/console/links"): _desk("200"),
    ("POST", "/console/links"): _desk("400"),
    ("POST", "/console/links/<int:link_id>/revoke"): _desk("404"),
    ("GET", "/console/api-keys"): _desk("200"),
    ("POST", "/console/api-keys"): _desk("400"),
    ("POST", "/console/api-keys/<int:key_id>/revoke"): _desk("404"),
    # phone intake: the search, the details (no customer named: back to the search), the times
    # and the booking (an empty form: stopped by validation), a booked visit
    ("GET", "/console/new"): {"signed_out": SIGN_IN, "technician": "403", "dispatcher": "200",
                              "revoked": SIGN_IN},
    ("GET", "/console/new/details"): {"signed_out": SIGN_IN, "technician": "403",
                                      "dispatcher": "303 /console/new", "revoked": SIGN_IN},
    ("POST", "/console/new/slots"): {"signed_out": SIGN_IN, "technician": "403",
                                     "dispatcher": "400", "revoked": SIGN_IN},
    ("POST", "/console/new/book"): {"signed_out": SIGN_IN, "technician": "403",
                                    "dispatcher": "400", "revoked": SIGN_IN},
    ("GET", "/console/new/booked/<int:appointment_id>"): {
        "signed_out": SIGN_IN, "technician": "403", "dispatcher": "200", "revoked": SIGN_IN},
}
UNTABLED = {("POST", "/console")}  # the sign-in itself: tests/test_console_auth.py
ENDS_SESSION = {("POST", "/console/sign-out"), ("POST", "/console/sign-out-everywhere")}


@pytest.fixture(scope="module")
def app(database_url: str, seed: Seed, tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return make_app(database_url, tmp_path_factory.mktemp("console-authz"))


def _person(db: Database, role: Role) -> str:
    login = f"{role.value[:4]}-{secrets.token_hex(3)}"
    with domain(db) as ctx:
        directory.add_user(ctx, login, name="Test Person", email=f"{login}@x.test", role=role,
                           timezone="Europe/Berlin")
    set_password(db, login)
    return login


def _client(app: Flask, db: Database, who: str) -> tuple[FlaskClient, str]:
    client = app.test_client()
    if who == "signed_out":
        return client, ""
    role = {"technician": Role.TECHNICIAN, "readonly": Role.READONLY}.get(who, Role.DISPATCHER)
    login = _person(db, role)
    assert sign_in(client, login) == 303
    csrf = token(client) if who == "dispatcher" else ""
    if who in ("technician", "readonly"):
        page = client.get("/console/settings").get_data(as_text=True)
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    if who == "revoked":
        csrf = token(client)
        with domain(db) as ctx:
            staff.sign_out_everywhere(ctx, directory.find_user(ctx.session, login).id)
    return client, csrf


def _settings(dispatcher: str, readonly: str = "403") -> dict[str, str]:
    """A settings screen: read-only staff may look but never change (403)."""
    return {"signed_out": SIGN_IN, "technician": "403", "dispatcher": dispatcher,
            "readonly": readonly, "revoked": SIGN_IN}


# the settings screens of technicians, service types and holidays. An empty form gets past the
# door and is refused: no version of the page it was made on (409), validation (400), a missing
# row (404).
SETTINGS: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/console/settings"): _settings("200", "200"),
    ("GET", "/console/settings/technicians"): _settings("200", "200"),
    ("GET", "/console/settings/technicians/<login>"): _settings("200", "200"),
    ("POST", "/console/settings/technicians/<login>/hours"): _settings("409"),
    ("POST", "/console/settings/technicians/<login>/skills"): _settings("409"),
    ("POST", "/console/settings/technicians/<login>/time-off"): _settings("400"),
    ("POST", "/console/settings/technicians/<login>/time-off/<int:time_off_id>/remove"):
        _settings("404"),
    ("POST", "/console/settings/technicians/<login>/areas"): _settings("400"),
    ("POST", "/console/settings/technicians/<login>/areas/<int:area_id>/remove"):
        _settings("404"),
    ("GET", "/console/settings/services"): _settings("200", "200"),
    ("POST", "/console/settings/services"): _settings("400"),
    ("GET", "/console/settings/services/<slug>"): _settings("404", "404"),
    ("POST", "/console/settings/services/<slug>"): _settings("404"),
    ("GET", "/console/settings/holidays"): _settings("200", "200"),
    ("POST", "/console/settings/holidays"): _settings("400"),
    ("POST", "/console/settings/holidays/<int:time_off_id>/remove"): _settings("404"),
}


@pytest.mark.parametrize("who", WHO)
def test_who_may_open_the_settings(app: Flask, db: Database, who: str) -> None:
    client, csrf = _client(app, db, who)  # no settings route ends the session
    outcomes = {}
    for (method, rule), expected in SETTINGS.items():
        path = re.sub(r"<int:\w+>", "999999", rule.replace("<login>", "alice")
                      .replace("<slug>", "no-such-service"))
        answer = client.open(path, method=method, data={"csrf": csrf} if csrf else {})
        where = answer.location.split("?")[0].removeprefix("http://fieldcal.test") \
            if answer.status_code in (302, 303) else ""
        outcomes[f"{method} {path}"] = (f"{answer.status_code} {where}".strip(), expected[who])
    assert {k: v for k, v in outcomes.items() if v[0] != v[1]} == {}, f"as {who}: (got, expected)"


def test_the_table_covers_every_console_route(app: Flask) -> None:
    routed = {(method, rule.rule) for rule in app.url_map.iter_rules()
              if rule.rule.startswith("/console") and rule.endpoint != "console.static"
              for method in rule.methods or () if method not in ("HEAD", "OPTIONS")}
    assert routed == set(ROUTES) | set(SETTINGS) | UNTABLED


@pytest.mark.parametrize("who", WHO)
def test_who_may_open_what(app: Flask, db: Database, who: str) -> None:
    failures = []
    signed: tuple[FlaskClient, str] | None = None  # reused until a route ends the session
    for (method, path), expected in ROUTES.items():
        client, csrf = signed = signed or _client(app, db, who)
        if (method, path) in ENDS_SESSION:
            signed = None
        path = path.replace("<login>", "alice").replace("<int:link_id>", str(2**31 - 1))
        path = re.sub(r"<int:(\w+)>", lambda m: "1" if m[1] == "appointment_id" else "999999", path)
        response = client.open(path, method=method, data={"csrf": csrf} if csrf else {})
        got = str(response.status_code)
        if response.status_code in (302, 303):
            got += " " + response.location.split("?")[0].removeprefix("http://fieldcal.test")
        if got != expected.get(who, expected["technician"]):  # read-only staff: as technicians
            failures.append(f"{method} {path} as {who}: {got}, expected {expected[who]}")
    assert not failures, "\n".join(failures)




def test_console_writes_without_the_csrf_token_are_refused(app: Flask, db: Database) -> None:
    client, _ = _client(app, db, "dispatcher")
    assert client.post("/console/sign-out-everywhere", data={}).status_code == 403
    assert client.post("/console/sign-out-everywhere",
                       data={"csrf": "forged"}).status_code == 403
    assert client.get("/console/board").status_code == 200  # still signed in
