"""GET/HEAD /feeds/<token>.ics: headers, conditional GET, privacy, safety, link lifecycle."""

from __future__ import annotations

import datetime as dt
import gzip
import logging
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from feedkit import EVIL, ORGANIZER, FeedSeed, day, new_key, seed_feeds, strict_parse
from flask import Flask
from flask.testing import FlaskClient
from icalkit import prop_int
from itsdangerous import TimestampSigner
from live import AUDIT_KEY
from seeding import must_get
from sqlalchemy import event
from werkzeug.http import http_date

from server import directory, links, scheduling
from server.actors import SYSTEM
from server.app import create_app
from server.config import load_settings
from server.context import Context
from server.db import Database, get_database
from server.models import Role, ShareLink

REPO = Path(__file__).resolve().parents[1]
UA = {
    "google": "Google-Calendar-Importer",
    "ios": "iOS/17.4 (21E219) dataaccessd/1.0",
    "macos": "macOS/14.4 (23E214) CalendarAgent/988",
    "outlook": "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)",
}


@dataclass
class FeedEnv:
    app: Flask
    client: FlaskClient
    seed: FeedSeed
    database: Database
    keys: tuple[str, ...]

    def url(self, name: str) -> str:
        return f"/feeds/{self.seed.tokens[name]}.ics"


def make_app(database_url: str, keys: tuple[str, ...], tmp: str, **overrides: object) -> Flask:
    settings = load_settings({"FIELDCAL_INSTANCE": tmp, "FIELDCAL_DATABASE_URL": database_url,
                              "FIELDCAL_AUDIT_KEYS": AUDIT_KEY,
                              "FIELDCAL_BUSINESS_EMAIL": "office@example.test"})
    return create_app(settings=settings.with_overrides(secret_keys=keys, **overrides))


@pytest.fixture(scope="module")
def env(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeedEnv]:
    keys = (new_key(),)
    app = make_app(database_url, keys, str(tmp_path_factory.mktemp("feeds")))
    database = app.extensions["fieldcal.db"]
    seed = seed_feeds(database, app.extensions["fieldcal.signer"])
    yield FeedEnv(app, app.test_client(), seed, database, keys)


def body_of(env: FeedEnv, name: str) -> bytes:
    response = env.client.get(env.url(name))
    assert response.status_code == 200, response.data
    return response.data


@pytest.mark.parametrize("accept", [None, "text/calendar", "*/*", "application/json"])
@pytest.mark.parametrize("agent", list(UA.values()))
def test_feed_is_served_to_every_client(env: FeedEnv, accept: str | None, agent: str) -> None:
    headers = {"User-Agent": agent}
    if accept:
        headers["Accept"] = accept
    response = env.client.get(env.url("tech"), headers=headers)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/calendar; charset=utf-8"
    assert response.headers["ETag"].startswith('"')
    assert response.headers["Last-Modified"]


@pytest.mark.parametrize("name", ["tech", "team", "customer", "evil", "appointment", "tech_fb", "team_fb"])
def test_every_variant_parses_strictly(env: FeedEnv, name: str) -> None:
    calendar = strict_parse(body_of(env, name))
    text = body_of(env, name).decode()
    assert "X-WR-CALNAME:" in text and "\r\nNAME:" in text
    assert "REFRESH-INTERVAL;VALUE=DURATION:PT60M" in text
    assert "X-PUBLISHED-TTL:PT60M" in text
    for vevent in calendar.walk("VEVENT"):
        assert vevent.decoded("dtstart").tzinfo is not None
        assert vevent.decoded("dtstart").utcoffset() == dt.timedelta(0)


