"""/api/v1/reports and /api/v1/exports over the hand-computed fixture, and `fieldcal export`."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import icalendar
import pytest
from apikit import Keys, make_app, make_keys
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient
from live import AUDIT_KEY
from reportkit import Fixture, build
from seeding import domain
from sqlalchemy import func, select

from server import directory
from server.actors import Actor
from server.cli import cli
from server.db import Database
from server.exports import neutralise
from server.exports.files import FOLDER, ExportWriter
from server.models import Appointment, AuditEntry, Customer
from server.worker import Worker

WEEK = {"from": "2031-03-24T00:00:00Z", "to": "2031-03-31T00:00:00Z"}
HOSTILE = "=HYPERLINK(\"http://evil.example\",\"x\")"


@pytest.fixture(scope="module")
def fixture(database_url: str) -> Fixture:
    built = build(database_url)
    db = Database(database_url)
    with domain(db, Actor("dana", "cli", "dispatcher")) as ctx:
        directory.add_customer(ctx, HOSTILE, email="@boss.example.test", phone="+1 555 0100",
                               timezone="Europe/Berlin")
        directory.add_customer(ctx, 'Müller, "Druckluft" GmbH', email="m@example.test")
    db.dispose()
    return built


@pytest.fixture(scope="module")
def db(fixture: Fixture) -> Iterator[Database]:
    database = Database(fixture.url)
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def app(fixture: Fixture, tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return make_app(fixture.url, tmp_path_factory.mktemp("api-reports"))


@pytest.fixture(scope="module")
def keys(db: Database) -> Keys:
    return make_keys(db)


@pytest.fixture()
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as client:
        yield client


def test_a_report_answers_the_core_numbers(client: FlaskClient, keys: Keys) -> None:
    response = client.get("/api/v1/reports/utilisation", query_string=WEEK,
                          headers=keys.headers("readonly"))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["columns"] == ["technician", "booked_hours", "travel_hours", "working_hours",
                               "utilisation"]
    assert body["rows"] == [["anna", 8.0, 2.5, 31.0, 0.3387], ["bob", 2.0, 0.5, 32.0, 0.0781]]
    assert body["start"].startswith("2031-03-24T00:00:00") and body["timezone"] == "Europe/Berlin"


def test_dates_are_whole_days_in_the_business_zone_and_filters_apply(client: FlaskClient,
                                                                     keys: Keys) -> None:
    # 2031-03-24 .. 2031-03-30 in Berlin: Sunday 23:00 UTC to Sunday 22:00 UTC
    response = client.get("/api/v1/reports/booking-hours",
                          query_string={"from": "2031-03-24", "to": "2031-03-30", "team": "berlin"},
                          headers=keys.headers("integration"))
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["start"] == "2031-03-23T23:00:00Z" or body["start"].startswith("2031-03-23T23:00:00")
    assert body["rows"] == [["Mon", 9, 1], ["Wed", 9, 1], ["Thu", 14, 1], ["Sat", 10, 1], ["Sun", 3, 1]]


@pytest.mark.parametrize(("path", "query", "status", "says"), [
    ("/api/v1/reports/profit", WEEK, 404, "visits"),
    ("/api/v1/reports/visits", {"from": "2031-03-24"}, 422, "to"),
    ("/api/v1/reports/visits", {"from": "2031-03-24", "to": "2031-03-01"}, 422, "end after"),
    ("/api/v1/reports/visits", {"from": "2020-01-01", "to": "2031-01-01"}, 422, "two years"),
    ("/api/v1/reports/visits", {**WEEK, "team": "nowhere"}, 404, "nowhere"),
    ("/api/v1/exports/jobs", {"format": "ics"}, 422, "only visits"),
    ("/api/v1/exports/jobs", {"format": "xlsx"}, 422, "format"),
    ("/api/v1/exports/payroll", {"format": "csv"}, 404, "visits, jobs"),
])
def test_bad_requests_say_what_to_fix(client: FlaskClient, keys: Keys, path: str,
                                      query: dict[str, str], status: int, says: str) -> None:
    response = client.get(path, query_string=query, headers=keys.headers("dispatcher"))
    assert response.status_code == status, response.get_json()
    assert response.content_type == "application/problem+json"
    assert says in response.get_json()["detail"]


def _csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def test_csv_export_is_rfc4180_formula_safe_and_audited(client: FlaskClient, keys: Keys,
                                                         db: Database) -> None:
    with db.read() as session:
        before = session.scalar(select(func.count()).where(AuditEntry.action == "export.run"))
        customers = session.scalar(select(func.count(Customer.id)))
    response = client.get("/api/v1/exports/customers", query_string={"format": "csv"},
                          headers=keys.headers("integration"))
    assert response.status_code == 200
    assert response.content_type == "text/csv; charset=utf-8"
    assert response.headers["Content-Disposition"] == 'attachment; filename="fieldcal-customers.csv"'
    data = response.get_data()
    assert not data.startswith(b"\xef\xbb\xbf")
    assert b"\r\n" in data and data.endswith(b"\r\n")
    rows = _csv(data)
    assert rows[0] == ["id", "name", "email", "phone", "timezone", "sites", "created_at"]
    assert customers is not None
    assert len(rows) == customers + 1
    by_name = {row[1]: row for row in rows[1:]}
    hostile = by_name["'" + HOSTILE]  # neutralised: a spreadsheet shows it as text
    assert hostile[2] == "'@boss.example.test" and hostile[3] == "'+1 555 0100"
    assert 'Müller, "Druckluft" GmbH' in by_name  # quoted, embedded quotes doubled
    assert b'"M\xc3\xbcller, ""Druckluft"" GmbH"' in data
    with db.read() as session:
        entries = list(session.scalars(select(AuditEntry).where(AuditEntry.action == "export.run")
                                       .order_by(AuditEntry.id)))
    assert len(entries) == (before or 0) + 1
    assert entries[-1].channel == "api" and entries[-1].entity_id == "customers"
    assert entries[-1].after == {"kind": "customers", "format": "csv", "from": None, "to": None,
                                 "bom": False}


def test_bom_for_excel(client: FlaskClient, keys: Keys) -> None:
    response = client.get("/api/v1/exports/jobs", query_string={"format": "csv", "bom": "true"},
                          headers=keys.headers("dispatcher"))
    assert response.get_data().startswith(b"\xef\xbb\xbfid,customer_id,customer,title,")


def test_ndjson_export_of_visits_in_a_range(client: FlaskClient, keys: Keys, fixture: Fixture) -> None:
    response = client.get("/api/v1/exports/visits", query_string={"format": "ndjson", **WEEK},
                          headers=keys.headers("readonly"))
    assert response.status_code == 200 and response.content_type == "application/x-ndjson"
    lines = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    # A1 A2 (cancelled, still exported) A3 A4 A5 A6 B1 U1, by start
    assert [line["id"] for line in lines] == [fixture.appointments[n] for n in
                                              ("A1", "B1", "A2", "A3", "U1", "A5", "A6", "A4")]
    b1 = lines[1]
    assert b1["technician"] == "bob" and b1["starts_at"] == "2031-03-25T03:00:00+00:00"
    assert b1["window_start"] == "2031-03-25T02:30:00+00:00" and b1["service_type"] == "repair"
    assert lines[2]["status"] == "cancelled"


def test_ics_export_of_visits(client: FlaskClient, keys: Keys, fixture: Fixture, db: Database) -> None:
    response = client.get("/api/v1/exports/visits", query_string={"format": "ics", **WEEK},
                          headers=keys.headers("dispatcher"))
    assert response.content_type == "text/calendar; charset=utf-8"
    calendar = icalendar.Calendar.from_ical(response.get_data())
    events = calendar.walk("VEVENT")
    with db.read() as session:
        uids = {session.get(Appointment, fixture.appointments[n]).uid  # type: ignore[union-attr]
                for n in ("A1", "A2", "A3", "A4", "A5", "A6", "B1", "U1")}
    assert {str(e["UID"]) for e in events} == uids
    assert sorted(str(e["STATUS"]) for e in events).count("CANCELLED") == 1


def test_audit_export_needs_the_audit_right(client: FlaskClient, keys: Keys) -> None:
    refused = client.get("/api/v1/exports/audit", query_string={"format": "ndjson"},
                         headers=keys.headers("integration"))
    assert refused.status_code == 403
    allowed = client.get("/api/v1/exports/audit", query_string={"format": "ndjson"},
                         headers=keys.headers("readonly"))
    lines = allowed.get_data(as_text=True).splitlines()
    assert json.loads(lines[0])["id"] == 1 and json.loads(lines[-1])["action"] == "export.run"


def test_large_exports_run_in_the_background(fixture: Fixture, keys: Keys, db: Database,
                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    instance = tmp_path_factory.mktemp("api-exports-background")
    app = make_app(fixture.url, instance, FIELDCAL_EXPORT_INLINE_ROWS="3")
    with app.test_client() as client, db.read() as session:
        visits = session.scalar(select(func.count(Appointment.id)))
        response = client.get("/api/v1/exports/visits", query_string={"format": "csv"},
                              headers=keys.headers("integration"))
        assert response.status_code == 202, response.get_json()
        queued = response.get_json()
        assert queued["status"] == "waiting" and queued["rows"] == visits
        assert response.headers["Location"] == queued["download"]
        download = queued["download"].removeprefix("http://localhost")
        waiting = client.get(download, headers=keys.headers("readonly"))
        assert waiting.status_code == 202 and waiting.headers["Retry-After"] == "5"
        assert client.get(download).status_code == 401
        writer = ExportWriter(db, instance / FOLDER, "dispatch@example.test")
        assert Worker(db, handlers=writer.handlers()).run_once().sent == 1
        ready = client.get(download, headers=keys.headers("integration"))
        assert ready.status_code == 200 and ready.content_type == "text/csv; charset=utf-8"
        rows = _csv(ready.get_data())
        assert rows[0][:3] == ["id", "uid", "job_id"] and len(rows) == visits + 1
        audit_export = client.get("/api/v1/exports/audit", query_string={"format": "ndjson"},
                                  headers=keys.headers("readonly")).get_json()
        refused = client.get(audit_export["download"].removeprefix("http://localhost"),
                             headers=keys.headers("integration"))
        assert refused.status_code == 403
        unknown = client.get("/api/v1/exports/files/AAAAAAAAAAAAAAAAAAAAAA", headers=keys.headers("readonly"))
        assert unknown.status_code == 404


def test_neutralise() -> None:
    assert [neutralise(v) for v in ("=1+1", "+49", "-2", "@x", "\tx", "\rx", "ok", 5, None)] == [
        "'=1+1", "'+49", "'-2", "'@x", "'\tx", "'\rx", "ok", 5, None]


def test_cli_export_writes_a_file_only_when_complete(fixture: Fixture, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIELDCAL_DATABASE_URL", fixture.url)
    monkeypatch.setenv("FIELDCAL_INSTANCE", str(tmp_path))
    monkeypatch.setenv("FIELDCAL_AUDIT_KEYS", AUDIT_KEY)
    monkeypatch.setenv("FIELDCAL_SECRET_KEYS", "a-test-secret-key-of-enough-length")
    monkeypatch.setenv("FIELDCAL_BUSINESS_PHONE", "+49 30 555 0100")
    monkeypatch.setenv("FIELDCAL_TIMEZONE", "Europe/Berlin")
    target = tmp_path / "jobs.csv"
    result = CliRunner().invoke(cli, ["export", "jobs", "--format", "csv", "--from", "2031-03-24",
                                      "--to", "2031-03-30", "--output", str(target), "--bom"])
    assert result.exit_code == 0, result.output
    data = target.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    rows = _csv(data.removeprefix(b"\xef\xbb\xbf"))
    # the fixture's six jobs received that week (Berlin days): J1 J2 J4 J5 JB1 and the waiting one
    assert sorted(row[3] for row in rows[1:]) == ["Annual service", "Late shift", "Leak", "Motor",
                                                  "Night check", "Waiting"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".part")) == []
    refused = CliRunner().invoke(cli, ["export", "customers", "--format", "ics"])
    assert refused.exit_code == 1 and "only visits" in refused.output
