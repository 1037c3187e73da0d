"""What Slack sends us: its request signature (the contract's test vectors), the route that
receives it, and the URL-verification handshake. Nothing unsigned or stale gets through."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time

import pytest
from integrationkit import run
from platformkit import contract

from plugins.platforms.slack import Slack
from server.app import create_app
from server.config import load_settings
from server.platforms import Config, Inbound, InvalidSignature

VECTOR = contract("slack")["webhook_signature"]["test_vectors"][0]


def connector(secret: str) -> Slack:
    return Slack(Config(1, "slack", {"channel": "C1"}, {"signing_secret": secret}))


def inbound(body: bytes, headers: dict[str, str]) -> Inbound:
    return Inbound("POST", "/hooks/slack/1", headers, body)


def at(stamp: str) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(stamp), dt.UTC)


def test_vector_is_accepted_at_its_own_time() -> None:
    connector(VECTOR["secret"]).verify(
        inbound(VECTOR["body"].encode(), VECTOR["headers"]), at(VECTOR["timestamp"])
    )


@pytest.mark.parametrize(
    "case", ["flipped byte", "wrong secret", "no signature", "no timestamp", "stale", "from the future"]
)
def test_vector_variants_are_refused(case: str) -> None:
    body = VECTOR["body"].encode()
    headers = dict(VECTOR["headers"])
    secret = VECTOR["secret"]
    now = at(VECTOR["timestamp"])
    if case == "flipped byte":
        body = body[:10] + bytes([body[10] ^ 1]) + body[11:]
    elif case == "wrong secret":
        secret = "not-the-secret"
    elif case == "no signature":
        headers.pop("X-Slack-Signature")
    elif case == "no timestamp":
        headers.pop("X-Slack-Request-Timestamp")
    elif case == "stale":
        now += dt.timedelta(minutes=5, seconds=1)
    else:
        now -= dt.timedelta(minutes=5, seconds=1)
    with pytest.raises(InvalidSignature):
        connector(secret).verify(inbound(body, headers), now)


def signed(secret: str, body: bytes, stamp: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if stamp is None else stamp
    digest = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": str(stamp),
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/json",
    }


def test_the_route_verifies_then_answers_the_handshake(platform_env: dict[str, str]) -> None:
    created = json.loads(
        run(
            platform_env,
            "integration",
            "add",
            "slack",
            "--name",
            "inbound",
            "--set",
            "channel=C1",
            "--set",
            "base_url=http://127.0.0.1:9",
            "--secret",
            "signing_secret=hook-secret",
            "--json",
        )
    )
    path = f"/hooks/slack/{created['id']}"
    client = create_app(settings=load_settings(platform_env)).test_client()
    handshake = contract("slack")["inbound_samples"]["url_verification"]["request_body"]
    body = json.dumps(handshake).encode()
    answer = client.post(path, data=body, headers=signed("hook-secret", body))
    assert answer.status_code == 200 and answer.get_json() == {"challenge": handshake["challenge"]}
    event = json.dumps(contract("slack")["inbound_samples"]["event_callback"]["request_body"]).encode()
    assert client.post(path, data=event, headers=signed("hook-secret", event)).status_code == 200
    refused = [
        client.post(path, data=body, headers=signed("other-secret", body)),
        client.post(path, data=body + b" ", headers=signed("hook-secret", body)),
        client.post(path, data=body, headers=signed("hook-secret", body, int(time.time()) - 600)),
        client.post(path, data=body),
    ]
    assert [r.status_code for r in refused] == [401, 401, 401, 401]
    assert all(b"challenge" not in r.data for r in refused)
    assert (
        client.post(
            f"/hooks/slack/{created['id'] + 999}", data=body, headers=signed("hook-secret", body)
        ).status_code
        == 404
    )
    assert client.post(f"/hooks/zoom/{created['id']}", data=body).status_code == 404
    run(platform_env, "integration", "remove", str(created["id"]))
