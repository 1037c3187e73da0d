"""The `fieldcal` command on a scratch instance (SQLite and PostgreSQL)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from live import AUDIT_KEY, create_postgres_database, drop_postgres_database, postgres_problem
from sqlalchemy import func, select, update

from server import directory
from server.cli import cli
from server.config import load_settings
from server.db import get_database
from server.models import (
    Appointment,
    AuditEntry,
    CalendarItem,
    Credential,
    Customer,
    Job,
    Role,
    Site,
    User,
    WorkingHours,
)

BIN = Path(sys.executable).parent


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def instance(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Environment for one fresh instance; FIELDCAL_SECRET_KEYS deliberately unset."""
    env: dict[str, Any] = {
        "FIELDCAL_INSTANCE": str(tmp_path / "instance"),
        "FIELDCAL_SECRET_KEYS": None,
        "FIELDCAL_AUDIT_KEYS": AUDIT_KEY,
        "FIELDCAL_BASE_URL": "http://127.0.0.1:8000",
        "FIELDCAL_DATABASE_URL": None,
    }
    if request.param == "sqlite":
        yield env
        return
    problem = postgres_problem()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem} (CI=true: the PostgreSQL tests must run)", pytrace=False)
        pytest.skip(problem)
    name, url = create_postgres_database()
    try:
        yield {**env, "FIELDCAL_DATABASE_URL": url}
    finally:
        get_database(url).dispose()
        drop_postgres_database(name)


def database_url(env: dict[str, Any]) -> str:
    return env["FIELDCAL_DATABASE_URL"] or (
        f"sqlite:///{Path(env['FIELDCAL_INSTANCE']).resolve() / 'fieldcal.sqlite3'}"
    )


