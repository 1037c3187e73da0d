"""Every /api/v1 endpoint x every kind of caller: who may, who may not (one table)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from apikit import BAD, ROLES, Keys, make_app, make_keys
from flask import Flask
from flask.testing import FlaskClient

from server import api as api_face
from server.db import Database

# endpoint -> the roles allowed (as the README's API section documents)
ALL = {"dispatcher", "readonly", "integration"}
BOOKERS = {"dispatcher", "integration"}
AUDITORS = {"dispatcher", "readonly"}
ADMIN = {"dispatcher"}
ENDPOINTS: list[tuple[str, str, set[str]]] = [
    ("GET", "/api/v1/technicians", ALL),
    ("POST", "/api/v1/technicians", ADMIN),
    ("GET", "/api/v1/technicians/alice", ALL),
    ("PUT", "/api/v1/technicians/alice/working-hours", ADMIN),
    ("GET", "/api/v1/teams", ALL),
    ("POST", "/api/v1/teams", ADMIN),
    ("GET", "/api/v1/customers", ALL),
    ("POST", "/api/v1/customers", BOOKERS),
    ("GET", "/api/v1/customers/1", ALL),
    ("GET", "/api/v1/jobs", ALL),
    ("POST", "/api/v1/jobs", BOOKERS),
    ("GET", "/api/v1/jobs/1", ALL),
    ("GET", "/api/v1/appointments", ALL),
    ("POST", "/api/v1/appointments", BOOKERS),
    ("GET", "/api/v1/appointments/1", ALL),
    ("PATCH", "/api/v1/appointments/1", BOOKERS),
    ("POST", "/api/v1/appointments/1/reassign", BOOKERS),
    ("POST", "/api/v1/appointments/1/cancel", BOOKERS),
    ("POST", "/api/v1/appointments/1/status", BOOKERS),
    ("GET", "/api/v1/appointments/1/audit", AUDITORS),
    ("GET", "/api/v1/service-types", ALL),
    ("GET", "/api/v1/service-types/repair", ALL),
    ("GET", "/api/v1/holidays", ALL),
    ("POST", "/api/v1/holidays", ADMIN),
    ("GET", "/api/v1/availability", ALL),
    ("GET", "/api/v1/links", ADMIN),
    ("POST", "/api/v1/links", ADMIN),
    ("POST", "/api/v1/links/1/revoke", ADMIN),
    ("POST", "/api/v1/links/1/rotate", ADMIN),
    ("GET", "/api/v1/audit", AUDITORS),
    ("GET", "/api/v1/changes", ALL),
    ("POST", "/api/v1/customers/1/sites", BOOKERS),
    ("GET", "/api/v1/sites/1", ALL),
    ("PATCH", "/api/v1/sites/1", BOOKERS),
    ("GET", "/api/v1/technicians/alice/areas", ALL),
    ("POST", "/api/v1/technicians/alice/areas", ADMIN),
    ("DELETE", "/api/v1/technicians/alice/areas/1", ADMIN),
    ("GET", "/api/v1/teams/field", ALL),
    ("GET", "/api/v1/teams/field/areas", ALL),
    ("POST", "/api/v1/teams/field/areas", ADMIN),
    ("DELETE", "/api/v1/teams/field/areas/1", ADMIN),
    ("PUT", "/api/v1/teams/field/travel", ADMIN),
    ("GET", "/api/v1/technicians/alice/day", ALL),
    ("POST", "/api/v1/service-types", ADMIN),
    ("PATCH", "/api/v1/service-types/repair", ADMIN),
    ("GET", "/api/v1/technicians/alice/time-off", ALL),
    ("POST", "/api/v1/technicians/alice/time-off", ADMIN),
    ("DELETE", "/api/v1/technicians/alice/time-off/1", ADMIN),
    ("DELETE", "/api/v1/holidays/1", ADMIN),
    ("GET", "/api/v1/integrations", ADMIN),
    ("POST", "/api/v1/integrations", ADMIN),
    ("GET", "/api/v1/integrations/1", ADMIN),
    ("POST", "/api/v1/integrations/1/pause", ADMIN),
    ("POST", "/api/v1/integrations/1/resume", ADMIN),
    ("POST", "/api/v1/integrations/1/retry", ADMIN),
    ("DELETE", "/api/v1/integrations/1", ADMIN),
    ("GET", "/api/v1/webhooks", ADMIN),
    ("POST", "/api/v1/webhooks", ADMIN),
    ("GET", "/api/v1/webhooks/1", ADMIN),
    ("DELETE", "/api/v1/webhooks/1", ADMIN),
    ("POST", "/api/v1/webhooks/1/rotate", ADMIN),
    ("GET", "/api/v1/webhooks/1/deliveries", ADMIN),
    ("GET", "/api/v1/webhooks/1/deliveries/1", ADMIN),
    ("POST", "/api/v1/webhooks/1/deliveries/1/redeliver", ADMIN),
    ("GET", "/api/v1/changes/stream", AUDITORS),
    ("GET", "/api/v1/reports/visits", ALL),
    ("GET", "/api/v1/reports/utilisation", ALL),
    ("GET", "/api/v1/reports/integration-health", ADMIN),
    ("GET", "/api/v1/exports/visits", ALL),
    ("GET", "/api/v1/exports/customers", ALL),
    ("GET", "/api/v1/exports/audit", AUDITORS),
    ("GET", "/api/v1/exports/files/1", ALL),
]


@pytest.fixture(scope="module")
def app(database_url: str, seed: object, tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return make_app(database_url, tmp_path_factory.mktemp("api-authz"))


@pytest.fixture(scope="module")
def keys(db: Database) -> Keys:
    return make_keys(db)


@pytest.fixture()
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as client:
        yield client


def test_the_table_covers_every_endpoint(app: Flask) -> None:
    api_face.mount(app)  # the endpoints are mounted when the API is first needed
    routed = {(method, re.sub(r"<[^>]+>", "*", rule.rule))
              for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1/")
              and rule.rule != "/api/v1/openapi.json"
              for method in rule.methods or () if method not in ("HEAD", "OPTIONS")}
    tabled = {(method, re.sub(r"/(reports|exports)/[^/]+$", r"/\1/*",
                              re.sub(r"/(alice|1|repair|field)(?=/|$)", "/*", path)))
              for method, path, _ in ENDPOINTS}
    assert routed == tabled


@pytest.mark.parametrize("who", [*ROLES, *BAD])
@pytest.mark.parametrize(("method", "path", "allowed"), ENDPOINTS,
                         ids=[f"{m} {p}" for m, p, _ in ENDPOINTS])
def test_authorization(client: FlaskClient, keys: Keys, who: str, method: str, path: str,
                       allowed: set[str]) -> None:
    # An empty body: allowed callers get past the door and are stopped by validation or a
    # precondition (nothing is written); the others must never get that far.
    kwargs: dict[str, Any] = {"json": {}} if method != "GET" else {}
    response = client.open(path, method=method, headers=keys.headers(who), **kwargs)
    problem = response.get_json(silent=True) or {}
    if who in BAD:
        assert response.status_code == 401, problem
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.content_type == "application/problem+json"
    elif who in allowed:
        assert response.status_code not in (401, 403, 500), problem
    else:
        assert response.status_code == 403, problem
        assert who in problem["detail"]
