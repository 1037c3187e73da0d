"""iCloud's CalDAV, played by a stock Radicale on loopback: visits are written as calendar
objects, moved and removed with the visit; read back with the `caldav` client library and the
strict `ical` parser. A retry after a lost answer overwrites the same object."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from caldav.calendarobjectresource import Event
from caldav.collection import Calendar
from caldav.davclient import DAVClient
from davkit import synchronous
from feedkit import strict_parse
from icalkit import prop_int
from integrationkit import add, drain, run, worker
from live import free_port
from mailkit import Clock, add_customer, add_technician, book, domain

from server import scheduling
from server.db import Database

USER = "anna@icloud.example"


@pytest.fixture(scope="module")
def radicale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A stock Radicale (multifilesystem, htpasswd) on a free loopback port."""
    work = tmp_path_factory.mktemp("remote-caldav")
    password = secrets.token_urlsafe(12)
    (work / "users").write_text(f"{USER}:{password}\n", encoding="utf-8")
    config = work / "config"
    config.write_text(
        f"[auth]\ntype = htpasswd\nhtpasswd_filename = {work / 'users'}\n"
        "htpasswd_encryption = plain\n\n[rights]\ntype = owner_only\n\n"
        f"[storage]\nfilesystem_folder = {work / 'collections'}\n\n"
        f"[server]\nhosts = 127.0.0.1:{(port := free_port())}\n",
        encoding="utf-8",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "radicale", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                DAVClient(url, username=USER, password=password).principal()
                break
            except Exception:  # noqa: BLE001 - still starting
                time.sleep(0.1)
        yield url, password
    finally:
        process.terminate()
        process.wait(timeout=10)


pytestmark = pytest.mark.usefixtures("fresh_integrations")  # each test connects its own


def raw(event: Event, password: str) -> bytes:
    """The stored bytes, as the server holds them (the client library normalises line ends)."""
    answer = httpx.get(str(event.url), auth=(USER, password))
    assert answer.status_code == 200
    return answer.content


def remote_calendar(url: str, password: str, name: str) -> Calendar:
    principal = DAVClient(url, username=USER, password=password).principal()
    return synchronous(principal.make_calendar(name=name, cal_id=name))


def test_visits_land_in_the_remote_calendar(
    platform_env: dict[str, str], platform_db: Database, radicale: tuple[str, str], tmp_path: Path
) -> None:
    url, password = radicale
    calendar = remote_calendar(url, password, f"visits-{secrets.token_hex(3)}")
    add(
        platform_env,
        "icloud",
        "--set",
        f"base_url={url}",
        "--set",
        f"calendar_url={calendar.url}",
        "--set",
        f"username={USER}",
        "--secret",
        f"app_password={password}",
    )
    day = dt.datetime(2031, 3, 30, 7, tzinfo=dt.UTC)
    with domain(platform_db) as ctx:
        appointment = book(ctx, add_customer(ctx, "Apple Kompressoren"), add_technician(ctx, "Per"), day)
        appointment_id, uid = appointment.id, appointment.uid
    clock = Clock()
    drain(worker(platform_db, clock))
    [event] = synchronous(calendar.events())
    [vevent] = strict_parse(raw(event, password)).walk("VEVENT")
    assert str(vevent["uid"]) == uid and str(vevent["summary"]) == "Annual service — Apple Kompressoren"
    assert vevent.decoded("dtstart") == day and vevent.decoded("dtend") == day + dt.timedelta(hours=2)
    with domain(platform_db) as ctx:
        scheduling.reschedule(
            ctx,
            scheduling.get_appointment(ctx.session, appointment_id),
            day + dt.timedelta(days=1),
            day + dt.timedelta(days=1, hours=3),
        )
    drain(worker(platform_db, clock))
    [event] = synchronous(calendar.events())
    [vevent] = strict_parse(raw(event, password)).walk("VEVENT")
    assert vevent.decoded("dtstart") == day + dt.timedelta(days=1) and prop_int(vevent, "sequence") == 1
    with domain(platform_db) as ctx:
        scheduling.cancel(ctx, scheduling.get_appointment(ctx.session, appointment_id))
    drain(worker(platform_db, clock))
    assert calendar.events() == []


def test_wrong_password_asks_for_reconnect(
    platform_env: dict[str, str], platform_db: Database, radicale: tuple[str, str]
) -> None:
    url, password = radicale
    calendar = remote_calendar(url, password, f"locked-{secrets.token_hex(3)}")
    integration_id = add(
        platform_env,
        "icloud",
        "--set",
        f"base_url={url}",
        "--set",
        f"calendar_url={calendar.url}",
        "--set",
        f"username={USER}",
        "--secret",
        "app_password=wrong",
    )
    with domain(platform_db) as ctx:
        book(
            ctx,
            add_customer(ctx, "Locked Ltd"),
            add_technician(ctx, "Quin"),
            dt.datetime(2031, 4, 2, 8, tzinfo=dt.UTC),
        )
    drain(worker(platform_db, Clock()))


    shown = json.loads(run(platform_env, "integration", "show", str(integration_id), "--json"))
    assert shown["status"] == "needs_reconnect" and shown["pending"] == 1
    assert calendar.events() == []
