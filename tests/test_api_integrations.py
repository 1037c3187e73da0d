"""Integrations and webhooks over the API: secrets go in and never come out, health,
pause/resume/retry/remove, webhook secrets shown once, deliveries and redelivery."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from apikit import Keys, make_app, make_keys
from flask import Flask
from flask.testing import FlaskClient
from seeding import Seed, domain
from sqlalchemy import select, update

from server import audit, webhooks
from server.db import Database
from server.models import IdempotentRequest, Integration, OutboxMessage, Webhook

TOKEN = "xoxb-very-secret-bot-token-4711"


@pytest.fixture(scope="module")
def app(database_url: str, seed: Seed, tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return make_app(database_url, tmp_path_factory.mktemp("api-integrations"))


@pytest.fixture(scope="module")
def keys(db: Database) -> Keys:
    return make_keys(db)


@pytest.fixture()
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as client:
        yield client


def call(client: FlaskClient, keys: Keys, method: str, path: str, who: str = "dispatcher",
         etag: str | None = None, **kwargs: Any) -> tuple[int, Any, str | None, str]:
    headers = keys.headers(who, **({"If-Match": etag} if etag else {}))
    response = client.open(path, method=method, headers=headers, **kwargs)
    return (response.status_code, response.get_json(silent=True), response.headers.get("ETag"),
            response.get_data(as_text=True))


def test_integration_lifecycle_never_shows_secrets(client: FlaskClient, keys: Keys,
                                                   db: Database) -> None:
    spec = {"platform": "slack", "name": "Dispatch channel", "scope": "all",
            "settings": {"channel": "C123", "base_url": "http://127.0.0.1:9/api"},
            "secrets": {"bot_token": TOKEN}}
    status, made, etag, text = call(client, keys, "POST", "/api/v1/integrations", json=spec)
    assert status == 201, made
    assert TOKEN not in text and made["secrets"] == ["bot_token"]
    assert (made["status"], made["pending"], made["dead_letters"], made["needs_reconnect"],
            made["last_success_at"]) == ("active", 0, 0, False, None)
    path = f"/api/v1/integrations/{made['id']}"
    for who in ("readonly", "integration"):
        assert call(client, keys, "GET", path, who=who)[0] == 403
    status, _, got_etag, text = call(client, keys, "GET", path)
    assert status == 200 and got_etag == etag and TOKEN not in text
    listed = call(client, keys, "GET", "/api/v1/integrations")
    assert made["id"] in [i["id"] for i in listed[1]["items"]] and TOKEN not in listed[3]
    with db.read() as session:
        stored = session.get(Integration, made["id"])
        assert stored is not None and TOKEN not in stored.secrets
    assert call(client, keys, "POST", "/api/v1/integrations",
                json={**spec, "platform": "carrier-pigeon"})[0] == 422
    assert call(client, keys, "POST", "/api/v1/integrations",
                json={**spec, "settings": {}})[0] == 422

    assert call(client, keys, "POST", f"{path}/pause")[0] == 428
    status, paused, etag, _ = call(client, keys, "POST", f"{path}/pause", etag=etag)
    assert status == 200 and paused["status"] == "paused"
    status, resumed, etag, _ = call(client, keys, "POST", f"{path}/resume", etag=etag)
    assert status == 200 and resumed["status"] == "active"

    with db.write() as session:  # one push the worker gave up on
        session.add(OutboxMessage(kind="platform.push", payload={"integration_id": made["id"]},
                                  status="dead", attempts=5,
                                  idempotency_key=f"push:{made['id']}:1:0:create"))
    status, health, etag, _ = call(client, keys, "GET", path)
    assert health["dead_letters"] == 1
    status, retried, etag, _ = call(client, keys, "POST", f"{path}/retry", etag=etag)
    assert status == 200, retried
    assert retried["requeued"] == 1 and retried["integration"]["dead_letters"] == 0
    assert retried["integration"]["pending"] == 1

    assert call(client, keys, "DELETE", path, etag='"old"')[0] == 412
    assert call(client, keys, "DELETE", path, etag=etag)[0] == 200
    assert call(client, keys, "GET", path)[0] == 404
    with db.read() as session:
        trail = audit.trail(session, "integration", made["id"])
        actions = [(e.action, e.channel) for e in trail]
        assert TOKEN not in json.dumps([[e.before, e.after] for e in trail], default=str)
    assert actions == [("integration.add", "api"), ("integration.paused", "api"),
                       ("integration.active", "api"), ("integration.retry", "api"),
                       ("integration.remove", "api")]


def test_webhooks_secret_once_rotate_deliveries_redeliver(client: FlaskClient, keys: Keys,
                                                         db: Database) -> None:
    refused = call(client, keys, "POST", "/api/v1/webhooks",
                   json={"url": "http://127.0.0.1:9/hook"})
    assert refused[0] == 422 and "allow" in refused[1]["detail"]
    status, made, etag, _ = call(client, keys, "POST", "/api/v1/webhooks", json={
        "url": "http://127.0.0.1:9/hook", "events": ["appointment.*"], "allow_private": True})
    assert status == 201, made
    secret, hook = made["secret"], made["webhook"]
    assert secret.startswith("whsec_") and hook["events"] == ["appointment.*"]
    path = f"/api/v1/webhooks/{hook['id']}"
    status, _, got_etag, text = call(client, keys, "GET", path)
    assert status == 200 and got_etag == etag and secret not in text
    assert secret not in call(client, keys, "GET", "/api/v1/webhooks")[3]
    assert call(client, keys, "GET", path, who="integration")[0] == 403

    status, rotated, etag, _ = call(client, keys, "POST", f"{path}/rotate", etag=etag,
                                    json={"overlap_hours": 2})
    assert status == 200, rotated
    assert rotated["secret"] != secret and rotated["webhook"]["previous_secret_until"]

    with db.write() as session:
        row = session.get(Webhook, hook["id"])
        assert row is not None
        delivery = webhooks.queue(session, row, "appointment.book", {"id": 1}, "api-test:1")
        assert delivery is not None
        delivery.status, delivery.attempts, delivery.last_error = "dead", 3, "HTTP 500"
        delivery_id = delivery.id
    status, page, _, _ = call(client, keys, "GET", f"{path}/deliveries")
    assert status == 200 and [d["id"] for d in page["items"]] == [delivery_id]
    assert page["items"][0]["status"] == "dead" and page["items"][0]["type"] == "appointment.book"
    one = f"{path}/deliveries/{delivery_id}"
    status, _, delivery_etag, _ = call(client, keys, "GET", one)
    assert status == 200
    assert call(client, keys, "POST", f"{one}/redeliver")[0] == 428
    status, again, _, _ = call(client, keys, "POST", f"{one}/redeliver", etag=delivery_etag)
    assert status == 200 and again["status"] == "pending"
    with db.read() as session:
        queued = session.scalars(select(OutboxMessage).where(
            OutboxMessage.kind == webhooks.KIND, OutboxMessage.status == "pending")).all()
        assert sum(1 for m in queued if m.payload == {"delivery_id": delivery_id}) == 2
    assert call(client, keys, "GET", f"/api/v1/webhooks/{hook['id']}/deliveries/999999")[0] == 404

    # a retried creation replays the answer, but the secret was never stored in clear
    once = {"url": "http://127.0.0.1:9/once", "allow_private": True}
    first = client.post("/api/v1/webhooks", json=once, headers=keys.headers(
        "dispatcher", **{"Idempotency-Key": "hook-once"}))
    replay = client.post("/api/v1/webhooks", json=once, headers=keys.headers(
        "dispatcher", **{"Idempotency-Key": "hook-once"}))
    assert first.status_code == replay.status_code == 201
    assert first.get_json()["secret"].startswith("whsec_")
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.get_json()["secret"] is None
    assert replay.get_json()["webhook"] == first.get_json()["webhook"]
    with db.read() as session:
        stored = session.scalars(select(IdempotentRequest.body)).all()
    assert not any(first.get_json()["secret"].encode() in bytes(b or b"") for b in stored)

    status, removed, _, _ = call(client, keys, "DELETE", path, etag=etag)
    assert status == 200 and removed["active"] is False
    with domain(db) as ctx:  # leave no active webhook behind for other tests
        ctx.session.execute(update(Webhook).values(active=False))
