"""Trello, ClickUp, Asana and Pipedrive against fakes on loopback: every request checked with
openapi-core against ../shared/contracts, the visit's times in each platform's own format
(Unix milliseconds, HH:MM in UTC, query parameters), and the object moving with the job's
status until the visit is done or cancelled."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from typing import Any

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

from server import scheduling
from server.db import Database
from server.models import JobStatus

OPEN, ROAD, DONE = "5f1a2b3c4d5e6f7a8b9c0d1e", "5f1a2b3c4d5e6f7a8b9c0d1f", "5f1a2b3c4d5e6f7a8b9c0d20"
DAY = dt.datetime(2031, 10, 26, 1, 30, tzinfo=dt.UTC)  # Berlin's night of the clock change


def answers(platform: str) -> Callable[[Recorded], tuple[int, dict[str, str], bytes]]:
    ids = itertools.count(1)

    def answer(recorded: Recorded) -> tuple[int, dict[str, str], bytes]:
        new = str(next(ids))
        if platform == "asana":
            return json_answer(201, {"data": {"gid": f"12000{new}", "resource_type": "task"}})
        if platform == "pipedrive":
            return json_answer(201, {"success": True, "data": {"id": int(new)}})
        return json_answer(200, {"id": f"{platform}-{new}" if platform != "trello" else f"{int(new):024x}"})

    return answer


SETUPS: dict[str, tuple[str, list[str], str]] = {
    # platform: (contract, options, base path on the fake)
    "trello": (
        "trello",
        [
            "--set",
            f"list_id={OPEN}",
            "--set",
            f"list_en_route={ROAD}",
            "--set",
            f"list_completed={DONE}",
            "--secret",
            "api_key=k",
            "--secret",
            "api_token=t",
        ],
        "/1",
    ),
    "clickup": (
        "clickup",
        [
            "--set",
            "list_id=901",
            "--set",
            "status_en_route=on the road",
            "--set",
            "status_completed=complete",
            "--secret",
            "api_token=pk_1",
        ],
        "/api",
    ),
    "asana": ("asana", ["--set", "project=1201", "--secret", "access_token=0/abc"], "/api/1.0"),
    "pipedrive": ("pipedrive", ["--secret", "api_token=pd-token"], "/v1"),
}


def document_for(name: str, server: str) -> dict[str, Any]:
    """The contract's document. Trello's types `due`/`start` as dates although the API takes
    date-times; the contract's own notes say so, and we send date-times: that one correction
    is made here, in the open."""
    document = openapi_document(contract(name)["fragment"], server)
    if name == "trello":
        assert any("due/start are typed format" in note for note in contract(name)["notes"])
        for operation in document["paths"].values():
            for method in ("post", "put"):
                for parameter in operation.get(method, {}).get("parameters", []):
                    if parameter.get("name") in ("due", "start"):
                        parameter["schema"] = {**parameter["schema"], "format": "date-time"}
    return document


pytestmark = pytest.mark.usefixtures("fresh_integrations")  # each test connects its own


def run_visit(platform_env: dict[str, str], platform_db: Database, platform: str, fake: FakePlatform) -> None:
    name, options, base = SETUPS[platform]
    add(platform_env, platform, "--set", f"base_url={fake.url}{base}", *options)
    clock = Clock()
    with domain(platform_db) as ctx:
        technician = add_technician(ctx, "Rae", "Europe/Berlin")
        appointment = book(ctx, add_customer(ctx, "Board GmbH"), technician, DAY)
        appointment_id, login = appointment.id, technician.login
    drain(worker(platform_db, clock))
    for status in (JobStatus.EN_ROUTE, JobStatus.COMPLETED):
        with domain(platform_db) as ctx:
            scheduling.set_status(ctx, scheduling.get_appointment(ctx.session, appointment_id), status)
        drain(worker(platform_db, clock))
    for recorded in fake.requests:
        validate_openapi(document_for(name, f"{fake.url}{base}"), recorded, fake.url)
    assert login


@pytest.mark.parametrize("platform", sorted(SETUPS))
def test_a_visit_becomes_a_task_that_follows_the_job(
    platform_env: dict[str, str], platform_db: Database, platform: str
) -> None:
    with fake_platform(answers(platform)) as fake:
        run_visit(platform_env, platform_db, platform, fake)
    create, road, done = fake.requests
    assert create.method == "POST" and road.method == done.method == "PUT"
    check = CHECKS[platform]
    check(create, road, done)


def check_trello(create: Recorded, road: Recorded, done: Recorded) -> None:
    assert not create.body, "Trello takes card fields as query parameters"
    assert create.query["idList"] == OPEN and create.query["due"] == "2031-10-26T01:30:00Z"
    assert create.query["name"] == "Annual service — Board GmbH" and create.query["key"] == "k"
    assert road.path == f"/1/cards/{1:024x}" and road.query["idList"] == ROAD
    assert done.query["idList"] == DONE and done.query["dueComplete"] == "true"


def check_clickup(create: Recorded, road: Recorded, done: Recorded) -> None:
    body = create.json()
    assert create.path == "/api/v2/list/901/task" and create.header("Authorization") == "pk_1"
    assert body["start_date"] == int(DAY.timestamp() * 1000) and isinstance(body["due_date"], int)
    assert body["due_date"] - body["start_date"] == 2 * 3600 * 1000 and body["due_date_time"] is True
    assert road.json()["status"] == "on the road" and done.json()["status"] == "complete"


def check_asana(create: Recorded, road: Recorded, done: Recorded) -> None:
    data: dict[str, Any] = create.json()["data"]
    assert data["projects"] == ["1201"] and data["start_at"] == "2031-10-26T01:30:00Z"
    assert data["due_at"] == "2031-10-26T03:30:00Z" and data["external"]["gid"].endswith("@fieldcal")
    assert road.json()["data"]["completed"] is False and done.json()["data"]["completed"] is True
    assert done.path == "/api/1.0/tasks/120001"


def check_pipedrive(create: Recorded, road: Recorded, done: Recorded) -> None:
    body = create.json()
    assert create.query == {"api_token": "pd-token"}
    assert (body["due_date"], body["due_time"], body["duration"]) == ("2031-10-26", "01:30", "02:00")
    assert body["done"] == 0 and done.json()["done"] == 1 and done.path == "/v1/activities/1"


CHECKS: dict[str, Callable[[Recorded, Recorded, Recorded], None]] = {
    "trello": check_trello,
    "clickup": check_clickup,
    "asana": check_asana,
    "pipedrive": check_pipedrive,
}


@pytest.mark.parametrize("platform", sorted(SETUPS))
def test_a_cancelled_visit_closes_its_task(
    platform_env: dict[str, str], platform_db: Database, platform: str
) -> None:
    name, options, base = SETUPS[platform]
    with fake_platform(answers(platform)) as fake:
        add(platform_env, platform, "--set", f"base_url={fake.url}{base}", *options)
        with domain(platform_db) as ctx:
            appointment = book(ctx, add_customer(ctx, "Cancel AG"), add_technician(ctx, "Sam"), DAY)
            appointment_id = appointment.id
        clock = Clock()
        drain(worker(platform_db, clock))
        with domain(platform_db) as ctx:
            scheduling.cancel(ctx, scheduling.get_appointment(ctx.session, appointment_id))
        drain(worker(platform_db, clock))
        for recorded in fake.requests:
            validate_openapi(document_for(name, f"{fake.url}{base}"), recorded, fake.url)
    closing = fake.requests[-1]
    fields: dict[str, Any] = closing.query if platform == "trello" else closing.json()
    fields = fields.get("data", fields)
    closed = {
        "trello": ("closed", "true"),
        "clickup": ("archived", True),
        "asana": ("completed", True),
        "pipedrive": ("done", 1),
    }[platform]
    assert fields[closed[0]] == closed[1], fields
    title = fields.get("name") or fields.get("subject")
    assert str(title).startswith("[cancelled]")
