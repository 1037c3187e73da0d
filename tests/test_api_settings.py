"""The API's settings and geography: sites, service areas, time off, holidays, service types,
team travel, availability by site, rule refusals and overrides, a technician's day with the
drives (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apikit import Keys, make_app, make_keys
from flask import Flask
from flask.testing import FlaskClient
from seeding import Seed, after_of, audit_entries

from server.db import Database

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture(scope="module")
def app(database_url: str, seed: Seed, tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return make_app(database_url, tmp_path_factory.mktemp("api-settings"))


@pytest.fixture(scope="module")
def keys(db: Database) -> Keys:
    return make_keys(db)


@pytest.fixture()
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as client:
        yield client


def monday(hour: int, minute: int = 0, weeks: int = 3) -> dt.datetime:
    """A Monday a few weeks ahead, at a wall-clock time in Berlin."""
    today = dt.datetime.now(BERLIN).date()
    day = today + dt.timedelta(days=7 * weeks - today.weekday())
    return dt.datetime.combine(day, dt.time(hour, minute), BERLIN)


def call(client: FlaskClient, keys: Keys, method: str, path: str, who: str = "dispatcher",
         etag: str | None = None, **kwargs: Any) -> tuple[int, Any, str | None]:
    headers = keys.headers(who, **({"If-Match": etag} if etag else {}))
    response = client.open(path, method=method, headers=headers, **kwargs)
    return response.status_code, response.get_json(silent=True), response.headers.get("ETag")


def technician(client: FlaskClient, keys: Keys, login: str, skill: str) -> None:
    status, body, etag = call(client, keys, "POST", "/api/v1/technicians", json={
        "login": login, "name": login.title(), "email": f"{login}@example.test",
        "timezone": "Europe/Berlin", "skills": [skill]})
    assert status == 201, body
    status, body, _ = call(client, keys, "PUT", f"/api/v1/technicians/{login}/working-hours",
                           etag=etag, json={"working_hours": [
                               {"weekday": d, "starts": "08:00", "ends": "16:00"}
                               for d in range(5)]})
    assert status == 200, body


def customer_site(client: FlaskClient, keys: Keys, address: str, **site: Any) -> tuple[int, int]:
    status, body, _ = call(client, keys, "POST", "/api/v1/customers", who="integration",
                           json={"name": f"Customer at {address}", "timezone": "Europe/Berlin"})
    assert status == 201, body
    status, made, _ = call(client, keys, "POST", f"/api/v1/customers/{body['id']}/sites",
                           who="integration", json={"address": address, **site})
    assert status == 201, made
    return body["id"], made["id"]


def job_at(client: FlaskClient, keys: Keys, customer_id: int, site_id: int) -> int:
    status, body, _ = call(client, keys, "POST", "/api/v1/jobs", who="integration",
                           json={"customer_id": customer_id, "site_id": site_id,
                                 "title": "Compressor service"})
    assert status == 201, body
    return int(body["id"])


def test_sites_are_created_read_and_changed_with_etags(client: FlaskClient, keys: Keys,
                                                       db: Database) -> None:
    customer_id, site_id = customer_site(client, keys, "Alexanderplatz 1, 10178 Berlin",
                                         latitude=52.5219, longitude=13.4132,
                                         compressor_make="Kaeser")
    status, site, etag = call(client, keys, "GET", f"/api/v1/sites/{site_id}", who="readonly")
    assert status == 200
    assert (site["postcode"], site["country"], site["latitude"], site["customer_id"],
            site["compressor_make"]) == ("10178", "DE", 52.5219, customer_id, "Kaeser")
    path = f"/api/v1/sites/{site_id}"
    change = {"address": "5 Rue de Rivoli, 75001 Paris", "latitude": None, "longitude": None,
              "compressor_serial": "SN-1"}
    assert call(client, keys, "PATCH", path, who="integration", json=change)[0] == 428
    assert call(client, keys, "PATCH", path, who="integration", etag='"old"', json=change)[0] == 412
    status, changed, new_etag = call(client, keys, "PATCH", path, who="integration", etag=etag,
                                     json=change)
    assert status == 200, changed
    assert (changed["postcode"], changed["country"], changed["latitude"],
            changed["compressor_serial"], changed["compressor_make"]) == (
        "75001", "FR", None, "SN-1", "Kaeser")
    assert new_etag != etag
    half = call(client, keys, "PATCH", path, who="integration", etag=new_etag,
                json={"latitude": 48.8})
    assert half[0] == 422 and "together" in half[1]["detail"]
    entries = audit_entries(db, "site", site_id, "site.update")
    assert entries and entries[-1].actor.startswith("apikey:integration-")
    assert entries[-1].channel == "api"


def test_areas_decide_who_is_offered_and_booked(client: FlaskClient, keys: Keys,
                                                db: Database) -> None:
    technician(client, keys, "area-berlin", "area-skill")
    technician(client, keys, "area-ny", "area-skill")
    for login, country, prefix in (("area-berlin", "DE", "10"), ("area-ny", "US", "10")):
        status, area, _ = call(client, keys, "POST", f"/api/v1/technicians/{login}/areas",
                               json={"country": country, "postcode_prefix": prefix})
        assert status == 201, area
        assert area["technician"] == login and area["country"] == country
    status, service, _ = call(client, keys, "POST", "/api/v1/service-types", json={
        "slug": "area-visit", "name": "Area visit", "duration_minutes": 60,
        "skills": ["area-skill"], "min_notice_minutes": 0, "horizon_days": 60})
    assert status == 201, service
    customer_id, berlin_site = customer_site(client, keys, "Alexanderplatz 1, 10178 Berlin")
    day = monday(0)
    query = {"service": "area-visit", "site": berlin_site, "from": day.isoformat(),
             "to": (day + dt.timedelta(days=1)).isoformat()}
    status, page, _ = call(client, keys, "GET", "/api/v1/availability", who="readonly",
                           query_string=query)
    assert status == 200, page
    assert page["items"] and {s["technician"] for s in page["items"]} == {"area-berlin"}
    new_york_site = customer_site(client, keys, "350 5th Ave, New York, NY 10118")[1]
    status, page, _ = call(client, keys, "GET", "/api/v1/availability", who="readonly",
                           query_string={**query, "site": new_york_site})
    assert page["items"] and {s["technician"] for s in page["items"]} == {"area-ny"}

    # booking the New York technician for the Berlin site: a 409 naming the rule, in the
    # caller's zone, with the structured conflicts; nothing booked
    job_id = job_at(client, keys, customer_id, berlin_site)
    visit = {"job_id": job_id, "technician": "area-ny", "starts_at": monday(10).isoformat(),
             "duration_minutes": 60}
    status, refused, _ = call(client, keys, "POST", "/api/v1/appointments", who="integration",
                              json=visit, query_string={"tz": "America/New_York"})
    assert status == 409, refused
    assert refused["rule"] == "area" and refused["conflicts"][0]["technician"] == "area-ny"
    assert refused["conflicts"][0]["area"] and "does not serve" in refused["detail"]
    # an integration key may not force; a dispatcher key may, and the override is audited
    forced = {**visit, "force": {"reason": "Customer asked for Nora by name"}}
    status, problem, _ = call(client, keys, "POST", "/api/v1/appointments", who="integration",
                              json=forced)
    assert status == 403 and "force" in problem["detail"]
    assert call(client, keys, "POST", "/api/v1/appointments", json={
        **visit, "force": {"reason": ""}})[0] == 422
    status, booked, _ = call(client, keys, "POST", "/api/v1/appointments", json=forced)
    assert status == 201, booked
    override = audit_entries(db, "appointment", booked["id"], "appointment.override")
    assert len(override) == 1 and override[0].actor.startswith("apikey:dispatcher-")
    assert after_of(override[0])["reason"] == "Customer asked for Nora by name"

    # removing the area: the New York technician serves everything again
    areas = call(client, keys, "GET", "/api/v1/technicians/area-ny/areas", who="readonly")[1]
    (only,) = areas["items"]
    path = f"/api/v1/technicians/area-ny/areas/{only['id']}"
    assert call(client, keys, "DELETE", path)[0] == 428
    assert call(client, keys, "DELETE", path, who="integration", etag="*")[0] == 403
    assert call(client, keys, "DELETE", path, etag="*")[0] == 200
    assert call(client, keys, "DELETE", path, etag="*")[0] == 404
    assert call(client, keys, "GET", "/api/v1/technicians/area-ny/areas")[1]["items"] == []


def test_hours_refusal_speaks_the_callers_zone_and_moves_can_be_forced(
        client: FlaskClient, keys: Keys) -> None:
    technician(client, keys, "hours-tech", "hours-skill")
    customer_id, site_id = customer_site(client, keys, "Karl-Marx-Allee 5, 10178 Berlin")
    job_id = job_at(client, keys, customer_id, site_id)
    evening = {"job_id": job_id, "technician": "hours-tech",
               "starts_at": monday(18).isoformat(), "duration_minutes": 60}
    status, problem, _ = call(client, keys, "POST", "/api/v1/appointments", json=evening,
                              query_string={"tz": "America/New_York"})
    assert status == 409 and problem["rule"] == "hours"
    assert problem["timezone"] == "America/New_York"
    assert "12:00" in problem["detail"] and "America/New_York" in problem["detail"]
    assert problem["conflicts"][0]["working_hours"]
    bad_zone = call(client, keys, "POST", "/api/v1/appointments", json=evening,
                    query_string={"tz": "Mars/Olympus"})
    assert bad_zone[0] == 422
    status, booked, etag = call(client, keys, "POST", "/api/v1/appointments",
                                json={**evening, "starts_at": monday(9).isoformat()})
    assert status == 201, booked
    path = f"/api/v1/appointments/{booked['id']}"
    late = {"starts_at": monday(19).isoformat()}
    status, problem, _ = call(client, keys, "PATCH", path, etag=etag, json=late)
    assert status == 409 and problem["rule"] == "hours"
    status, moved, etag = call(client, keys, "PATCH", path, etag=etag,
                               json={**late, "force": {"reason": "Night shift agreed"}})
    assert status == 200 and moved["starts_at"].startswith(monday(19).date().isoformat())


def test_time_off_and_holidays(client: FlaskClient, keys: Keys, db: Database) -> None:
    technician(client, keys, "leave-tech", "leave-skill")
    path = "/api/v1/technicians/leave-tech/time-off"
    leave = {"starts_at": monday(0).isoformat(), "ends_at": monday(0, weeks=4).isoformat(),
             "reason": "Vacation"}
    assert call(client, keys, "POST", path, who="integration", json=leave)[0] == 403
    status, made, etag = call(client, keys, "POST", path, json=leave)
    assert status == 201, made
    assert made["technician"] == "leave-tech" and made["reason"] == "Vacation"
    listed = call(client, keys, "GET", path, who="readonly")[1]
    assert [t["id"] for t in listed["items"]] == [made["id"]]
    backwards = {**leave, "ends_at": leave["starts_at"], "starts_at": leave["ends_at"]}
    assert call(client, keys, "POST", path, json=backwards)[0] == 422
    assert call(client, keys, "DELETE", f"{path}/{made['id']}", etag='"stale"')[0] == 412
    assert call(client, keys, "DELETE", f"{path}/{made['id']}", etag=etag)[0] == 200
    assert call(client, keys, "GET", path)[1]["items"] == []

    status, holiday, etag = call(client, keys, "POST", "/api/v1/holidays", json={
        "starts_at": monday(0, weeks=8).isoformat(),
        "ends_at": monday(0, weeks=8).replace(hour=23).isoformat(), "reason": "Company day"})
    assert status == 201, holiday
    assert call(client, keys, "DELETE", f"{path}/{holiday['id']}", etag="*")[0] == 404
    status, removed, _ = call(client, keys, "DELETE", f"/api/v1/holidays/{holiday['id']}",
                              etag=etag)
    assert status == 200 and removed["reason"] == "Company day"
    assert holiday["id"] not in [h["id"] for h in call(client, keys, "GET",
                                                       "/api/v1/holidays")[1]["items"]]
    assert audit_entries(db, "holiday", holiday["id"], "holiday.remove")


def test_service_types_are_created_and_edited(client: FlaskClient, keys: Keys) -> None:
    spec = {"slug": "inspection", "name": "Inspection", "duration_minutes": 45,
            "buffer_after_minutes": 15, "travel_minutes": 20, "skills": ["inspect"],
            "arrival_windows": ["08:00-12:00"], "window_capacity": 3, "min_notice_minutes": 60,
            "horizon_days": 21, "remote": False}
    status, made, etag = call(client, keys, "POST", "/api/v1/service-types", json=spec)
    assert status == 201, made
    assert {k: made[k] for k in spec} == spec and made["active"] is True
    assert call(client, keys, "POST", "/api/v1/service-types", json=spec)[0] == 409
    assert call(client, keys, "POST", "/api/v1/service-types",
                json={**spec, "slug": "x2", "arrival_windows": ["12:00-08:00"]})[0] == 422
    path = "/api/v1/service-types/inspection"
    status, edited, _ = call(client, keys, "PATCH", path, etag=etag,
                             json={"duration_minutes": 30, "remote": True, "active": False})
    assert status == 200, edited
    assert (edited["duration_minutes"], edited["remote"], edited["active"],
            edited["buffer_after_minutes"]) == (30, True, False, 15)
    assert call(client, keys, "PATCH", path, etag=etag, json={"name": "X"})[0] == 412
    assert call(client, keys, "PATCH", path, etag="*", json={"name": None})[0] == 422


def test_team_travel_and_the_day_with_drives(client: FlaskClient, keys: Keys) -> None:
    status, team, etag = call(client, keys, "POST", "/api/v1/teams",
                              json={"slug": "drivers", "name": "Drivers"})
    assert status == 201, team
    assert (team["road_factor"], team["speed_kmh"]) == (1.3, 40.0)
    status, team, _ = call(client, keys, "PUT", "/api/v1/teams/drivers/travel", etag=etag,
                           json={"road_factor": 1.5, "speed_kmh": 30})
    assert status == 200 and (team["road_factor"], team["speed_kmh"]) == (1.5, 30.0)
    assert call(client, keys, "PUT", "/api/v1/teams/drivers/travel", etag="*",
                json={"speed_kmh": 0})[0] == 422
    status, area, _ = call(client, keys, "POST", "/api/v1/teams/drivers/areas", json={
        "country": "DE", "centre": {"latitude": 52.52, "longitude": 13.40}, "radius_km": 40})
    assert status == 201 and area["team"] == "drivers" and area["radius_km"] == 40

    technician(client, keys, "day-tech", "day-skill")
    berlin = customer_site(client, keys, "Alexanderplatz 1, 10178 Berlin",
                           latitude=52.5219, longitude=13.4132)
    potsdam = customer_site(client, keys, "Breite Str. 1, 14467 Potsdam",
                            latitude=52.3989, longitude=13.0657)
    first = {"job_id": job_at(client, keys, *berlin), "technician": "day-tech",
             "starts_at": monday(8).isoformat(), "duration_minutes": 60}
    assert call(client, keys, "POST", "/api/v1/appointments", json=first)[0] == 201
    too_soon = {"job_id": job_at(client, keys, *potsdam), "technician": "day-tech",
                "starts_at": monday(9, 10).isoformat(), "duration_minutes": 60}
    status, problem, _ = call(client, keys, "POST", "/api/v1/appointments", json={
        **too_soon, "force": {"reason": "travel cannot be forced"}})
    assert status == 409, problem
    status, second, _ = call(client, keys, "POST", "/api/v1/appointments",
                             json={**too_soon, "starts_at": monday(11).isoformat()})
    assert status == 201, second
    status, plan, _ = call(client, keys, "GET", "/api/v1/technicians/day-tech/day",
                           who="readonly", query_string={"date": monday(0).date().isoformat()})
    assert status == 200, plan
    assert [v["job_id"] for v in plan["visits"]] == [first["job_id"], too_soon["job_id"]]
    assert plan["visits"][0]["travel_before"] is None
    drive = plan["visits"][1]["travel_before"]
    assert drive["computed"] and 20 < drive["distance_km"] < 40
    assert 30 < drive["minutes"] < 90 and drive["gap_minutes"] == 120 and drive["enough"]
    assert plan["visits"][1]["starts_at"] == monday(11).isoformat()
    assert plan["technician_timezone"] == "Europe/Berlin" and plan["timezone"] == "Europe/Berlin"
    assert call(client, keys, "GET", "/api/v1/technicians/day-tech/day")[0] == 422
