"""The dispatch API's behaviour: booking, ETags and If-Match, problems, paging, idempotency,
time zones, audit, changes, availability, links, the OpenAPI document (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from apikit import Keys, make_app, make_keys
from flask import Flask
from flask.testing import FlaskClient
from seeding import Seed, add_account, at, audit_entries, domain, row_counts
from sqlalchemy import func, select, update

from server import api as api_face
from server import directory
from server.db import Database
from server.models import IdempotentRequest, Job, Role, utcnow
from server.scheduling.capacity import add_service_type, set_working_hours

COMMITTED = Path(api_face.__file__).with_name("openapi.json")


@pytest.fixture(scope="module")
def app(database_url: str, seed: Seed, tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return make_app(database_url, tmp_path_factory.mktemp("api"))


@pytest.fixture(scope="module")
def keys(db: Database) -> Keys:
    return make_keys(db)


@pytest.fixture()
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as client:
        yield client


@pytest.fixture(scope="module")
def tech(db: Database) -> str:
    with domain(db) as ctx:
        add_account(ctx, "api-tech", Role.TECHNICIAN, timezone="Europe/Berlin")
    return "api-tech"


def new_job(client: FlaskClient, keys: Keys, seed: Seed, title: str = "Compressor stalls") -> int:
    response = client.post("/api/v1/jobs", headers=keys.headers("dispatcher"),
                           json={"customer_id": seed.customer_ids[0], "title": title,
                                 "problem": "Pressure drops", "priority": "high"})
    assert response.status_code == 201, response.get_json()
    return int(response.get_json()["id"])


def book(client: FlaskClient, keys: Keys, job_id: int, login: str, start: dt.datetime,
         minutes: int = 60, who: str = "dispatcher") -> tuple[int, dict]:
    response = client.post("/api/v1/appointments", headers=keys.headers(who),
                           json={"job_id": job_id, "technician": login,
                                 "starts_at": start.isoformat(), "duration_minutes": minutes})
    return response.status_code, {**(response.get_json() or {}),
                                  "_etag": response.headers.get("ETag")}


def test_booking_answers_with_etag_location_and_local_times(client: FlaskClient, keys: Keys,
                                                            seed: Seed, tech: str,
                                                            db: Database) -> None:
    job_id = new_job(client, keys, seed)
    status, body = book(client, keys, job_id, tech, at(21, 8), who="integration")
    assert status == 201, body
    assert body["starts_at"] == "2031-03-24T09:00:00+01:00"  # 08:00 UTC in Europe/Berlin
    assert body["technician"] == tech and body["job_status"] == "scheduled"
    got = client.get(f"/api/v1/appointments/{body['id']}", headers=keys.headers("readonly"))
    assert got.headers["ETag"] == body["_etag"]
    assert got.headers["Fieldcal-Timezone"] == "Europe/Berlin"
    booked = audit_entries(db, "appointment", body["id"], "appointment.book")
    assert [(e.channel, e.actor.startswith("apikey:integration-")) for e in booked] == [("api", True)]


def test_overlap_is_409_naming_the_blocking_visit(client: FlaskClient, keys: Keys, seed: Seed,
                                                  tech: str, db: Database) -> None:
    first = book(client, keys, new_job(client, keys, seed), tech, at(22, 9))[1]
    before = row_counts(db)
    status, problem = book(client, keys, new_job(client, keys, seed), tech,
                           at(22, 9, 30))
    assert status == 409
    assert problem["blocking"] == [first["id"]]
    assert f"#{first['id']}" in problem["detail"] and problem["status"] == 409
    after = row_counts(db)
    assert after["appointment"] == before["appointment"]
    assert after["outbox_message"] == before["outbox_message"]


def test_if_match_guards_every_change(client: FlaskClient, keys: Keys, seed: Seed,
                                      tech: str) -> None:
    booked = book(client, keys, new_job(client, keys, seed), tech, at(23, 9))[1]
    path = f"/api/v1/appointments/{booked['id']}"
    move = {"starts_at": at(23, 13).isoformat()}
    missing = client.patch(path, headers=keys.headers("dispatcher"), json=move)
    assert missing.status_code == 428
    assert missing.content_type == "application/problem+json"
    stale = client.patch(path, headers=keys.headers("dispatcher", **{"If-Match": '"stale"'}),
                         json=move)
    assert stale.status_code == 412 and stale.headers["ETag"] == booked["_etag"]
    moved = client.patch(path, headers=keys.headers("dispatcher", **{"If-Match": booked["_etag"]}),
                         json=move)
    assert moved.status_code == 200, moved.get_json()
    assert moved.get_json()["starts_at"] == "2031-03-26T14:00:00+01:00"
    assert moved.get_json()["ends_at"] == "2031-03-26T15:00:00+01:00"  # the duration is kept
    assert moved.headers["ETag"] != booked["_etag"]
    again = client.post(f"{path}/cancel", headers=keys.headers(
        "dispatcher", **{"If-Match": booked["_etag"]}), json={"reason": "customer away"})
    assert again.status_code == 412
    cancelled = client.post(f"{path}/cancel", headers=keys.headers(
        "dispatcher", **{"If-Match": moved.headers["ETag"]}), json={"reason": "customer away"})
    assert cancelled.status_code == 200
    assert cancelled.get_json()["status"] == "cancelled"


def test_reassign_and_progress(client: FlaskClient, keys: Keys, seed: Seed, tech: str) -> None:
    booked = book(client, keys, new_job(client, keys, seed), tech, at(24, 9))[1]
    path = f"/api/v1/appointments/{booked['id']}"
    handed = client.post(f"{path}/reassign", json={"technician": "carol"},
                         headers=keys.headers("dispatcher", **{"If-Match": booked["_etag"]}))
    assert handed.status_code == 200 and handed.get_json()["technician"] == "carol"
    status = client.post(f"{path}/status", json={"status": "en_route"},
                         headers=keys.headers("integration", **{"If-Match": handed.headers["ETag"]}))
    assert status.status_code == 200 and status.get_json()["job_status"] == "en_route"
    trail = client.get(f"{path}/audit", headers=keys.headers("readonly")).get_json()["items"]
    assert [e["action"] for e in trail] == ["appointment.book", "appointment.reassign",
                                            "appointment.status"]
    assert all(e["channel"] == "api" for e in trail)


def test_validation_is_422_with_field_errors(client: FlaskClient, keys: Keys) -> None:
    response = client.post("/api/v1/appointments", headers=keys.headers("dispatcher"),
                           json={"job_id": "one", "starts_at": "next tuesday"})
    assert response.status_code == 422
    problem = response.get_json()
    assert {tuple(e["loc"]) for e in problem["errors"]} >= {("job_id",), ("starts_at",)}
    naive = client.post("/api/v1/appointments", headers=keys.headers("dispatcher"),
                        json={"job_id": 1, "starts_at": "2031-03-03T09:00:00",
                              "duration_minutes": 30})
    assert naive.status_code == 422  # times need an offset
    unknown = client.post("/api/v1/appointments", headers=keys.headers("dispatcher"),
                          json={"job_id": 1, "technician": "nobody",
                                "starts_at": "2031-03-03T09:00:00Z", "duration_minutes": 30})
    assert unknown.status_code == 404 and "nobody" in unknown.get_json()["detail"]
    too_many = client.get("/api/v1/appointments?limit=201", headers=keys.headers("readonly"))
    assert too_many.status_code == 422


def test_lists_are_cursor_paged(client: FlaskClient, keys: Keys, seed: Seed, tech: str) -> None:
    for hour in (8, 10, 12):
        book(client, keys, new_job(client, keys, seed), tech, at(25, hour))
    seen: list[int] = []
    url: str | None = f"/api/v1/appointments?technician={tech}&limit=2"
    while url:
        page = client.get(url, headers=keys.headers("readonly")).get_json()
        assert len(page["items"]) <= 2 and page["timezone"] == "Europe/Berlin"
        seen += [item["id"] for item in page["items"]]
        url = page["next"]
    assert len(seen) == len(set(seen)) >= 3
    window = client.get(f"/api/v1/appointments?technician={tech}&from={at(25, 0).isoformat()}"
                        f"&to={at(26, 0).isoformat()}".replace("+", "%2B"),
                        headers=keys.headers("readonly")).get_json()["items"]
    assert len(window) == 3
    bad = client.get("/api/v1/appointments?cursor=garbage!!", headers=keys.headers("readonly"))
    assert bad.status_code == 422


def test_idempotency_key_replays_and_refuses_reuse(client: FlaskClient, keys: Keys, seed: Seed,
                                                   db: Database) -> None:
    body = {"customer_id": seed.customer_ids[1], "title": "Idempotent job"}
    headers = keys.headers("integration", **{"Idempotency-Key": "job-42"})
    first = client.post("/api/v1/jobs", headers=headers, json=body)
    again = client.post("/api/v1/jobs", headers=headers, json=body)
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["ETag"] == first.headers["ETag"]
    changed = client.post("/api/v1/jobs", headers=headers, json={**body, "title": "Other"})
    assert changed.status_code == 422 and "different request" in changed.get_json()["detail"]
    other_caller = client.post("/api/v1/jobs", json=body,
                               headers=keys.headers("dispatcher", **{"Idempotency-Key": "job-42"}))
    assert other_caller.get_json()["id"] != first.get_json()["id"]  # keys are per caller
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Job)
                              .where(Job.title == "Idempotent job")) == 2


def test_changes_are_a_cursor_over_the_log(client: FlaskClient, keys: Keys, seed: Seed) -> None:
    head = client.get("/api/v1/changes?limit=200", headers=keys.headers("integration")).get_json()
    last = head["items"][-1]["id"] if head["items"] else 0
    while head["next"]:
        head = client.get(head["next"], headers=keys.headers("integration")).get_json()
        last = head["items"][-1]["id"] if head["items"] else last
    job_id = new_job(client, keys, seed, "Watched job")
    fresh = client.get(f"/api/v1/changes?after={last}",
                       headers=keys.headers("integration")).get_json()["items"]
    assert [(e["action"], e["entity_id"], e["channel"]) for e in fresh] == [
        ("job.add", str(job_id), "api")]
    assert fresh[0]["actor"].startswith("apikey:dispatcher-")
    assert fresh[0]["at"].endswith(("+01:00", "+02:00"))


def test_availability_names_the_technician(client: FlaskClient, keys: Keys, db: Database) -> None:
    with domain(db) as ctx:
        technician = directory.add_user(ctx, "api-avail", name="Avail Able", role=Role.TECHNICIAN,
                                        email="avail@example.test", timezone="Europe/Berlin",
                                        skills=["screw-compressors"])
        set_working_hours(ctx, technician, {0: [("08:00", "12:00")]})
        service = add_service_type(ctx, "screw-service", "Screw compressor service",
                                   duration_minutes=60, skills=["screw-compressors"],
                                   min_notice_minutes=0, horizon_days=730)
        service.horizon_days = 3650  # the test's dates are years ahead
    query = (f"service=screw-service&from={at(28, 0).isoformat()}&to={at(29, 0).isoformat()}"
             .replace("+", "%2B"))
    page = client.get(f"/api/v1/availability?{query}", headers=keys.headers("readonly")).get_json()
    assert page["items"], page
    assert {slot["technician"] for slot in page["items"]} == {"api-avail"}
    assert page["items"][0]["starts_at"] == "2031-03-31T08:00:00+02:00"  # Monday, summer time
    unknown = client.get("/api/v1/availability?service=nope&from=2031-03-31T00:00:00Z"
                         "&to=2031-04-01T00:00:00Z", headers=keys.headers("readonly"))
    assert unknown.status_code == 404


def test_links_issue_rotate_revoke(client: FlaskClient, keys: Keys) -> None:
    issued = client.post("/api/v1/links", headers=keys.headers("dispatcher"),
                         json={"purpose": "feed", "subject": "technician:alice",
                               "audience": "freebusy"})
    assert issued.status_code == 201, issued.get_json()
    link = issued.get_json()
    assert link["url"].startswith("http://fieldcal.test/feeds/")
    path = f"/api/v1/links/{link['id']}"
    rotated = client.post(f"{path}/rotate", headers=keys.headers(
        "dispatcher", **{"If-Match": issued.headers["ETag"]}))
    assert rotated.status_code == 200 and rotated.get_json()["url"] != link["url"]
    revoked = client.post(f"{path}/revoke", headers=keys.headers(
        "dispatcher", **{"If-Match": rotated.headers["ETag"]}))
    assert revoked.status_code == 200 and revoked.get_json()["url"] is None
    listed = client.get("/api/v1/links?subject=technician:alice",
                        headers=keys.headers("dispatcher")).get_json()["items"]
    assert link["id"] in [item["id"] for item in listed]


def test_unknown_api_urls_are_problems_and_other_faces_keep_theirs(client: FlaskClient) -> None:
    missing = client.get("/api/v1/no-such-thing")
    assert missing.status_code == 404 and missing.content_type == "application/problem+json"
    wrong = client.delete("/api/v1/jobs")
    assert wrong.status_code == 405 and wrong.content_type == "application/problem+json"
    elsewhere = client.get("/no-such-page")
    assert elsewhere.status_code == 404 and "problem" not in (elsewhere.content_type or "")


def test_served_openapi_document_is_the_committed_one(client: FlaskClient) -> None:
    served = client.get("/api/v1/openapi.json")
    assert served.status_code == 200
    document = served.get_json()
    assert document["openapi"].startswith("3.1")
    assert document == json.loads(COMMITTED.read_text()), (
        "server/api/openapi.json is stale: regenerate it with "
        "`fieldcal api openapi > server/api/openapi.json`")


def test_idempotency_keys_expire_after_a_day(client: FlaskClient, keys: Keys, seed: Seed,
                                             db: Database) -> None:
    body = {"customer_id": seed.customer_ids[0], "title": "Expiring key"}
    headers = keys.headers("dispatcher", **{"Idempotency-Key": "day-old"})
    first = client.post("/api/v1/jobs", headers=headers, json=body).get_json()
    with db.write() as session:
        session.execute(update(IdempotentRequest).where(IdempotentRequest.key == "day-old")
                        .values(expires_at=utcnow() - dt.timedelta(seconds=1)))
    later = client.post("/api/v1/jobs", headers=headers, json=body)
    assert later.status_code == 201 and "Idempotent-Replayed" not in later.headers
    assert later.get_json()["id"] != first["id"]


def test_working_hours_are_read_and_replaced(client: FlaskClient, keys: Keys, tech: str) -> None:
    path = f"/api/v1/technicians/{tech}"
    read = client.get(path, headers=keys.headers("readonly"))
    assert read.status_code == 200 and read.get_json()["active"] is True
    week = {"working_hours": [{"weekday": 0, "starts": "08:00", "ends": "12:00"},
                              {"weekday": 0, "starts": "13:00", "ends": "17:00"}]}
    put = client.put(f"{path}/working-hours", json=week,
                     headers=keys.headers("dispatcher", **{"If-Match": read.headers["ETag"]}))
    assert put.status_code == 200, put.get_json()
    assert put.get_json()["working_hours"] == week["working_hours"]
    stale = client.put(f"{path}/working-hours", json=week,
                       headers=keys.headers("dispatcher", **{"If-Match": read.headers["ETag"]}))
    assert stale.status_code == 412
    backwards = client.put(f"{path}/working-hours", headers=keys.headers(
        "dispatcher", **{"If-Match": put.headers["ETag"]}),
        json={"working_hours": [{"weekday": 1, "starts": "17:00", "ends": "08:00"}]})
    assert backwards.status_code == 422 and "17:00-08:00" in backwards.get_json()["detail"]
