"""GET /api/v1/changes/stream against a live gunicorn: replay, live delivery, rights."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from apikit import Keys, make_keys
from live import LiveServer
from seeding import Seed, domain

from server import changes, directory
from server.api.stream import STREAMS_PER_WORKER, events_after
from server.change_feed import Wakeup
from server.db import Database

STREAM = "/api/v1/changes/stream"


@pytest.fixture(scope="module")
def keys(db: Database) -> Keys:
    return make_keys(db)


def frames(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Parsed events (comments and the retry line skipped)."""
    current: dict[str, Any] = {}
    for line in response.iter_lines():
        if not line:
            if "id" in current:
                yield current
            current = {}
        elif line.startswith("id: "):
            current["id"] = int(line[4:])
        elif line.startswith("data: "):
            current["data"] = json.loads(line[6:])


def customers(db: Database, count: int, tag: str) -> list[int]:
    with domain(db) as ctx:
        return [directory.add_customer(ctx, f"{tag} {i}", email=f"{tag}{i}@x.test").id
                for i in range(count)]


def renames(db: Database, login: str, count: int) -> None:
    """`count` changes, each its own transaction (one audit entry each)."""
    for i in range(count):
        with domain(db) as ctx:
            directory.update_user(ctx, directory.find_user(ctx.session, login), name=f"Name {i}")


def last_id(db: Database) -> int:
    with db.read() as session:
        found = changes.events(session, 0, 100_000)
    return found[-1].id


def test_reconnect_with_last_event_id_gets_exactly_the_missed_events(
        live: LiveServer, db: Database, keys: Keys, seed: Seed) -> None:
    before = last_id(db)
    headers = keys.headers("readonly")
    with httpx.stream("GET", live.url(STREAM), headers={**headers, "Last-Event-ID": str(before)},
                      timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        customers(db, 1, "first")
        seen = next(frames(response))
    assert seen["id"] > before and seen["data"]["resource"]["kind"] in ("customer", "collection")
    # disconnected: 50 changes happen
    renames(db, seed.dispatcher.login, 50)
    with db.read() as session:
        missed = changes.events(session, seen["id"], 1000)
    assert len(missed) >= 50
    with httpx.stream("GET", live.url(STREAM),
                      headers={**headers, "Last-Event-ID": str(seen["id"])},
                      timeout=10) as response:
        events = frames(response)
        got = [next(events) for _ in missed]
        customers(db, 1, "after")
        following = next(events)
    assert [e["id"] for e in got] == [e.id for e in missed]  # exactly these, in order
    renamed = [e for e in got if e["data"]["action"] == "user.update"]
    assert len(renamed) == 50
    assert {e["data"]["resource"]["kind"] for e in renamed} == {"user"}
    assert following["id"] > got[-1]["id"]


def test_a_change_arrives_within_a_second(live: LiveServer, db: Database, keys: Keys,
                                          seed: Seed) -> None:
    delays: list[float] = []
    with httpx.stream("GET", live.url(STREAM), params={"after": str(last_id(db))},
                      headers=keys.headers("dispatcher"), timeout=10) as response:
        events = frames(response)
        for _ in range(5):
            time.sleep(0.3)
            started = time.monotonic()
            customers(db, 1, "live")
            event = next(events)
            delays.append(time.monotonic() - started)
            assert event["data"]["actor"] == "system"
    assert max(delays) < 1.0, delays


def test_who_may_follow_the_stream(live: LiveServer, keys: Keys) -> None:
    assert httpx.get(live.url(STREAM), timeout=10).status_code == 401
    assert httpx.get(live.url(STREAM), headers=keys.headers("integration"),
                     timeout=10).status_code == 403
    bad = httpx.get(live.url(STREAM), headers={**keys.headers("readonly"),
                                               "Last-Event-ID": "yesterday"}, timeout=10)
    assert bad.status_code == 400 and "whole number" in bad.json()["detail"]
    huge = httpx.get(live.url(STREAM), params={"after": str(10**12)},
                     headers=keys.headers("readonly"), timeout=10)
    assert huge.status_code == 400


def test_a_quiet_stream_sends_keepalive_comments(db: Database) -> None:
    stream = events_after(db, Wakeup(db), after=last_id(db), keepalive_s=0.3)
    assert next(stream).startswith("retry:")
    started = time.monotonic()
    assert next(stream) == ": keepalive\n\n"
    assert 0.25 <= time.monotonic() - started < 2.0


def test_streams_do_not_hold_the_threads_others_need(live: LiveServer, keys: Keys,
                                                     seed: Seed) -> None:
    # More streams than both workers together serve: gunicorn spreads connections
    # unevenly, so each stream either opens or gets a quick 503 with Retry-After.
    opened: list[httpx.Response] = []
    clients = [httpx.Client(timeout=10) for _ in range(2 * STREAMS_PER_WORKER + 4)]
    try:
        for client in clients:
            request = client.build_request("GET", live.url(STREAM), params={"after": "0"},
                                           headers=keys.headers("readonly"))
            opened.append(client.send(request, stream=True))
        refused = [r for r in opened if r.status_code != 200]
        assert all(r.status_code == 503 and r.headers["Retry-After"] for r in refused)
        assert len(opened) - len(refused) >= STREAMS_PER_WORKER
        assert len(refused) >= 4
        started = time.monotonic()
        calendar = httpx.request("PROPFIND", live.dav + f"{seed.technicians['alice'].login}/",
                                 auth=seed.technicians["alice"].auth,
                                 headers={"Depth": "0"}, timeout=10)
        assert calendar.status_code == 207
        assert time.monotonic() - started < 2.0
    finally:
        for response in opened:
            response.close()
        for client in clients:
            client.close()
