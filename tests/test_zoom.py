"""Zoom against a fake on loopback: a meeting per remote visit (none for visits on site),
every request checked with openapi-core against ../shared/contracts/zoom.json, times in UTC
with the zone beside them, the join link kept for the customer, the signature test vectors and
the URL-validation handshake."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest
from integrationkit import add, drain, worker
from mailkit import Clock, add_customer, add_technician, book, domain
from platformkit import (
    FakePlatform,
    Recorded,
    contract,
    fake_platform,
    json_answer,
    openapi_document,
    validate_openapi,
)

from plugins.platforms.zoom import Zoom
from server import integrations, scheduling
from server.app import create_app
from server.config import load_settings
from server.db import Database
from server.models import ServiceType
from server.platforms import Config, Inbound, InvalidSignature

ZOOM = contract("zoom")
VECTOR = ZOOM["webhook_signature"]["test_vectors"][0]


def meetings(recorded: Recorded) -> tuple[int, dict[str, str], bytes]:
    if recorded.method == "POST":
        return json_answer(
            201, {"id": 85746065432, "join_url": "https://zoom.us/j/85746065432?pwd=x", **recorded.json()}
        )
    return 204, {}, b""


@pytest.fixture()
def zoom() -> Iterator[FakePlatform]:
    with fake_platform(meetings) as platform:
        yield platform


pytestmark = pytest.mark.usefixtures("fresh_integrations")  # each test connects its own


def checked(platform: FakePlatform) -> list[str]:
    document = openapi_document(ZOOM["fragment"], f"{platform.url}/v2")
    return [validate_openapi(document, r, platform.url) for r in platform.requests]


def remote_service(ctx_session: object, slug: str) -> ServiceType:
    service = ServiceType(slug=slug, name="Video triage", duration_minutes=45, remote=True)
    ctx_session.add(service)  # type: ignore[attr-defined]
    return service


def test_remote_visits_get_a_meeting_and_on_site_visits_do_not(
    platform_env: dict[str, str], platform_db: Database, zoom: FakePlatform
) -> None:
    add(platform_env, "zoom", "--set", f"base_url={zoom.url}/v2", "--secret", "access_token=zat")
    day = dt.datetime(2031, 3, 9, 15, tzinfo=dt.UTC)  # New York's clocks go forward that morning
    with domain(platform_db) as ctx:
        technician = add_technician(ctx, "Lou", "America/New_York")
        service = remote_service(ctx.session, f"video-{id(zoom)}")
        ctx.session.flush()
        on_site = book(ctx, add_customer(ctx, "Plant Inc"), technician, day - dt.timedelta(days=1))
        remote = book(ctx, add_customer(ctx, "Remote Inc"), technician, day)
        remote.service_type_id = service.id
        ctx.session.flush()
        remote_id, on_site_id = remote.id, on_site.id
    clock = Clock()
    drain(worker(platform_db, clock))
    with domain(platform_db) as ctx:  # the change that makes the remote visit's push
        scheduling.reschedule(
            ctx,
            scheduling.get_appointment(ctx.session, remote_id),
            day + dt.timedelta(hours=1),
            day + dt.timedelta(hours=2),
        )
    drain(worker(platform_db, clock))
    posts = [r for r in zoom.requests if r.method == "POST"]
    assert len(posts) == 1 and posts[0].path == "/v2/users/me/meetings"
    body = posts[0].json()
    assert body["start_time"] == "2031-03-09T15:00:00Z" and body["timezone"] == "America/New_York"
    assert body["duration"] == 120 and body["type"] == 2 and body["topic"] == "Annual service — Remote Inc"
    [patch] = [r for r in zoom.requests if r.method == "PATCH"]
    assert patch.json()["start_time"] == "2031-03-09T16:00:00Z" and patch.json()["duration"] == 60
    with platform_db.read() as session:
        assert integrations.join_url(session, remote_id) == "https://zoom.us/j/85746065432?pwd=x"
        assert integrations.join_url(session, on_site_id) == ""
    with domain(platform_db) as ctx:
        scheduling.cancel(ctx, scheduling.get_appointment(ctx.session, remote_id))
    drain(worker(platform_db, clock))
    assert [r.method for r in zoom.requests] == ["POST", "PATCH", "DELETE"]
    assert zoom.requests[-1].path == "/v2/meetings/85746065432"
    assert checked(zoom)[0] == "POST /v2/users/me/meetings"


def test_a_moved_remote_visit_moves_its_meeting(
    platform_env: dict[str, str], platform_db: Database, zoom: FakePlatform
) -> None:
    add(platform_env, "zoom", "--set", f"base_url={zoom.url}/v2", "--secret", "access_token=zat")
    day = dt.datetime(2031, 8, 4, 7, tzinfo=dt.UTC)
    with domain(platform_db) as ctx:
        service = remote_service(ctx.session, f"video-m-{id(zoom)}")
        ctx.session.flush()
        appointment = book(ctx, add_customer(ctx, "Move Co"), add_technician(ctx, "Mo"), day)
        appointment.service_type_id = service.id
        ctx.session.flush()
        appointment_id = appointment.id
    with domain(platform_db) as ctx:
        scheduling.reschedule(
            ctx,
            scheduling.get_appointment(ctx.session, appointment_id),
            day + dt.timedelta(minutes=30),
            day + dt.timedelta(hours=2),
        )
    drain(worker(platform_db, Clock()))
    methods = [r.method for r in zoom.requests]
    assert methods == ["POST", "PATCH"], methods
    assert zoom.requests[-1].json()["start_time"] == "2031-08-04T07:30:00Z"
    checked(zoom)


def connector(secret: str) -> Zoom:
    return Zoom(Config(1, "zoom", {}, {"secret_token": secret}))


def test_signature_vectors() -> None:
    now = dt.datetime.fromtimestamp(int(VECTOR["timestamp"]), dt.UTC)
    body = VECTOR["body"].encode()
    connector(VECTOR["secret"]).verify(Inbound("POST", "/", VECTOR["headers"], body), now)
    for bad_body, secret, headers, when in [
        (body.replace(b"Visit", b"Visjt"), VECTOR["secret"], VECTOR["headers"], now),
        (body, "wrong", VECTOR["headers"], now),
        (body, VECTOR["secret"], {"x-zm-request-timestamp": VECTOR["timestamp"]}, now),
        (body, VECTOR["secret"], VECTOR["headers"], now + dt.timedelta(minutes=6)),
    ]:
        with pytest.raises(InvalidSignature):
            connector(secret).verify(Inbound("POST", "/", headers, bad_body), when)


def test_url_validation_through_the_route(platform_env: dict[str, str]) -> None:
    integration_id = add(
        platform_env,
        "zoom",
        "--set",
        "base_url=http://127.0.0.1:9",
        "--secret",
        f"secret_token={VECTOR['secret']}",
    )
    sample = ZOOM["inbound_samples"]["url_validation"]
    body = json.dumps(sample["request_body"]).encode()
    import hashlib
    import hmac
    import time

    stamp = str(int(time.time()))
    signature = (
        "v0="
        + hmac.new(VECTOR["secret"].encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    )
    client = create_app(settings=load_settings(platform_env)).test_client()
    answer = client.post(
        f"/hooks/zoom/{integration_id}",
        data=body,
        headers={
            "x-zm-request-timestamp": stamp,
            "x-zm-signature": signature,
            "Content-Type": "application/json",
        },
    )
    assert answer.status_code == 200 and answer.get_json() == sample["response_body"]
    unsigned = client.post(f"/hooks/zoom/{integration_id}", data=body, content_type="application/json")
    assert unsigned.status_code == 401 and b"encryptedToken" not in unsigned.data