def run(env: dict[str, Any], *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == code, (
        f"fieldcal {' '.join(args)} -> {result.exit_code}\nstdout: {result.stdout}\n"
        f"stderr: {result.stderr}"
    )
    return result


def run_json(env: dict[str, Any], *args: str) -> Any:
    return json.loads(run(env, *args, "--json").stdout)


def counts(env: dict[str, Any]) -> dict[str, int]:
    with get_database(database_url(env)).read() as session:
        return {
            model.__name__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (User, Customer, Site, Job, Appointment, CalendarItem)
        }


def authenticates(env: dict[str, Any], login: str, password: str) -> bool:
    with get_database(database_url(env)).write() as session:
        return directory.authenticate(session, login, password) is not None


def test_init_demo_prints_accounts_that_log_in(instance: dict[str, Any]) -> None:
    accounts = run_json(instance, "init", "--demo")
    assert all(set(a) == {"login", "password", "role"} for a in accounts)
    roles = [a["role"] for a in accounts]
    assert roles.count(Role.TECHNICIAN) >= 3 and roles.count(Role.DISPATCHER) == 1
    for account in accounts:
        assert authenticates(instance, account["login"], account["password"])
    assert not authenticates(instance, accounts[0]["login"], accounts[1]["password"])

    env_file = Path(instance["FIELDCAL_INSTANCE"]) / "fieldcal.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    (key,) = re.findall(r"^FIELDCAL_SECRET_KEYS=(\S+)$", env_file.read_text(), re.MULTILINE)
    assert len(key) >= 60

    with get_database(database_url(instance)).read() as session:
        technicians = session.scalars(select(User).where(User.role == Role.TECHNICIAN)).all()
        assert len({t.timezone for t in technicians}) >= 2
        assert all(t.skills and t.teams for t in technicians)
        hours = session.scalars(select(WorkingHours)).all()
        assert {h.technician_id for h in hours} == {t.id for t in technicians}
        customers = session.scalars(select(Customer)).all()
        assert len(customers) == 5
        assert all(c.sites and c.sites[0].compressor_serial for c in customers)
        appointments = session.scalars(select(Appointment)).all()
        statuses = {a.status for a in appointments}
        assert {"confirmed", "tentative", "cancelled"} <= statuses
        assert any(a.technician_id is None for a in appointments)
        assert any(a.window_start is not None for a in appointments)
        span = max(a.starts_at for a in appointments) - min(a.starts_at for a in appointments)
        assert span.days >= 12
        personal = session.scalars(
            select(CalendarItem).where(CalendarItem.appointment_id.is_(None))
        ).all()
        weekly = [i for i in personal if "RRULE:FREQ=WEEKLY" in i.text]
        assert len(weekly) == len(technicians) and len(personal) >= 2 * len(technicians)


def test_init_demo_twice_adds_nothing(instance: dict[str, Any]) -> None:
    first = run_json(instance, "init", "--demo")
    before = counts(instance)
    key_file = (Path(instance["FIELDCAL_INSTANCE"]) / "fieldcal.env").read_text()
    second = run_json(instance, "init", "--demo")
    assert counts(instance) == before
    assert (Path(instance["FIELDCAL_INSTANCE"]) / "fieldcal.env").read_text() == key_file
    assert [a["login"] for a in second] == [a["login"] for a in first]
    for old, new in zip(first, second, strict=True):
        assert old["password"] != new["password"]
        assert authenticates(instance, new["login"], new["password"])
        assert not authenticates(instance, old["login"], old["password"]), "replaced, not piled up"
    with get_database(database_url(instance)).read() as session:
        live = session.scalars(select(Credential).where(Credential.revoked_at.is_(None))).all()
        assert len(live) == len(second), "one demo password per account, however often it runs"
    text = run(instance, "init", "--demo").stdout
    assert "already there" in text and "/dav/" in text


def test_serve_refuses_without_a_business_phone_or_email(tmp_path: Path) -> None:
    env = {"FIELDCAL_INSTANCE": str(tmp_path / "instance"), "FIELDCAL_SECRET_KEYS": "k" * 64,
           "FIELDCAL_AUDIT_KEYS": AUDIT_KEY, "FIELDCAL_DATABASE_URL": None, "FIELDCAL_BUSINESS_PHONE": None,
           "FIELDCAL_BUSINESS_EMAIL": None, "FIELDCAL_MANAGE_CUTOFF_HOURS": None}
    run(env, "init")
    result = run(env, "serve", "--port", str(free_port()), code=1)
    assert "FIELDCAL_BUSINESS_PHONE or FIELDCAL_BUSINESS_EMAIL" in result.stderr
    assert "Traceback" not in result.output


def test_serve_refuses_without_secret_keys(tmp_path: Path) -> None:
    env = {"FIELDCAL_INSTANCE": str(tmp_path / "instance"), "FIELDCAL_SECRET_KEYS": None,
           "FIELDCAL_DATABASE_URL": None}
    run(env, "init")
    result = run(env, "serve", "--port", str(free_port()), code=1)
    assert "FIELDCAL_SECRET_KEYS is not set" in result.stderr
    assert "Traceback" not in result.output


def test_dispatcher_desk(instance: dict[str, Any]) -> None:
    run(instance, "init")
    tech = run_json(instance, "technician", "add", "bob", "--name", "Bob Brown",
                    "--email", "bob@example.com", "--tz", "Europe/Berlin",
                    "--skill", "piston", "--skill", "electrical,dryers")
    assert tech["login"] == "bob" and tech["skills"] == ["dryers", "electrical", "piston"]
    run(instance, "technician", "add", "eve", "--name", "Eve", "--email", "eve@example.com",
        "--tz", "America/New_York")
    assert run_json(instance, "team", "add", "north", "--name", "North")["slug"] == "north"
    assert run_json(instance, "team", "member", "add", "north", "bob")["members"] == ["bob"]
    customer = run_json(instance, "customer", "add", "Acme Air", "--email", "ops@acme.example",
                        "--tz", "Europe/Berlin", "--address", "Hauptstr. 1, Berlin",
                        "--make", "Kaeser", "--model", "SK 22", "--serial", "S-1")
    assert customer["sites"][0]["compressor_serial"] == "S-1"
    assert [c["id"] for c in run_json(instance, "customer", "list")] == [customer["id"]]
    job = run_json(instance, "job", "add", str(customer["id"]), "Annual service",
                   "--problem", "Yearly check", "--priority", "high")
    assert job["status"] == "new" and job["priority"] == "high"

    # Times without an offset are read in the technician's zone (CET = UTC+1 in March).
    first = run_json(instance, "appointment", "add", str(job["id"]), "--technician", "bob",
                     "--start", "2030-03-04T09:00", "--duration", "2h", "--window", "2h")
    assert (first["starts_at"], first["ends_at"]) == ("2030-03-04T08:00:00Z", "2030-03-04T10:00:00Z")
    assert first["window_end"] == "2030-03-04T10:00:00Z"
    second = run_json(instance, "appointment", "add", str(job["id"]), "--technician", "bob",
                      "--start", "2030-03-04T11:00:00+01:00", "--end", "2030-03-04T12:00+01:00")

    refused = run(instance, "appointment", "move", str(second["id"]),
                  "--start", "2030-03-04T10:00", code=1)
    assert "slot is taken" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    unchanged = run_json(instance, "appointment", "show", str(second["id"]))
    assert unchanged == second

    moved = run_json(instance, "appointment", "move", str(second["id"]),
                     "--start", "2030-03-04T13:00")
    assert (moved["starts_at"], moved["ends_at"]) == ("2030-03-04T12:00:00Z", "2030-03-04T13:00:00Z")
    assert moved["sequence"] == 1
    assert run_json(instance, "appointment", "reassign", str(second["id"]),
                    "--unassign")["technician"] is None
    assert run_json(instance, "appointment", "reassign", str(second["id"]),
                    "eve")["technician"] == "eve"
    cancelled = run_json(instance, "appointment", "cancel", str(first["id"]),
                         "--reason", "Customer closed")
    assert cancelled["status"] == "cancelled"

    listed = run_json(instance, "appointment", "list", "--technician", "bob")
    assert [a["id"] for a in listed] == [first["id"]]
    assert {a["id"] for a in run_json(instance, "appointment", "list", "--customer",
                                      str(customer["id"]))} == {first["id"], second["id"]}
    text = run(instance, "appointment", "list").stdout
    assert "Europe/Berlin" in text and "America/New_York" in text

    trail = run_json(instance, "audit", "show", str(second["id"]))
    assert [e["action"] for e in trail] == [
        "appointment.book", "appointment.reschedule", "appointment.reassign",
        "appointment.reassign",
    ]
    assert all(e["channel"] == "cli" and e["id"] for e in trail)
    assert trail[1]["before"]["starts_at"] != trail[1]["after"]["starts_at"]
    assert "appointment.reschedule" in run(instance, "audit", "show", str(second["id"])).stdout


def test_app_passwords(instance: dict[str, Any]) -> None:
    run(instance, "init")
    run(instance, "technician", "add", "ann", "--name", "Ann", "--email", "ann@example.com",
        "--tz", "UTC")
    plain = run(instance, "password", "new", "ann", "--label", "iphone")
    password = plain.stdout.strip()
    assert authenticates(instance, "ann", password)
    issued = run_json(instance, "password", "new", "ann", "--label", "davx5")
    assert authenticates(instance, "ann", issued["password"])
    listed = run_json(instance, "password", "list", "ann")
    assert [c["label"] for c in listed] == ["iphone", "davx5"]
    assert all("password" not in c for c in listed)
    revoked = run_json(instance, "password", "revoke", str(issued["id"]))
    assert revoked["revoked_at"] is not None
    assert not authenticates(instance, "ann", issued["password"])
    assert authenticates(instance, "ann", password)


def test_domain_errors_are_one_clear_line(instance: dict[str, Any]) -> None:
    run(instance, "init")
    before = counts(instance)
    for args, message in [
        (("job", "add", "999", "Fix"), "No customer #999."),
        (("technician", "add", "zed", "--name", "Zed", "--email", "zed@example.com",
          "--tz", "Mars/Olympus"), "Unknown time zone"),
        (("technician", "add", "zed", "--name", "Zed", "--email", "zed@example.com",
          "--tz", "UTC", "--team", "nope"), "No team 'nope'."),
        (("appointment", "move", "42", "--start", "2030-01-01T10:00"), "No appointment #42."),
        (("password", "revoke", "7"), "No app password #7."),
    ]:
        result = run(instance, *args, code=1)
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert counts(instance) == before, "a refused command left rows behind"


def test_audit_export_and_verify(instance: dict[str, Any]) -> None:
    run(instance, "init")
    run(instance, "customer", "add", "Acme")
    run(instance, "customer", "add", "Globex")
    assert run_json(instance, "audit", "verify")["ok"] is True
    assert "holds" in run(instance, "audit", "verify").stdout

    lines = run(instance, "audit", "export").stdout.splitlines()
    entries = [json.loads(line) for line in lines]
    assert len(entries) >= 4 and all(e["hash"] and e["prev_hash"] for e in entries)
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(entries))

    victim = entries[1]["id"]
    with get_database(database_url(instance)).write() as session:
        session.execute(update(AuditEntry).where(AuditEntry.id == victim).values(actor="mallory"))
    result = run(instance, "audit", "verify", "--json", code=1)
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert {b["entry_id"] for b in report["breaks"]} == {victim}
    assert f"entry #{victim}" in run(instance, "audit", "verify", code=1).stderr


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").exists() and "zombie" not in Path(
        f"/proc/{pid}/status").read_text()


