"""`fieldcal technician hours|area|timeoff`, `service-type`, `holiday`: what a business runs on."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from server.cli import cli
from server.db import Database
from server.migrate import upgrade
from server.scheduling import booking
from server.scheduling.areas import area_of_address
from server.scheduling.availability import free_slots


@pytest.fixture()
def env(database_url: str, tmp_path: Path) -> dict[str, Any]:
    upgrade(Database(database_url))
    return {"FIELDCAL_INSTANCE": str(tmp_path), "FIELDCAL_DATABASE_URL": database_url,
            "FIELDCAL_SECRET_KEYS": None, "FIELDCAL_TIMEZONE": "Europe/Berlin"}


def run(env: dict[str, Any], *args: str, ok: bool = True) -> Result:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert (result.exit_code == 0) is ok, result.output
    return result


def as_json(env: dict[str, Any], *args: str) -> Any:
    return json.loads(run(env, *args, "--json").output)


def test_working_hours_areas_and_time_off(env: dict[str, Any]) -> None:
    inactive = as_json(env, "technician", "add", "ina", "--name", "Ina Aus", "--email",
                       "ina@example.test", "--tz", "Europe/Berlin", "--inactive")
    assert inactive["active"] is False
    assert as_json(env, "technician", "edit", "ina", "--active")["active"] is True
    run(env, "team", "add", "hamburg", "--name", "Hamburg crew")
    run(env, "technician", "add", "hein", "--name", "Hein Mück", "--email", "hein@example.test",
        "--tz", "Europe/Berlin", "--team", "hamburg", "--skill", "screw")
    hours = as_json(env, "technician", "hours", "hein", "--day", "mon-fri", "--from", "08:00",
                    "--to", "16:00")
    assert [(h["weekday"], h["starts"], h["ends"]) for h in hours][:2] == [
        ("mon", "08:00", "16:00"), ("tue", "08:00", "16:00")]
    assert len(hours) == 5 and hours[0]["timezone"] == "Europe/Berlin"
    hours = as_json(env, "technician", "hours", "hein", "--day", "sat", "--span", "09:00-12:00",
                    "--span", "13:00-14:00")
    assert len(hours) == 7
    hours = as_json(env, "technician", "hours", "hein", "--day", "fri,sat", "--clear")
    assert {h["weekday"] for h in hours} == {"mon", "tue", "wed", "thu"}
    assert "mon  08:00-16:00  (Europe/Berlin)" in run(env, "technician", "hours", "hein").output
    bad = run(env, "technician", "hours", "hein", "--day", "mon", "--from", "17:00", "--to",
              "08:00", ok=False)
    assert "start first" in bad.output
    assert "not a weekday" in run(env, "technician", "hours", "hein", "--day", "someday",
                                  "--from", "08:00", "--to", "09:00", ok=False).output

    team_areas = as_json(env, "team", "area", "hamburg", "--country", "DE", "--postcode", "20",
                         "--postcode", "22")
    assert [a["postcode_prefix"] for a in team_areas] == ["20", "22"]
    own = as_json(env, "technician", "area", "hein", "--country", "DE", "--centre",
                  "53.55,9.99", "--radius-km", "30")
    assert [a["label"] for a in own] == ["DE 20…", "DE 22…", "within 30 km of 53.5500,9.9900"]
    circle = next(a for a in own if a["radius_km"])
    assert "--country" in run(env, "technician", "area", "hein", "--postcode", "10",
                              ok=False).output
    assert "not LAT,LON" in run(env, "technician", "area", "hein", "--country", "DE",
                                "--centre", "north", "--radius-km", "3", ok=False).output
    left = as_json(env, "technician", "area", "hein", "--remove", str(circle["id"]))
    assert len(left) == 2
    assert "No service area" in run(env, "technician", "area", "hein", "--remove",
                                    str(team_areas[0]["id"]), ok=False).output
    assert "serves every site" in run(env, "technician", "area", "ina").output
    travel = as_json(env, "team", "travel", "hamburg", "--road-factor", "1.5", "--speed-kmh", "30")
    assert (travel["road_factor"], travel["speed_kmh"]) == (1.5, 30.0)

    off = as_json(env, "technician", "timeoff", "hein", "--from", "2031-03-18", "--to",
                  "2031-03-19", "--reason", "Training")
    assert off == [{"id": off[0]["id"], "starts_at": "2031-03-17T23:00:00Z",
                    "ends_at": "2031-03-19T23:00:00Z", "reason": "Training",
                    "timezone": "Europe/Berlin"}]
    assert as_json(env, "technician", "timeoff", "hein", "--remove", str(off[0]["id"])) == []

    service = as_json(env, "service-type", "add", "leak-check", "--name", "Leak check",
                      "--duration", "45", "--buffer-after", "10", "--travel", "20", "--skill",
                      "screw", "--window", "08:00-12:00", "--notice", "0", "--horizon", "60")
    assert service["arrival_windows"] == ["08:00-12:00"] and service["remote"] is False
    edited = as_json(env, "service-type", "edit", "leak-check", "--no-windows", "--remote",
                     "--duration", "30")
    assert (edited["arrival_windows"], edited["remote"], edited["duration_minutes"]) == (
        [], True, 30)
    assert "from 1 to 720" in run(env, "service-type", "edit", "leak-check", "--duration", "0",
                                  ok=False).output
    assert "exists already" in run(env, "service-type", "add", "leak-check", "--name", "X",
                                   "--duration", "10", ok=False).output
    as_json(env, "service-type", "edit", "leak-check", "--on-site")
    listed = as_json(env, "service-type", "list")
    assert [s["slug"] for s in listed] == ["leak-check"]

    holiday = as_json(env, "holiday", "add", "2031-12-25", "--to", "2031-12-26", "--reason",
                      "Christmas")
    assert (holiday["starts_at"], holiday["ends_at"]) == ("2031-12-24T23:00:00Z",
                                                           "2031-12-26T23:00:00Z")
    assert [h["reason"] for h in as_json(env, "holiday", "list")] == ["Christmas"]

    database = Database(env["FIELDCAL_DATABASE_URL"])
    with database.read() as session:
        leak = booking.service_type_by_slug(session, "leak-check")
        now = dt.datetime(2031, 3, 16, 12, tzinfo=dt.UTC)
        hamburg = free_slots(session, leak, start=now, end=now + dt.timedelta(days=7), now=now,
                             area=area_of_address("Große Elbstraße 14, 22767 Hamburg"))
        berlin = free_slots(session, leak, start=now, end=now + dt.timedelta(days=7), now=now,
                            area=area_of_address("Alexanderplatz 1, 10178 Berlin"))
        assert hamburg and not berlin  # hein serves Hamburg only; ina has no hours
        christmas = free_slots(session, leak, start=dt.datetime(2031, 12, 25, tzinfo=dt.UTC),
                               end=dt.datetime(2031, 12, 26, 12, tzinfo=dt.UTC),
                               now=dt.datetime(2031, 12, 20, tzinfo=dt.UTC))
        assert christmas == []
    database.dispose()
    trail = run(env, "audit", "export").output
    for action in ("working_hours.set", "working_hours.clear", "service_area.add",
                   "service_area.remove", "team.travel", "time_off.add", "time_off.remove",
                   "service_type.add", "service_type.edit", "holiday.add", "user.update"):
        assert f'"action": "{action}"' in trail, action
