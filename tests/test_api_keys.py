"""`fieldcal apikey new|list|revoke` and what a key can do afterwards (in-process app)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from apikit import make_app
from test_cli import database_url, instance, run, run_json

from server import api as api_face
from server.db import get_database
from server.models import ApiKey

__all__ = ["instance"]  # the fixture, shared with the CLI tests


def test_apikey_lifecycle(instance: dict[str, Any], tmp_path: Path) -> None:
    run(instance, "init")
    created = run_json(instance, "apikey", "new", "crm", "--role", "integration",
                       "--expires", "90d")
    assert set(created) == {"id", "key"} and created["key"].startswith("fck_")
    url = database_url(instance)
    with get_database(url).read() as session:
        stored = session.get(ApiKey, created["id"])
        assert stored is not None and created["key"] not in stored.key_hash
        assert stored.expires_at is not None and stored.last_used_at is None
    app = make_app(url, tmp_path / "app")
    with app.test_client() as client:
        headers = {"Authorization": f"Bearer {created['key']}"}
        assert client.get("/api/v1/customers", headers=headers).status_code == 200
        refused = client.post("/api/v1/teams", headers=headers, json={"slug": "x", "name": "X"})
        assert refused.status_code == 403
        listed = run_json(instance, "apikey", "list")
        assert [(k["name"], k["role"]) for k in listed] == [("crm", "integration")]
        assert listed[0]["last_used_at"] is not None and "key" not in listed[0]
        run(instance, "apikey", "revoke", str(created["id"]))
        gone = client.get("/api/v1/customers", headers=headers)
        assert gone.status_code == 401 and "revoked" in gone.get_json()["detail"]
    assert "No API key #999" in run(instance, "apikey", "revoke", "999", code=1).stderr


@pytest.mark.parametrize("role", ["admin", ""])
def test_apikey_refuses_unknown_roles(instance: dict[str, Any], role: str) -> None:
    run(instance, "init")
    run(instance, "apikey", "new", "x", "--role", role, code=2)


def test_openapi_command_prints_the_committed_document(instance: dict[str, Any]) -> None:
    printed = run({**instance, "FIELDCAL_BUSINESS_PHONE": "+49 30 555 0100"},
                  "api", "openapi").stdout
    assert json.loads(printed) == json.loads(
        Path(api_face.__file__).with_name("openapi.json").read_text())