@pytest.mark.slow
def test_serve_starts_web_and_worker_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDCAL_")}
    env.update(FIELDCAL_INSTANCE=str(tmp_path / "instance"), FIELDCAL_SECRET_KEYS="k" * 64,
               FIELDCAL_AUDIT_KEYS=AUDIT_KEY,
               FIELDCAL_BUSINESS_EMAIL="office@example.test")
    process = subprocess.Popen(
        [str(BIN / "fieldcal"), "serve", "--port", str(port), "--workers", "2"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # so that cleanup can reach the children too
    )
    lines: list[str] = []
    assert process.stdout is not None
    stdout = process.stdout
    reader = threading.Thread(target=lambda: lines.extend(stdout), daemon=True)
    reader.start()
    try:
        assert wait_for(f"http://127.0.0.1:{port}/healthz", 60) == 200
        deadline = time.monotonic() + 20
        while not any("Press Ctrl-C" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.1)
        output = "".join(lines)
        assert f"http://127.0.0.1:{port}/dav/" in output
        served = load_settings({"FIELDCAL_INSTANCE": str(tmp_path / "instance")})
        assert served.base_url == f"http://127.0.0.1:{port}", "CLI links follow the server"
        worker_pid = int(re.search(r"outbox worker pid (\d+)", output)[1])  # type: ignore[index]
        assert pid_alive(worker_pid)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=45) == 0
        assert not pid_alive(worker_pid)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # leftovers only; normally all are gone
        process.wait()
        reader.join(timeout=5)
