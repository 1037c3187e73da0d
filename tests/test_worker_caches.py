"""Per-process caches never serve a stale answer: after a change, every gunicorn worker shows it.

Each worker keeps its own caches (whole-calendar bodies, feed bodies, recurrence
expansions). Reads are sent in concurrent bursts until the access log (with the worker's
pid) shows that both workers answered, once before the change (to warm both caches) and
again after it; every answer after the change must show the change.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Iterator

import pytest
import requests
from davkit import XML, calendar_query, parse_multistatus
from live import HTTP_TIMEOUT_S
from pidkit import Workers, with_access_log
from seeding import Account, Seed, domain, fresh_technician, personal_event, put_personal

from server import links, scheduling
from server.db import Database
from server.links import LinkSigner
from server.models import utcnow

KEYS = secrets.token_urlsafe(32)


@pytest.fixture(scope="module")
def workers(seed: Seed, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    server, access_log = with_access_log(database_url, tmp_path_factory.mktemp("caches"),
                                         {"FIELDCAL_SECRET_KEYS": KEYS})
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield Workers(server, access_log)
    finally:
        server.stop()


def next_weekday(weekday: int, hour: int) -> dt.datetime:
    """The next such weekday (at least two days away), at `hour` UTC."""
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    days = (weekday - today.weekday()) % 7 or 7
    return today + dt.timedelta(days=days + (7 if days < 2 else 0), hours=hour)


MONDAY = next_weekday(0, 7)
TUESDAY = MONDAY + dt.timedelta(days=1)


def standup(summary: str, start: dt.datetime, byday: str) -> str:
    return personal_event("standup-cache@example.test", summary, start, start + dt.timedelta(minutes=30),
                          rrule=f"FREQ=WEEKLY;BYDAY={byday};COUNT=8")


def technician(db: Database, seed: Seed) -> tuple[Account, int]:
    """A technician of its own: a visit soon and a weekly Monday stand-up."""
    soon = utcnow().replace(minute=0, second=0, microsecond=0) + dt.timedelta(days=3)
    fresh = fresh_technician(db, seed, "cache", [(soon, soon + dt.timedelta(hours=1))])
    with domain(db) as ctx:
        put_personal(ctx, fresh.account.login, "standup.ics", standup("Stand-up", MONDAY, "MO"))
    return fresh.account, fresh.booked[0].appointment_id


def edit_standup(workers: Workers, account: Account) -> None:
    """The phone edits the recurring event: new name, Tuesdays at 08:00 instead of Mondays 07:00."""
    response = requests.put(
        workers.server.url(f"/dav/{account.login}/personal/standup.ics"), auth=account.auth,
        data=standup("Stand-up moved", TUESDAY + dt.timedelta(hours=1), "TU").encode(),
        headers={"Content-Type": "text/calendar; charset=utf-8"}, timeout=HTTP_TIMEOUT_S)
    assert response.status_code in (201, 204), response.text


def test_whole_calendar_get_is_fresh_on_every_worker(workers: Workers, db: Database, seed: Seed) -> None:
    account, _visit = technician(db, seed)

    def get(probe: str) -> requests.Response:
        return requests.get(workers.server.url(f"/dav/{account.login}/personal/?{probe}"),
                            auth=account.auth, timeout=HTTP_TIMEOUT_S)

    for _pid, answer in workers.read_on_both(get):
        assert answer.status_code == 200 and "SUMMARY:Stand-up\r\n" in answer.text
    edit_standup(workers, account)
    for pid, answer in workers.read_on_both(get):
        assert answer.status_code == 200
        assert "Stand-up moved" in answer.text and "BYDAY=TU" in answer.text, f"stale on worker {pid}"
        assert "BYDAY=MO" not in answer.text, f"stale on worker {pid}"


def test_recurrence_expansion_is_fresh_on_every_worker(workers: Workers, db: Database,
                                                       seed: Seed) -> None:
    account, _visit = technician(db, seed)

    def query(day: dt.datetime) -> Callable[[str], requests.Response]:
        def send(probe: str) -> requests.Response:
            return requests.request(
                "REPORT", workers.server.url(f"/dav/{account.login}/personal/?{probe}"),
                auth=account.auth, headers={**XML, "Depth": "1"}, timeout=HTTP_TIMEOUT_S,
                data=calendar_query(day, day + dt.timedelta(days=1)).encode())
        return send

    def hrefs(answer: requests.Response) -> set[str]:
        assert answer.status_code == 207, answer.text
        return {r.href.rsplit("/", 1)[-1] for r in parse_multistatus(answer.content)}

    monday = MONDAY.replace(hour=0) + dt.timedelta(days=7)
    tuesday = monday + dt.timedelta(days=1)
    assert all(hrefs(a) == {"standup.ics"} for _, a in workers.read_on_both(query(monday)))
    assert all(hrefs(a) == set() for _, a in workers.read_on_both(query(tuesday)))
    edit_standup(workers, account)
    for pid, answer in workers.read_on_both(query(monday)):
        assert hrefs(answer) == set(), f"worker {pid} expanded the old rule"
    for pid, answer in workers.read_on_both(query(tuesday)):
        assert hrefs(answer) == {"standup.ics"}, f"worker {pid} missed the new rule"


def test_feed_body_is_fresh_on_every_worker(workers: Workers, db: Database, seed: Seed) -> None:
    account, visit = technician(db, seed)
    with domain(db) as ctx:
        subject = links.parse_subject(ctx.session, f"technician:{account.login}")
        token = LinkSigner((KEYS,)).dumps(links.issue(ctx, links.Purpose.FEED, subject))

    def get(probe: str) -> requests.Response:
        return requests.get(workers.server.url(f"/feeds/{token}.ics?{probe}"), timeout=HTTP_TIMEOUT_S)

    stamp = "%Y%m%dT%H%M%SZ"
    with db.read() as session:
        old_start = scheduling.get_appointment(session, visit).starts_at
    week_later = MONDAY + dt.timedelta(days=7)
    for _pid, answer in workers.read_on_both(get):
        assert answer.status_code == 200
        assert f"DTSTART:{old_start:{stamp}}" in answer.text
        assert f"DTSTART:{week_later:{stamp}}" in answer.text, "the stand-up is busy time"
    new_start = old_start + dt.timedelta(days=1, hours=2)
    with domain(db) as ctx:
        scheduling.reschedule(ctx, scheduling.get_appointment(ctx.session, visit), new_start,
                              new_start + dt.timedelta(hours=1))
    edit_standup(workers, account)
    moved_standup = TUESDAY + dt.timedelta(days=7, hours=1)
    for pid, answer in workers.read_on_both(get):
        assert answer.status_code == 200
        text = answer.text
        assert f"DTSTART:{new_start:{stamp}}" in text and f"DTSTART:{old_start:{stamp}}" not in text, pid
        assert f"DTSTART:{moved_standup:{stamp}}" in text, f"worker {pid}: stale busy time"
        assert f"DTSTART:{week_later:{stamp}}" not in text, f"worker {pid}: stale busy time"
