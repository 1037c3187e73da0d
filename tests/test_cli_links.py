"""`fieldcal link new|list|revoke|rotate`, end to end through the feed and share routes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from feedkit import new_key, strict_parse
from live import AUDIT_KEY

from server.app import create_app
from server.cli import cli
from server.config import load_settings


@pytest.fixture(scope="module")
def env(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    environment = {
        "FIELDCAL_INSTANCE": str(tmp_path_factory.mktemp("instance")),
        "FIELDCAL_DATABASE_URL": database_url,
        "FIELDCAL_SECRET_KEYS": new_key(),
        "FIELDCAL_AUDIT_KEYS": AUDIT_KEY,
        "FIELDCAL_BASE_URL": "https://cal.example.test",
        "FIELDCAL_BUSINESS_PHONE": "+49 30 555 0100",
    }
    run(environment, "init")
    run(environment, "team", "add", "north", "--name", "North")
    run(environment, "technician", "add", "ann", "--name", "Ann Lee", "--email", "ann@example.test",
        "--tz", "Europe/Berlin", "--team", "north")
    run(environment, "customer", "add", "ACME", "--address", "1 Road")
    return environment


def run(env: dict[str, Any], *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == code, f"{args}: {result.stdout} {result.stderr}"
    return result.stdout + result.stderr


def client(env: dict[str, Any]) -> Any:
    settings = load_settings(env)
    return create_app(settings=settings).test_client()


def path_of(url: str) -> str:
    return url.removeprefix("https://cal.example.test")


@pytest.mark.parametrize("subject", ["technician:ann", "team:north", "customer:1"])
def test_feed_link_round_trip(env: dict[str, Any], subject: str) -> None:
    issued = json.loads(run(env, "link", "new", "feed", subject, "--json"))
    variant = subject.startswith("technician:")  # a technician's feed has a free/busy variant
    assert set(issued) == ({"id", "url", "freebusy_url"} if variant else {"id", "url"})
    if variant:
        assert issued["freebusy_url"] == issued["url"].removesuffix(".ics") + ".ifb"
        answer = client(env).get(path_of(issued["freebusy_url"]))
        assert answer.status_code == 200 and b"BEGIN:VFREEBUSY" in answer.data
        strict_parse(answer.data)
    response = client(env).get(path_of(issued["url"]), headers={"User-Agent": "CalendarAgent/1"})
    assert response.status_code == 200
    strict_parse(response.data)
    listed = json.loads(run(env, "link", "list", subject, "--json"))
    row = next(r for r in listed if r["id"] == issued["id"])
    assert row["url"] == issued["url"], "a link's URL is stable"
    assert row["last_user_agent"] == "CalendarAgent/1" and row["last_used_at"]


def test_share_link_prints_page_and_feed(env: dict[str, Any]) -> None:
    issued = json.loads(run(env, "link", "new", "share", "customer:1", "--expires", "30d", "--json"))
    assert "/s/" in issued["url"] and issued["feed_url"].endswith(".ics")
    app = client(env)
    assert app.get(path_of(issued["url"])).status_code == 200
    assert app.get(path_of(issued["feed_url"])).status_code == 200
    text = run(env, "link", "list", "customer:1")
    assert "share" in text and "expires" in text and "by Werkzeug" in text


def test_revoke_and_rotate(env: dict[str, Any]) -> None:
    first = json.loads(run(env, "link", "new", "feed", "team:north", "--json"))
    second = json.loads(run(env, "link", "new", "feed", "team:north", "--audience", "freebusy", "--json"))
    run(env, "link", "revoke", str(first["id"]))
    rotated = json.loads(run(env, "link", "rotate", str(second["id"]), "--json"))
    app = client(env)
    assert app.get(path_of(first["url"])).status_code == 404
    assert app.get(path_of(second["url"])).status_code == 404
    assert app.get(path_of(rotated["url"])).status_code == 200
    listed = json.loads(run(env, "link", "list", "team:north", "--json"))
    assert next(r for r in listed if r["id"] == first["id"])["url"] is None


@pytest.mark.parametrize("args, message", [
    (("link", "new", "feed", "nobody:1"), "must be technician:LOGIN"),
    (("link", "new", "feed", "technician:ghost"), "No technician"),
    (("link", "new", "feed", "customer:1", "--audience", "team"), "cannot have audience"),
    (("link", "new", "feed", "team:north", "--expires", "soon"), "not a duration"),
    (("link", "revoke", "999"), "No link #999"),
])
def test_bad_input_is_explained(env: dict[str, Any], args: tuple[str, ...], message: str) -> None:
    assert message in run(env, *args, code=1 if "soon" not in args else 2)


def test_links_need_secret_keys(env: dict[str, Any], tmp_path: Path) -> None:
    keyless = {**env, "FIELDCAL_SECRET_KEYS": "", "FIELDCAL_INSTANCE": str(tmp_path)}
    assert "FIELDCAL_SECRET_KEYS is not set" in run(keyless, "link", "new", "feed", "team:north", code=1)
