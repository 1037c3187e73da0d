"""The integration layer: configuration (CLI), encrypted secrets, fan-out, pushes through the
outbox with retries, 429, reconnect, dead letters, scopes and loop prevention — against a fake
Slack on loopback whose every request is checked against Slack's published contract."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet
from integrationkit import KEY, add, drain, run, worker
from mailkit import Clock, add_customer, add_technician, book, domain, unique
from platformkit import FakePlatform, Recorded, contract, fake_platform, json_answer, validate_swagger2
from sqlalchemy import select, text

from server import directory, integrations
from server.actors import Actor
from server.db import Database
from server.models import Integration, OutboxMessage
from server.vault import Vault

SLACK = contract("slack")


def slack_ok(recorded: Recorded) -> tuple[int, dict[str, str], bytes]:
    return json_answer(200, {"ok": True, "channel": "C1", "ts": f"{len(recorded.body)}.0001"})


pytestmark = pytest.mark.usefixtures("fresh_integrations")  # older ones would push to servers long gone


@pytest.fixture()
def slack() -> Iterator[FakePlatform]:
    with fake_platform(slack_ok) as platform:
        yield platform


def add_slack(
    platform_env: dict[str, str], platform: FakePlatform, scope: str = "all", token: str = "xoxb-1"
) -> int:
    return add(
        platform_env,
        "slack",
        "--scope",
        scope,
        "--set",
        "channel=C0DISPATCH",
        "--set",
        f"base_url={platform.url}",
        "--secret",
        f"bot_token={token}",
        "--secret",
        "signing_secret=s3cret",
    )


def pushes(platform_db: Database, integration_id: int) -> list[OutboxMessage]:
    with platform_db.read() as session:
        rows = session.scalars(
            select(OutboxMessage).where(
                OutboxMessage.kind == "platform.push",
                OutboxMessage.idempotency_key.like(f"push:{integration_id}:%"),
            )
        ).all()
        session.expunge_all()
        return list(rows)


def booked(platform_db: Database, when: dt.datetime, timezone: str = "Europe/Berlin") -> tuple[int, str]:
    with domain(platform_db) as ctx:
        technician = add_technician(ctx, "Pia", timezone)
        customer = add_customer(ctx, "Kompressor GmbH")
        appointment = book(ctx, customer, technician, when)
        return appointment.id, technician.login


def test_add_validates_and_never_shows_secrets(platform_env: dict[str, str], slack: FakePlatform) -> None:
    assert "no platform called 'nope'" in run(
        platform_env, "integration", "add", "nope", "--name", "x", code=1
    )
    assert "needs --set channel" in run(platform_env, "integration", "add", "slack", "--name", "x", code=1)
    assert "has no setting colour" in run(
        platform_env,
        "integration",
        "add",
        "slack",
        "--name",
        "x",
        "--set",
        "channel=C1",
        "--set",
        "colour=red",
        code=1,
    )
    assert "scope" in run(
        platform_env,
        "integration",
        "add",
        "slack",
        "--name",
        "x",
        "--set",
        "channel=C1",
        "--scope",
        "everyone",
        code=1,
    )
    integration_id = add_slack(platform_env, slack, token="xoxb-never-shown")
    shown = run(platform_env, "integration", "show", str(integration_id), "--json")
    assert "xoxb-never-shown" not in shown and json.loads(shown)["secrets"] == "stored encrypted"
    assert "xoxb-never-shown" not in run(platform_env, "integration", "list")
    assert "slack" in run(platform_env, "integration", "list")


def test_secrets_fail_closed_without_a_key(platform_env: dict[str, str]) -> None:
    keyless = {**platform_env, "FIELDCAL_CREDENTIAL_KEYS": ""}
    said = run(
        keyless,
        "integration",
        "add",
        "slack",
        "--name",
        "x",
        "--set",
        "channel=C1",
        "--secret",
        "bot_token=xoxb-2",
        code=1,
    )
    assert "FIELDCAL_CREDENTIAL_KEYS is not set" in said


def test_database_dump_holds_no_token_in_clear(platform_env: dict[str, str], platform_db: Database) -> None:
    planted = [f"tok-{i:02d}-{unique('')}-plant" for i in range(20)]
    for token in planted:
        run(
            platform_env,
            "integration",
            "add",
            "slack",
            "--name",
            unique("dump-"),
            "--set",
            "channel=C1",
            "--set",
            "base_url=http://127.0.0.1:9",
            "--secret",
            f"bot_token={token}",
        )
    dump = dump_database(platform_db)
    assert "tok-00-" not in dump and all(token not in dump for token in planted)
    with platform_db.read() as session:
        stored = session.scalars(select(Integration.secrets).where(Integration.secrets != "")).all()
    assert stored and all(s.startswith("gAAAA") for s in stored), "Fernet tokens, not clear text"


def dump_database(platform_db: Database) -> str:
    """Every row of every table as text (what a backup would hold)."""
    lines: list[str] = []
    with platform_db.engine.connect() as connection:
        if platform_db.engine.dialect.name == "sqlite":
            raw = connection.connection.dbapi_connection
            lines.extend(raw.iterdump())  # type: ignore[union-attr]
        else:
            tables = (
                connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
                .scalars()
                .all()
            )
            for table in tables:
                for row in connection.execute(text(f'SELECT * FROM "{table}"')):
                    lines.append(repr(tuple(row)))
    return "\n".join(lines)


def test_a_booking_is_posted_to_slack_as_the_contract_says(
    platform_env: dict[str, str], platform_db: Database, slack: FakePlatform
) -> None:
    integration_id = add_slack(platform_env, slack)
    clock = Clock()
    appointment_id, login = booked(platform_db, dt.datetime(2031, 3, 30, 7, 30, tzinfo=dt.UTC))  # DST day
    drain(worker(platform_db, clock))
    posts = [r for r in slack.requests if r.path == "/chat.postMessage"]
    assert posts, "nothing reached Slack"
    for recorded in posts:
        validate_swagger2(SLACK["fragment"], recorded, bearer_satisfies="token")
        assert recorded.header("Authorization") == "Bearer xoxb-1"
    form = posts[-1].form()
    assert form["channel"] == "C0DISPATCH"
    # 07:30 UTC on the day Berlin moves to summer time is 09:30 local (CEST, UTC+2).
    assert "Kompressor GmbH" in form["text"] and "09:30" in form["text"] and "Europe/Berlin" in form["text"]
    blocks = json.loads(form["blocks"])
    assert blocks[1]["elements"][0]["url"] == "https://cal.example.test/console/board"
    assert all(r.status == "sent" for r in pushes(platform_db, integration_id))
    shown = json.loads(run(platform_env, "integration", "show", str(integration_id), "--json"))
    assert shown["last_success_at"] and shown["pending"] == 0 and shown["dead_letters"] == 0
    assert appointment_id and login


def test_429_waits_without_counting_then_delivers(
    platform_env: dict[str, str], platform_db: Database, slack: FakePlatform
) -> None:
    integration_id = add_slack(platform_env, slack)
    clock = Clock()
    work = worker(platform_db, clock)
    slack.script.extend([json_answer(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "120"})] * 5)
    booked(platform_db, dt.datetime(2031, 4, 1, 8, tzinfo=dt.UTC))
    for _ in range(5):  # five 429s in a row: more than max_attempts, still not dead
        drain(work)
        [row] = pushes(platform_db, integration_id)
        assert row.status == "pending" and row.attempts == 0, (row.status, row.attempts, row.last_error)
        assert row.next_attempt_at >= clock.now + dt.timedelta(seconds=110)
        clock.advance(seconds=121)
    drain(work)
    [row] = pushes(platform_db, integration_id)
    assert row.status == "sent"


def test_refused_credentials_pause_pushes_until_resumed(
    platform_env: dict[str, str], platform_db: Database, slack: FakePlatform
) -> None:
    integration_id = add_slack(platform_env, slack)
    clock = Clock()
    work = worker(platform_db, clock)
    slack.script.append(json_answer(401, {"ok": False, "error": "invalid_auth"}))
    booked(platform_db, dt.datetime(2031, 4, 2, 8, tzinfo=dt.UTC))
    drain(work)
    shown = json.loads(run(platform_env, "integration", "show", str(integration_id), "--json"))
    assert shown["status"] == "needs_reconnect"
    booked(platform_db, dt.datetime(2031, 4, 3, 8, tzinfo=dt.UTC))
    for _ in range(4):
        clock.advance(minutes=10)
        drain(work)
    rows = pushes(platform_db, integration_id)
    assert len(rows) == 2 and all(r.status == "pending" for r in rows), "paused, not dropped"
    run(platform_env, "integration", "resume", str(integration_id))
    drain(work)
    assert all(r.status == "sent" for r in pushes(platform_db, integration_id))


def test_refused_request_is_dead_lettered_and_retried_on_demand(
    platform_env: dict[str, str], platform_db: Database, slack: FakePlatform
) -> None:
    integration_id = add_slack(platform_env, slack)
    work = worker(platform_db, Clock())
    slack.script.append(json_answer(400, {"ok": False, "error": "invalid_blocks"}))
    booked(platform_db, dt.datetime(2031, 4, 4, 8, tzinfo=dt.UTC))
    drain(work)
    [row] = pushes(platform_db, integration_id)
    assert row.status == "dead" and "400" in row.last_error
    shown = json.loads(run(platform_env, "integration", "show", str(integration_id), "--json"))
    assert shown["dead_letters"] == 1 and "400" in shown["last_error"]
    assert "1 push(es) queued again" in run(platform_env, "integration", "retry", str(integration_id))
    drain(work)
    assert pushes(platform_db, integration_id)[0].status == "sent"


def test_server_errors_are_retried_with_backoff(
    platform_env: dict[str, str], platform_db: Database, slack: FakePlatform
) -> None:
    integration_id = add_slack(platform_env, slack)
    clock = Clock()
    work = worker(platform_db, clock)
    slack.script.append(json_answer(503, {"ok": False}))
    booked(platform_db, dt.datetime(2031, 4, 5, 8, tzinfo=dt.UTC))
    drain(work)
    [row] = pushes(platform_db, integration_id)
    assert row.status == "pending" and row.attempts == 1 and row.next_attempt_at > clock.now
    clock.advance(minutes=30)
    drain(work)
    assert pushes(platform_db, integration_id)[0].status == "sent"


def test_scope_and_loop_prevention(
    platform_env: dict[str, str], platform_db: Database, slack: FakePlatform
) -> None:
    everyone = add_slack(platform_env, slack)
    work = worker(platform_db, Clock())
    with domain(platform_db) as ctx:
        technician = add_technician(ctx, "Ole")
        login = technician.login
    only_ole = add_slack(platform_env, slack, scope=f"technician:{login}")
    with domain(platform_db) as ctx:
        other = add_technician(ctx, "Eva")
        customer = add_customer(ctx, "Luft AG")
        book(ctx, customer, other, dt.datetime(2031, 4, 7, 8, tzinfo=dt.UTC))
    drain(work)
    assert pushes(platform_db, only_ole) == [], "another technician's visit is out of scope"
    came_from = Actor(name=integrations.actor_name(everyone), channel=integrations.PLATFORM_CHANNEL)
    with domain(platform_db, actor=came_from) as ctx:
        ole = directory.find_user(ctx.session, login)
        customer = add_customer(ctx, "Druck KG")
        book(ctx, customer, ole, dt.datetime(2031, 4, 8, 8, tzinfo=dt.UTC))
    before = len(pushes(platform_db, everyone))
    drain(work)
    assert len(pushes(platform_db, only_ole)) == 1, "in scope, from another platform"
    assert len(pushes(platform_db, everyone)) == before, "never pushed back to where it came from"


def test_rekey_moves_every_secret_to_the_newest_key(
    platform_env: dict[str, str], platform_db: Database, slack: FakePlatform
) -> None:
    integration_id = add_slack(platform_env, slack, token="xoxb-rekey")
    newer = Fernet.generate_key().decode()
    both = {**platform_env, "FIELDCAL_CREDENTIAL_KEYS": f"{newer},{KEY}"}
    assert "re-encrypted" in run(both, "integration", "rekey")
    only_new = Vault((newer,))
    with platform_db.read() as session:
        row = session.get(Integration, integration_id)
        assert row is not None and only_new.open(row.secrets)["bot_token"] == "xoxb-rekey"
    stale = {**platform_env, "FIELDCAL_CREDENTIAL_KEYS": Fernet.generate_key().decode()}
    assert "cannot be decrypted" in run(stale, "integration", "test", str(integration_id), code=1)
    # put the old key back for the other tests (newest first, old still listed)
    run({**platform_env, "FIELDCAL_CREDENTIAL_KEYS": f"{KEY},{newer}"}, "integration", "rekey")


def test_dispatch_is_alerted_of_dead_letters_and_reconnects(
    platform_env: dict[str, str], platform_db: Database, slack: FakePlatform
) -> None:
    add_slack(platform_env, slack)  # the dispatch channel that hears of trouble
    with (
        fake_platform(lambda _r: json_answer(401, {"ok": False, "error": "invalid_auth"})) as locked,
        fake_platform(lambda _r: json_answer(400, {"ok": False, "error": "channel_not_found"})) as broken,
    ):
        locked_id = add(
            platform_env,
            "slack",
            "--name",
            "Locked",
            "--set",
            "channel=C1",
            "--set",
            f"base_url={locked.url}",
            "--secret",
            "bot_token=xoxb-locked",
        )
        add(
            platform_env,
            "slack",
            "--name",
            "Broken",
            "--set",
            "channel=C2",
            "--set",
            f"base_url={broken.url}",
            "--secret",
            "bot_token=xoxb-broken",
        )
        booked(platform_db, dt.datetime(2031, 4, 9, 8, tzinfo=dt.UTC))
        drain(worker(platform_db, Clock()))
    alerts = [r.form()["text"] for r in slack.requests if r.form()["text"].startswith("Needs attention:")]
    assert any("needs reconnecting" in a and "Locked" in a for a in alerts), alerts
    assert any("failed for good" in a and "channel_not_found" in a for a in alerts), alerts
    for recorded in slack.requests:
        validate_swagger2(SLACK["fragment"], recorded, bearer_satisfies="token")
    assert json.loads(run(platform_env, "integration", "show", str(locked_id), "--json"))["status"] == (
        "needs_reconnect"
    )
