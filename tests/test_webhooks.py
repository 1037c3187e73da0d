"""Outbound webhooks: signed deliveries a receiver can verify, retries and the delivery log,
redelivery, secret rotation with overlap, and refusal of private targets and redirects."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest
from integrationkit import drain, run, worker
from mailkit import Clock, add_customer, add_technician, book, domain
from platformkit import FakePlatform, Recorded, fake_platform, json_answer
from sqlalchemy import select

from server import webhooks
from server.db import Database
from server.models import OutboxMessage, WebhookDelivery


@pytest.fixture(autouse=True)
def fresh(platform_env: dict[str, str]) -> Iterator[None]:
    yield
    for row in json.loads(run(platform_env, "webhook", "list", "--json")):
        if row["active"]:
            run(platform_env, "webhook", "remove", str(row["id"]))


@pytest.fixture()
def receiver() -> Iterator[FakePlatform]:
    with fake_platform(lambda _r: (204, {}, b"")) as platform:
        yield platform


def add_hook(platform_env: dict[str, str], url: str, *extra: str) -> tuple[int, str]:
    created = json.loads(run(platform_env, "webhook", "add", url, "--allow-private", *extra, "--json"))
    return int(created["id"]), str(created["secret"])


def book_one(platform_db: Database, day: int) -> int:
    with domain(platform_db) as ctx:
        appointment = book(
            ctx,
            add_customer(ctx, "Kessel OHG"),
            add_technician(ctx, "Max"),
            dt.datetime(2031, 5, day, 8, tzinfo=dt.UTC),
        )
        return appointment.id


def deliveries(platform_env: dict[str, str], webhook_id: int) -> list[dict[str, object]]:
    return json.loads(run(platform_env, "webhook", "deliveries", str(webhook_id), "--json"))


def test_private_targets_are_refused_unless_allowed(platform_env: dict[str, str]) -> None:
    for url in (
        "http://127.0.0.1:9/hook",
        "http://10.1.2.3/hook",
        "http://[::1]/x",
        "http://localhost/x",
        "http://169.254.169.254/latest",
    ):
        said = run(platform_env, "webhook", "add", url, code=1)
        assert "refused" in said and "--allow-private" in said, said
    assert "http:// or https://" in run(platform_env, "webhook", "add", "file:///etc/passwd", code=1)


def test_delivery_is_signed_and_verifiable(
    platform_env: dict[str, str], platform_db: Database, receiver: FakePlatform
) -> None:
    webhook_id, secret = add_hook(platform_env, f"{receiver.url}/hook", "--events", "appointment.*")
    clock = Clock()
    appointment_id = book_one(platform_db, 5)
    drain(worker(platform_db, clock))
    [recorded] = receiver.requests
    body = recorded.body
    header = recorded.header(webhooks.HEADER)
    assert header.startswith("t=") and ",v1=" in header
    assert webhooks.verify(secret, header, body, clock.now)
    assert not webhooks.verify("whsec_wrong", header, body, clock.now)
    assert not webhooks.verify(secret, header, body + b" ", clock.now)
    assert not webhooks.verify(secret, header, body, clock.now + dt.timedelta(minutes=6)), "stale"
    event = json.loads(body)
    assert event["type"] == "appointment.book"
    assert event["data"]["appointment"]["appointment_id"] == appointment_id
    assert event["id"] and event["created_at"]
    [logged] = deliveries(platform_env, webhook_id)
    assert logged["status"] == "delivered" and logged["response_status"] == 204


def test_failures_are_retried_logged_and_redelivered(
    platform_env: dict[str, str], platform_db: Database, receiver: FakePlatform
) -> None:
    webhook_id, _secret = add_hook(platform_env, f"{receiver.url}/flaky")
    clock = Clock()
    work = worker(platform_db, clock)
    receiver.script.append((500, {}, b"receiver broke"))
    book_one(platform_db, 6)
    drain(work)
    [logged] = deliveries(platform_env, webhook_id)
    assert logged["status"] == "failed" and logged["response_status"] == 500 and logged["attempts"] == 1
    clock.advance(minutes=30)
    drain(work)
    [logged] = deliveries(platform_env, webhook_id)
    assert logged["status"] == "delivered" and logged["attempts"] == 2
    ids = {json.loads(r.body)["id"] for r in receiver.requests}
    assert len(ids) == 1, "a retry carries the same event id"
    run(platform_env, "webhook", "redeliver", str(logged["id"]))
    drain(work)
    assert len(receiver.requests) == 3 and deliveries(platform_env, webhook_id)[0]["attempts"] == 3


def test_redirects_are_not_followed(
    platform_env: dict[str, str], platform_db: Database, receiver: FakePlatform
) -> None:
    def redirect(recorded: Recorded) -> tuple[int, dict[str, str], bytes]:
        if recorded.path == "/moved":
            return 302, {"Location": "http://169.254.169.254/latest/meta-data"}, b""
        return 204, {}, b""

    receiver.responder = redirect
    webhook_id, _secret = add_hook(platform_env, f"{receiver.url}/moved")
    book_one(platform_db, 7)
    drain(worker(platform_db, Clock()))
    assert [r.path for r in receiver.requests] == ["/moved"]
    [logged] = deliveries(platform_env, webhook_id)
    assert logged["status"] == "failed" and "not followed" in str(logged["last_error"])
    with platform_db.read() as session:
        record = session.get(WebhookDelivery, int(str(logged["id"])))
        assert record is not None
        rows = session.scalars(
            select(OutboxMessage).where(OutboxMessage.kind == "webhook", OutboxMessage.payload.is_not(None))
        ).all()
        assert any(r.status == "dead" and "not followed" in r.last_error for r in rows)


def test_rotation_signs_with_both_secrets_during_the_overlap(
    platform_env: dict[str, str], platform_db: Database, receiver: FakePlatform
) -> None:
    webhook_id, old = add_hook(platform_env, f"{receiver.url}/rotating")
    new = json.loads(run(platform_env, "webhook", "rotate", str(webhook_id), "--overlap", "1h", "--json"))[
        "secret"
    ]
    assert new != old
    clock = Clock()
    book_one(platform_db, 8)
    drain(worker(platform_db, clock))
    [recorded] = receiver.requests
    header = recorded.header(webhooks.HEADER)
    assert header.count("v1=") == 2
    assert webhooks.verify(new, header, recorded.body, clock.now)
    assert webhooks.verify(old, header, recorded.body, clock.now)
    clock.advance(hours=2)
    book_one(platform_db, 9)
    drain(worker(platform_db, clock))
    later = receiver.requests[-1].header(webhooks.HEADER)
    assert later.count("v1=") == 1 and not webhooks.verify(old, later, receiver.requests[-1].body, clock.now)


def test_events_filter(platform_env: dict[str, str], platform_db: Database, receiver: FakePlatform) -> None:
    add_hook(platform_env, f"{receiver.url}/jobs-only", "--events", "job.*")
    book_one(platform_db, 12)
    drain(worker(platform_db, Clock()))
    assert receiver.requests == []
    assert json_answer(200, {})[0] == 200