def test_conditional_get(env: FeedEnv) -> None:
    first = env.client.get(env.url("tech"))
    second = env.client.get(env.url("tech"))
    assert first.data == second.data, "unchanged data must give byte-identical feeds"
    etag = first.headers["ETag"]
    assert env.client.get(env.url("tech"), headers={"If-None-Match": etag}).status_code == 304
    assert env.client.get(env.url("tech"), headers={"If-None-Match": '"other"'}).status_code == 200
    last_modified = first.headers["Last-Modified"]
    later = http_date(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    for since, expected in [(last_modified, 304), (later, 304), ("garbage", 200),
                            ("Thu, 01 Jan 1970 00:00:00 GMT", 200)]:
        response = env.client.get(env.url("tech"), headers={"If-Modified-Since": since})
        assert response.status_code == expected, since


def test_gzip_only_when_asked_made_once_with_its_own_etag(env: FeedEnv) -> None:
    plain = env.client.get(env.url("tech"))
    assert "Content-Encoding" not in plain.headers and "Accept-Encoding" in plain.headers["Vary"]
    refused = env.client.get(env.url("tech"), headers={"Accept-Encoding": "gzip;q=0"})
    assert "Content-Encoding" not in refused.headers and refused.data == plain.data
    packed = env.client.get(env.url("tech"), headers={"Accept-Encoding": "gzip, deflate"})
    assert packed.headers["Content-Encoding"] == "gzip"
    assert packed.headers["Content-Type"] == "text/calendar; charset=utf-8"
    assert "Accept-Encoding" in packed.headers["Vary"]
    assert gzip.decompress(packed.data) == plain.data
    assert packed.headers["ETag"] == plain.headers["ETag"][:-1] + '-gzip"'
    cache = env.app.extensions["fieldcal.feed_cache"]
    etag = plain.headers["ETag"]
    assert cache.gzipped(etag) is cache.gzipped(etag)  # kept beside the body, not made again
    for tag in (plain.headers["ETag"], packed.headers["ETag"]):
        again = env.client.get(env.url("tech"), headers={"If-None-Match": tag,
                                                         "Accept-Encoding": "gzip"})
        assert again.status_code == 304 and again.data == b""
        assert again.headers["ETag"] == packed.headers["ETag"]


def test_head_has_the_same_headers_and_no_body(env: FeedEnv) -> None:
    get = env.client.get(env.url("team"))
    head = env.client.head(env.url("team"))
    assert head.status_code == 200
    assert head.data == b""
    for name in ("Content-Type", "ETag", "Last-Modified", "Content-Length", "Cache-Control"):
        assert head.headers[name] == get.headers[name]


def test_not_modified_is_answered_before_any_item_query(env: FeedEnv) -> None:
    etag = env.client.get(env.url("tech")).headers["ETag"]
    statements: list[str] = []

    def capture(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement.lower())

    engine = env.database.engine
    event.listen(engine, "before_cursor_execute", capture)
    try:
        response = env.client.get(env.url("tech"), headers={"If-None-Match": etag})
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert response.status_code == 304
    assert statements, "the 304 path must still check the link"
    assert not [s for s in statements if "calendar_item" in s or "appointment" in s]


def test_changes_show_up_with_sequence_and_cancelled_status(env: FeedEnv) -> None:
    before = env.client.get(env.url("customer"))
    with env.database.write() as session:
        ctx = Context(session, SYSTEM, ORGANIZER)
        appointment = scheduling.get_appointment(session, env.seed.appointments["acme_later"])
        uid = appointment.uid
        sequence = appointment.sequence
        start = day(9, 13)
        scheduling.reschedule(ctx, appointment, start, start + dt.timedelta(hours=1))
        scheduling.cancel(ctx, appointment)
    after = env.client.get(env.url("customer"), headers={"If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200
    events = {str(e["uid"]): e for e in strict_parse(after.data).walk("VEVENT")}
    assert events[uid]["status"] == "CANCELLED"
    assert prop_int(events[uid], "sequence") == sequence + 2
    assert events[uid].decoded("dtstart") == start


def test_rolling_window(env: FeedEnv) -> None:
    with env.database.read() as session:
        uids = {name: scheduling.get_appointment(session, aid).uid
                for name, aid in env.seed.appointments.items()}
    text = body_of(env, "tech").decode()
    assert uids["acme_soon"] in text and uids["far"] in text
    assert uids["old"] not in text and uids["too_far"] not in text


def test_big_feed_stays_under_the_byte_budget(database_url: str, tmp_path_factory: pytest.TempPathFactory,
                                              env: FeedEnv) -> None:
    app = make_app(database_url, env.keys, str(tmp_path_factory.mktemp("small")), feed_max_bytes=3000)
    body = app.test_client().get(env.url("tech")).data
    assert len(body) <= 3000
    strict_parse(body)
    assert body.count(b"BEGIN:VEVENT") >= 1


def test_customer_sees_only_their_own_visits(env: FeedEnv) -> None:
    text = body_of(env, "customer").decode()
    unfolded = text.replace("\r\n ", "")
    assert "Evil" not in unfolded and "evil@example.test" not in unfolded
    assert "Alice" in unfolded and "Berg" not in unfolded, "technician first name only"
    assert "ATTENDEE" not in text and "ORGANIZER" not in text
    assert "Secret Clinic" not in unfolded and "Dentist" not in unfolded
    with env.database.read() as session:
        bob_visit = scheduling.get_appointment(session, env.seed.appointments["acme_bob"]).uid
    assert bob_visit in text, "all of this customer's visits, whoever the technician"
    single = body_of(env, "appointment").decode()
    assert single.count("BEGIN:VEVENT") == 1


@pytest.mark.parametrize("name", ["tech_fb", "team_fb"])
def test_freebusy_shows_busy_only(env: FeedEnv, name: str) -> None:
    calendar = strict_parse(body_of(env, name))
    events = list(calendar.walk("VEVENT"))
    assert events
    for vevent in events:
        assert str(vevent["summary"]) == "Busy"
        for forbidden in ("location", "description", "attendee", "url", "organizer"):
            assert forbidden not in vevent
    text = body_of(env, name).decode()
    assert "ACME" not in text and "Harbour" not in text and "Dentist" not in text


def test_personal_items_are_busy_time_in_technician_feeds(env: FeedEnv) -> None:
    text = body_of(env, "tech").decode().replace("\r\n ", "")
    assert "Dentist" not in text and "Secret Clinic" not in text
    busy = [e for e in strict_parse(body_of(env, "tech")).walk("VEVENT") if str(e["summary"]) == "Busy"]
    assert len(busy) >= 20, "the weekly private event is expanded as busy time over the window"
    team_text = body_of(env, "team").decode().replace("\r\n ", "")
    assert "Screw compressor overheats" in team_text, "team feeds carry full job details"


def test_injection_yields_one_event_per_visit(env: FeedEnv) -> None:
    body = body_of(env, "evil")
    calendar = strict_parse(body)
    events = list(calendar.walk("VEVENT"))
    assert len(events) == 1
    assert "X-INJECT" not in events[0]
    lines = body.split(b"\r\n")
    assert lines.count(b"BEGIN:VEVENT") == 1 and lines.count(b"END:VEVENT") == 1
    tech_calendar = strict_parse(body_of(env, "tech"))
    with env.database.read() as session:
        evil_uid = scheduling.get_appointment(session, env.seed.appointments["evil"]).uid
    assert [str(e["uid"]) for e in tech_calendar.walk("VEVENT")].count(evil_uid) == 1
    assert EVIL.splitlines()[0] in str(events[0]["summary"]) or "Evil" in str(events[0]["summary"])


def test_rendering_is_safe_under_python_O(env: FeedEnv, database_url: str) -> None:
    script = (
        "from server.ical import render_appointment, Audience, clean_text\n"
        "assert True is not None\n"
        f"text = clean_text({EVIL!r})\n"
        "import sys\n"
        "sys.exit(0 if '\\r' not in text and '\\x00' not in text and '\\x07' not in text else 1)\n"
    )
    result = subprocess.run([sys.executable, "-O", "-c", script], capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    result = subprocess.run(
        [sys.executable, "-O", "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
         "-k", "injection and sqlite"], capture_output=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stdout.decode()[-2000:]


class FutureSigner(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(dt.datetime.now(dt.UTC).timestamp()) + 3600


def _same_404(env: FeedEnv, url: str) -> None:
    response = env.client.get(url)
    assert response.status_code == 404
    reference = env.client.get("/feeds/not-a-token.ics")
    assert response.data == reference.data
    assert response.headers["Content-Type"] == reference.headers["Content-Type"]


def test_bad_tokens_all_get_the_same_plain_404(env: FeedEnv) -> None:
    token = env.seed.tokens["team"]
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    _same_404(env, f"/feeds/{tampered}.ics")
    signer = env.app.extensions["fieldcal.signer"]
    with env.database.read() as session:
        link = must_get(session, ShareLink, env.seed.link_ids["team"])
        share_link = ShareLink(id=link.id, version=link.version, purpose="share")
    _same_404(env, f"/feeds/{signer.dumps(share_link)}.ics")
    future = links.URLSafeTimedSerializer(list(reversed(env.keys)), salt="fieldcal.link.feed",
                                          signer=FutureSigner)
    _same_404(env, f"/feeds/{future.dumps([link.id, link.version])}.ics")
    foreign = links.URLSafeTimedSerializer("other-key", salt="fieldcal.link.feed")
    _same_404(env, f"/feeds/{foreign.dumps([link.id, link.version])}.ics")


def test_expired_link_is_404(env: FeedEnv) -> None:
    with env.database.write() as session:
        ctx = Context(session, SYSTEM, ORGANIZER)
        subject = links.parse_subject(session, "team:north")
        link = links.issue(ctx, links.Purpose.FEED, subject,
                           expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
        token = env.app.extensions["fieldcal.signer"].dumps(link)
    assert env.client.get(f"/feeds/{token}.ics").status_code == 200
    with env.database.write() as session:
        must_get(session, ShareLink, link.id).expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    _same_404(env, f"/feeds/{token}.ics")


def test_revoke_and_rotate_take_effect_on_the_next_request(env: FeedEnv) -> None:
    signer = env.app.extensions["fieldcal.signer"]
    with env.database.write() as session:
        ctx = Context(session, SYSTEM, ORGANIZER)
        subject = links.parse_subject(session, "technician:bob")
        to_revoke = links.issue(ctx, links.Purpose.FEED, subject)
        to_rotate = links.issue(ctx, links.Purpose.FEED, subject)
        revoke_token, old_token = signer.dumps(to_revoke), signer.dumps(to_rotate)
    assert env.client.get(f"/feeds/{revoke_token}.ics").status_code == 200
    assert env.client.get(f"/feeds/{old_token}.ics").status_code == 200
    with env.database.write() as session:
        ctx = Context(session, SYSTEM, ORGANIZER)
        links.revoke(ctx, links.get_link(session, to_revoke.id))
        rotated = links.rotate(ctx, links.get_link(session, to_rotate.id))
        new_token = signer.dumps(rotated)
    _same_404(env, f"/feeds/{revoke_token}.ics")
    _same_404(env, f"/feeds/{old_token}.ics")
    assert env.client.get(f"/feeds/{new_token}.ics").status_code == 200


def test_signing_key_rotation(env: FeedEnv, database_url: str,
                              tmp_path_factory: pytest.TempPathFactory) -> None:
    old_key, new = env.keys[0], new_key()
    rotated = make_app(database_url, (new, old_key), str(tmp_path_factory.mktemp("rot")))
    client = rotated.test_client()
    assert client.get(env.url("team")).status_code == 200, "old links live on while the old key is listed"
    with env.database.read() as session:
        link = session.get(ShareLink, env.seed.link_ids["team"])
        fresh_token = rotated.extensions["fieldcal.signer"].dumps(link)
    assert client.get(f"/feeds/{fresh_token}.ics").status_code == 200
    assert env.client.get(f"/feeds/{fresh_token}.ics").status_code == 404, "new links use the new key"
    removed = make_app(database_url, (new,), str(tmp_path_factory.mktemp("rm"))).test_client()
    assert removed.get(env.url("team")).status_code == 404
    assert removed.get(f"/feeds/{fresh_token}.ics").status_code == 200


def test_fetches_are_recorded_and_tokens_never_logged(env: FeedEnv, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    env.client.get(env.url("appointment"), headers={"User-Agent": UA["google"]})
    bad = env.seed.tokens["appointment"][:-3] + "xyz"
    env.client.get(f"/feeds/{bad}.ics")
    with env.database.read() as session:
        link = must_get(session, ShareLink, env.seed.link_ids["appointment"])
        assert link.last_used_at is not None
        assert link.last_user_agent == UA["google"]
    for token in (env.seed.tokens["appointment"], bad):
        assert token not in caplog.text


def test_feed_headers_protect_the_link(env: FeedEnv) -> None:
    response = env.client.get(env.url("customer"))
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert "noindex" in response.headers["X-Robots-Tag"]


def test_database_is_shared_per_process(database_url: str) -> None:
    assert get_database(database_url) is get_database(database_url)


def test_budgeted_feed_body_agrees_with_its_etag_all_day(
        database_url: str, tmp_path_factory: pytest.TempPathFactory, env: FeedEnv,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Over its byte budget a feed keeps the events nearest to a point of the day, not of the
    clock: two workers asked in the same day (early and late) answer one ETag with one body."""
    login = f"budget-{secrets.token_hex(3)}"
    with env.database.write() as session:
        ctx = Context(session, SYSTEM, ORGANIZER)
        tech = directory.add_user(ctx, login, name="Bea Budget", email=f"{login}@example.test",
                                  role=Role.TECHNICIAN)
        customer = directory.add_customer(ctx, "Budget Customer", email="budget@example.test",
                                          address="Budget Road 1")
        job = directory.add_job(ctx, customer, "Budget visit", problem="Leaks")
        for offset in (-1, 1):  # yesterday 09:00 and tomorrow 09:00
            starts = day(offset)
            scheduling.book(ctx, job, tech, starts, starts + dt.timedelta(hours=1))
        link = links.issue(ctx, links.Purpose.FEED, links.parse_subject(session, f"technician:{login}"))
        token = env.app.extensions["fieldcal.signer"].dumps(link)
    one_event = 1000  # the header and one visit fit, two do not (1,307 bytes)
    today = day(0, 0)
    answers = []
    for moment in (today + dt.timedelta(minutes=5), today + dt.timedelta(hours=23, minutes=55)):
        monkeypatch.setattr("feeds.routes.utcnow", lambda moment=moment: moment)
        worker = make_app(database_url, env.keys, str(tmp_path_factory.mktemp("budget")),
                          feed_max_bytes=one_event)
        response = worker.test_client().get(f"/feeds/{token}.ics")
        assert response.status_code == 200
        assert response.data.count(b"BEGIN:VEVENT") == 1, "the budget keeps one of the two visits"
        answers.append((response.headers["ETag"], response.data))
    (early_etag, early_body), (late_etag, late_body) = answers
    assert early_etag == late_etag
    assert early_body == late_body, "one ETag, one body"
    monkeypatch.setattr("feeds.routes.utcnow", lambda: today + dt.timedelta(days=1, hours=1))
    worker = make_app(database_url, env.keys, str(tmp_path_factory.mktemp("budget")),
                      feed_max_bytes=one_event)
    next_day = worker.test_client().get(f"/feeds/{token}.ics")
    assert next_day.headers["ETag"] != early_etag, "a new day may keep other events: a new ETag"
