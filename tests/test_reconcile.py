"""`fieldcal integration reconcile`: a Google calendar that lost an event, holds one twice
and shows another at a stale time is repaired in one run; a second run changes nothing.
Every request is checked against the contract's discovery document."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest
from fake_google import FakeGoogle
from fake_graph import FakeGraph
from integrationkit import add, drain, run, worker
from mailkit import Clock, add_customer, add_technician, book, domain
from platformkit import FakePlatform, fake_platform
from sqlalchemy import select
from test_google_calendar import checked, connect
from test_microsoft_graph import checked as graph_checked
from test_microsoft_graph import connect as connect_graph

from plugins.platforms.microsoft_graph import parse_when as graph_when
from server.db import Database
from server.models import Appointment, AuditEntry, ExternalRef

UID = "fieldcal_uid"


@pytest.fixture()
def google() -> Iterator[tuple[FakeGoogle, FakePlatform]]:
    state = FakeGoogle()
    with fake_platform(state) as platform:
        yield state, platform


pytestmark = pytest.mark.usefixtures("fresh_integrations")  # each test connects its own


def live_events(state: FakeGoogle) -> dict[str, list[dict[str, object]]]:
    by_uid: dict[str, list[dict[str, object]]] = {}
    for event in state.events.values():
        if event.get("status") != "cancelled":
            uid = event["extendedProperties"]["private"][UID]
            by_uid.setdefault(str(uid), []).append(event)
    return by_uid


def test_missing_duplicated_and_stale_events_are_repaired_once(
        platform_env: dict[str, str], platform_db: Database, google: tuple[FakeGoogle, FakePlatform]) -> None:
    state, platform = google
    hook = connect(platform_env, platform)
    day = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).replace(hour=8, minute=0, second=0, microsecond=0)
    with domain(platform_db) as ctx:
        technician = add_technician(ctx, "Rita")
        customer = add_customer(ctx, "Druckluft AG")
        lost, doubled, stale, kept = (
            book(ctx, customer, technician, day + dt.timedelta(hours=2 * i), hours=1) for i in range(4))
        cancelled = book(ctx, customer, technician, day + dt.timedelta(hours=9), hours=1)
        uids = {v.uid: v.id for v in (lost, doubled, stale, kept, cancelled)}
    drain(worker(platform_db, Clock()))
    events = {e["extendedProperties"]["private"][UID]: e for e in state.events.values()}
    assert len(events) == 5
    by_id = {v: u for u, v in uids.items()}

    # the drift: one deleted there, one there twice, one moved there, and a visit
    # cancelled here while the platform was not told (its event still shows)
    state.events.pop(events[by_id[lost.id]]["id"])
    state.events["ev-dup"] = {**events[by_id[doubled.id]], "id": "ev-dup"}
    state.move(events[by_id[stale.id]]["id"], "2031-01-01T09:00:00Z", "2031-01-01T10:00:00Z")
    with platform_db.write() as session:
        row = session.get(Appointment, cancelled.id)
        assert row is not None
        row.status = "cancelled"  # as if its cancel push had been lost
    platform.requests.clear()

    first = json.loads(run(platform_env, "integration", "reconcile", str(hook), "--since",
                           day.date().isoformat(), "--json"))
    assert first["recreated"] == [by_id[lost.id]] and first["updated"] == [by_id[stale.id]]
    assert sorted(first["deleted"]) == sorted(["ev-dup", events[by_id[cancelled.id]]["id"]])
    assert first["unchanged"] == 2  # the duplicated one (after deleting the extra) and the one kept
    assert set(checked(platform)) == {"events.list", "events.insert", "events.patch", "events.delete"}

    now_there = live_events(state)
    assert set(now_there) == {by_id[lost.id], by_id[doubled.id], by_id[stale.id], by_id[kept.id]}
    assert all(len(items) == 1 for items in now_there.values())
    with platform_db.read() as session:
        for uid, items in now_there.items():
            visit = session.get(Appointment, uids[uid])
            assert visit is not None
            start = dt.datetime.fromisoformat(str(items[0]["start"]["dateTime"]))  # type: ignore[index]
            assert start == visit.starts_at
            ref = session.scalars(select(ExternalRef).where(ExternalRef.integration_id == hook,
                                                            ExternalRef.appointment_id == visit.id)).one()
            assert ref.remote_id == items[0]["id"]
        assert session.scalars(select(AuditEntry).where(AuditEntry.action == "integration.reconcile",
                                                        AuditEntry.entity_id == str(hook))).one()
    stale_now = now_there[by_id[stale.id]][0]
    assert stale_now["start"]["dateTime"] != "2031-01-01T09:00:00Z"  # type: ignore[index]

    platform.requests.clear()
    second = json.loads(run(platform_env, "integration", "reconcile", str(hook), "--since",
                            day.date().isoformat(), "--json"))
    assert (second["recreated"], second["deleted"], second["updated"], second["unchanged"]) == ([], [], [], 4)
    assert checked(platform) == ["events.list"]


def test_platforms_that_cannot_list_are_refused_plainly(platform_env: dict[str, str]) -> None:
    hook = add(platform_env, "calendly", "--set", "base_url=http://127.0.0.1:9", "--secret", "signing_key=k")
    said = run(platform_env, "integration", "reconcile", str(hook), code=1)
    assert "cannot list its objects" in said
    said = run(platform_env, "integration", "reconcile", str(hook), "--since", "yesterday", code=2)
    assert "is not a date" in said


def test_a_graph_calendar_is_reconciled_through_its_event_listing(
        platform_env: dict[str, str], platform_db: Database) -> None:
    """The same drift in an Outlook calendar (listed with `$filter` on our UID property,
    two events a page): repaired in one run, every request valid against the contract."""
    state = FakeGraph()
    with fake_platform(state) as platform:
        state.url = platform.url
        hook = connect_graph(platform_env, "microsoft-graph", platform)
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=4)
        day = soon.replace(hour=8, minute=0, second=0, microsecond=0)
        with domain(platform_db) as ctx:
            technician = add_technician(ctx, "Mo", "Europe/London")
            customer = add_customer(ctx, "Outlook Ltd")
            lost, doubled, stale, kept, cancelled = (
                book(ctx, customer, technician, day + dt.timedelta(hours=2 * i), hours=1) for i in range(5))
            ids = {v.uid: v.id for v in (lost, doubled, stale, kept, cancelled)}
        drain(worker(platform_db, Clock()))
        by_uid = {e["singleValueExtendedProperties"][0]["value"]: e for e in state.events.values()}
        assert set(by_uid) == set(ids)
        with state.lock:
            state.events.pop(by_uid[lost.uid]["id"])
            state.events["AAMk-dup="] = {**by_uid[doubled.uid], "id": "AAMk-dup="}
        state.move(by_uid[stale.uid]["id"], "2031-01-01T09:00:00", "2031-01-01T10:00:00", "UTC")
        with platform_db.write() as session:
            row = session.get(Appointment, cancelled.id)
            assert row is not None
            row.status = "cancelled"  # its cancel push was lost
        platform.requests.clear()

        first = json.loads(run(platform_env, "integration", "reconcile", str(hook), "--since",
                               day.date().isoformat(), "--json"))
        assert (first["recreated"], first["updated"]) == ([lost.uid], [stale.uid])
        assert sorted(first["deleted"]) == sorted(["AAMk-dup=", by_uid[cancelled.uid]["id"]])
        assert first["unchanged"] == 2 and first["listed"] == 5
        assert set(graph_checked(platform, "microsoft-graph")) == {"GET", "POST", "PATCH", "DELETE"}
        live = [e for e in state.events.values() if not e.get("@removed")]
        uids = sorted(e["singleValueExtendedProperties"][0]["value"] for e in live)
        assert uids == sorted([lost.uid, doubled.uid, stale.uid, kept.uid]), "one each, none cancelled"
        with platform_db.read() as session:
            for event in live:
                visit = session.get(Appointment, ids[event["singleValueExtendedProperties"][0]["value"]])
                assert visit is not None and graph_when(event["start"]) == visit.starts_at
                ref = session.scalars(select(ExternalRef).where(ExternalRef.integration_id == hook,
                                                                ExternalRef.appointment_id == visit.id)).one()
                assert ref.remote_id == event["id"]

        platform.requests.clear()
        second = json.loads(run(platform_env, "integration", "reconcile", str(hook), "--since",
                                day.date().isoformat(), "--json"))
        repairs = (second["recreated"], second["deleted"], second["updated"], second["unchanged"])
        assert repairs == ([], [], [], 4)
        assert graph_checked(platform, "microsoft-graph") == ["GET", "GET"], "two pages read, nothing written"
