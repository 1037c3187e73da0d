"""The API's endpoints are mounted when first needed, after the app served other requests,
and answer as if they had been there from the start (the committed OpenAPI document
included: tests/test_api.py)."""

from __future__ import annotations

from pathlib import Path

from apikit import make_app
from flask import url_for

from server import api

PLAIN_URL = "sqlite:///{}"


def _api_rules(app: object) -> list[str]:
    return [r.rule for r in app.url_map.iter_rules() if r.rule.startswith(api.PREFIX)]  # type: ignore[attr-defined]


def test_first_api_request_mounts_the_endpoints_after_other_requests(tmp_path: Path) -> None:
    app = make_app(PLAIN_URL.format(tmp_path / "a.sqlite3"), tmp_path / "a")
    client = app.test_client()
    assert client.get("/healthz").status_code == 200  # the app has served a request
    assert not _api_rules(app)
    answer = client.get(f"{api.PREFIX}/openapi.json")
    assert answer.status_code == 200 and answer.get_json()["openapi"].startswith("3.1")
    assert f"{api.PREFIX}/openapi.json" in _api_rules(app)
    missing = client.get(f"{api.PREFIX}/no-such-thing")
    assert missing.status_code == 404 and missing.content_type == "application/problem+json"
    unknown = client.get("/no-such-page")  # other faces keep their own 404
    assert unknown.status_code == 404 and unknown.content_type != "application/problem+json"


def test_unrouted_api_url_is_a_problem_as_the_first_request(tmp_path: Path) -> None:
    app = make_app(PLAIN_URL.format(tmp_path / "b.sqlite3"), tmp_path / "b")
    missing = app.test_client().get(f"{api.PREFIX}/no-such-thing")
    assert missing.status_code == 404 and missing.content_type == "application/problem+json"


def test_url_for_an_api_endpoint_mounts_it(tmp_path: Path) -> None:
    app = make_app(PLAIN_URL.format(tmp_path / "c.sqlite3"), tmp_path / "c")
    assert app.test_client().get("/healthz").status_code == 200
    with app.test_request_context("/console/"):
        assert url_for("api.change_stream").startswith(f"{api.PREFIX}/")
    assert _api_rules(app)
