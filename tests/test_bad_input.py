"""Hostile and broken requests: XML bombs, XXE, path traversal, other people's calendars,
oversized bodies, malformed iCalendar. None may leak data or leave rows behind."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator

import pytest
from davkit import (
    ICS,
    XML,
    RawResponse,
    calendar_query,
    dav_request,
    parse_multistatus,
    raw_request,
)
from live import (
    LiveServer,
)
from seeding import (
    Seed,
    at,
    items_of,
    personal_event,
    row_counts,
)

from server.db import Database

LIMIT = 65_536
PASSWD_MARKERS = ("root:x:0", "root:*:0", "/bin/bash", "/usr/sbin/nologin")


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return {"FIELDCAL_MAX_BODY_BYTES": str(LIMIT)}


@pytest.fixture
def unchanged(live: LiveServer, seed: Seed, db: Database) -> Iterator[None]:
    """The test's requests must leave no rows behind. (Alice's home is listed first: the
    first listing of a day brings her customers' address book up to date, a write.)"""
    alice = seed.technicians["alice"]
    assert raw_request(live, "PROPFIND", "/dav/alice/", auth=alice.auth,
                       headers={"Depth": "1"}).status == 207
    before = row_counts(db)
    yield
    assert row_counts(db) == before


def billion_laughs(root: str) -> str:
    entities = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)
    ]
    return (
        '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n' + "\n".join(entities) + "\n]>\n"
        + root.replace("PAYLOAD", "&lol9;")
    )


def quadratic_blowup(root: str) -> str:
    return (
        f'<?xml version="1.0"?>\n<!DOCTYPE q [<!ENTITY a "{"A" * 40_000}">]>\n'
        + root.replace("PAYLOAD", "&a;" * 5_000)
    )


def external_entity(root: str) -> str:
    return (
        '<?xml version="1.0"?>\n'
        '<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
        + root.replace("PAYLOAD", "&xxe;")
    )


def parameter_entity(root: str) -> str:
    return (
        '<?xml version="1.0"?>\n'
        '<!DOCTYPE x [<!ENTITY % ext SYSTEM "file:///etc/passwd"> %ext;]>\n'
        + root.replace("PAYLOAD", "x")
    )


PROPFIND = ('<D:propfind xmlns:D="DAV:"><D:prop><D:displayname>PAYLOAD</D:displayname>'
            "</D:prop></D:propfind>")
REPORT = ('<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
          '<D:prop><D:getetag/></D:prop><C:filter><C:comp-filter name="VCALENDAR">'
          '<C:comp-filter name="VEVENT"><C:prop-filter name="SUMMARY">'
          "<C:text-match>PAYLOAD</C:text-match></C:prop-filter></C:comp-filter>"
          "</C:comp-filter></C:filter></C:calendar-query>")
PROPPATCH = ('<D:propertyupdate xmlns:D="DAV:"><D:set><D:prop>'
             "<D:displayname>PAYLOAD</D:displayname></D:prop></D:set></D:propertyupdate>")

BOMBS = {"billion-laughs": billion_laughs, "quadratic": quadratic_blowup}
ENTITIES = {"external": external_entity, "parameter": parameter_entity}
BODIES = {"PROPFIND": PROPFIND, "REPORT": REPORT, "PROPPATCH": PROPPATCH}


def no_passwd(response: RawResponse) -> None:
    assert not any(marker in response.text for marker in PASSWD_MARKERS), response.text[:500]


@pytest.mark.parametrize("method", sorted(BODIES))
@pytest.mark.parametrize("bomb", sorted(BOMBS))
def test_entity_bomb_is_400_quickly(live: LiveServer, seed: Seed, unchanged: None,
                                    method: str, bomb: str) -> None:
    body = BOMBS[bomb](BODIES[method]).encode()
    assert len(body) < LIMIT
    started = time.monotonic()
    response = raw_request(live, method, "/dav/alice/personal/", auth=seed.technicians["alice"].auth,
                           body=body, headers={**XML, "Depth": "1"}, timeout=10)
    elapsed = time.monotonic() - started
    assert response.status == 400, response.text[:300]
    assert elapsed < 2.0, f"{elapsed:.2f} s"
    assert "lollollol" not in response.text and "AAAAAAAAAA" not in response.text


@pytest.mark.parametrize("method", sorted(BODIES))
@pytest.mark.parametrize("kind", sorted(ENTITIES))
def test_external_entities_are_400_and_never_read(
    live: LiveServer, seed: Seed, db: Database, unchanged: None, method: str, kind: str
) -> None:
    alice = seed.technicians["alice"]
    body = ENTITIES[kind](BODIES[method]).encode()
    started = time.monotonic()
    response = raw_request(live, method, "/dav/alice/personal/", auth=alice.auth, body=body,
                           headers={**XML, "Depth": "1"}, timeout=10)
    assert response.status == 400, (response.status, response.text[:300])
    assert time.monotonic() - started < 2.0
    no_passwd(response)
    listing = raw_request(live, "PROPFIND", "/dav/alice/", auth=alice.auth,
                          headers={"Depth": "1"})
    no_passwd(listing)
    with db.read() as session:
        from server import calendars

        props = calendars.require_collection(session, "alice/personal").props
    assert not any(marker in str(props) for marker in PASSWD_MARKERS)


TRAVERSALS = [
    "/dav/../",
    "/dav/alice/../bob/jobs/",
    "/dav/alice/%2e%2e/bob/jobs/",
    "/dav/alice/%2E%2E/bob/personal/",
    "/dav/%2e%2e/dav/bob/jobs/",
    "/dav/alice/..%2fbob/jobs/",
    "/dav/alice/jobs/..%2f..%2fbob%2fjobs/",
    "/dav/alice/jobs/%2e%2e%2f%2e%2e%2fbob%2fjobs%2f",
    "/dav/./bob/jobs/",
    "/dav//bob/jobs/",
    "/dav/alice/../../etc/passwd",
    "/dav/alice/jobs/../../../../etc/passwd",
    "/dav/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/dav/alice/bob%7Ejobs/",
    "/dav/alice/bob%7ejobs/../../bob/jobs/",
    "/dav/alice/team-north~schedule/../../bob/jobs/",
]


# Dot segments that stay inside the mount resolve to the CalDAV root, which alice may list.
ROOT_ALIASES = {"/dav/../"}
ALICE_SEES = {"/dav/", "/dav/alice/", "/dav/team-north/"}


@pytest.mark.parametrize("method", ["GET", "PROPFIND", "REPORT"])
@pytest.mark.parametrize("target", TRAVERSALS)
def test_path_traversal_never_reaches_other_data(
    live: LiveServer, seed: Seed, unchanged: None, method: str, target: str
) -> None:
    body = calendar_query(at(-30, 0), at(60, 0)).encode() if method == "REPORT" else None
    response = raw_request(live, method, target, auth=seed.technicians["alice"].auth, body=body,
                           headers={**XML, "Depth": "1"} if body else {"Depth": "1"})
    if target in ROOT_ALIASES and response.status in (207, 302):
        if response.status == 207:
            assert {r.href for r in parse_multistatus(response.body)} <= ALICE_SEES
    else:
        assert response.status in (400, 403, 404), (response.status, response.text[:300])
    leaked = [b.uid for login in ("bob", "carol") for b in seed.jobs[login]
              if b.uid in response.text]
    assert not leaked
    no_passwd(response)


OTHERS = [
    "/dav/bob/jobs/", "/dav/bob/personal/", "/dav/carol/jobs/", "/dav/bob/",
    # views a home may show, asked for by URL by someone who may not hold them
    "/dav/alice/bob~jobs/", "/dav/alice/bob~personal/", "/dav/alice/carol~jobs/",
    "/dav/alice/customer-{customer}~appointments/", "/dav/alice/team-south~schedule/",
    "/dav/alice/bob~jobs~x/", "/dav/customer-{customer}/appointments/",
]


@pytest.mark.parametrize("path", OTHERS)
def test_other_users_calendars_are_refused(
    live: LiveServer, seed: Seed, unchanged: None, path: str
) -> None:
    alice = seed.technicians["alice"]
    path = path.format(customer=seed.customer_ids[0])
    requests_made = [
        dav_request(live, "GET", path, alice.auth),
        dav_request(live, "PROPFIND", path, alice.auth, headers={"Depth": "1"}),
        dav_request(live, "REPORT", path, alice.auth, headers={**XML, "Depth": "1"},
                    body=calendar_query(at(-30, 0), at(60, 0))),
    ]
    for response in requests_made:
        assert response.status_code in (403, 404), (response.request.method,
                                                     response.status_code)
        assert not any(b.uid in response.text for b in seed.jobs["bob"] + seed.jobs["carol"])


def test_a_team_view_is_refused_to_a_non_member(live: LiveServer, seed: Seed,
                                               unchanged: None) -> None:
    carol = seed.technicians["carol"]
    for path in ("/dav/carol/team-north~schedule/", "/dav/team-north/schedule/"):
        for method in ("GET", "PROPFIND"):
            response = dav_request(live, method, path, carol.auth, headers={"Depth": "1"})
            assert response.status_code in (403, 404), (path, method, response.status_code)
            assert not any(b.uid in response.text for b in seed.jobs["alice"])


def test_views_a_home_shows_cannot_be_changed_there(live: LiveServer, seed: Seed, db: Database,
                                                    unchanged: None) -> None:
    alice, dispatcher = seed.technicians["alice"], seed.dispatcher
    rename = PROPPATCH.replace("PAYLOAD", "renamed")
    attempts = [
        (alice, "DELETE", "/dav/alice/team-north~schedule/", None),
        (alice, "PROPPATCH", "/dav/alice/team-north~schedule/", rename),
        (alice, "MKCALENDAR", "/dav/alice/bob~jobs/", None),
        (alice, "MKCALENDAR", "/dav/alice/my~calendar/", None),
        (dispatcher, "DELETE", "/dav/dispatch/alice~personal/", None),
        (dispatcher, "PROPPATCH", "/dav/dispatch/alice~jobs/", rename),
    ]
    for account, method, path, body in attempts:
        response = dav_request(live, method, path, account.auth, body=body,
                               headers=XML if body else {})
        assert response.status_code == 403, (account.login, method, path, response.status_code)
        assert response.text.strip(), "a refusal says why"
    assert {i.uid for i in items_of(db, "alice/personal").values()} == {
        seed.recurring_uid, seed.dentist_uid}


def test_other_users_items_cannot_be_read_written_or_deleted(
    live: LiveServer, seed: Seed, db: Database, unchanged: None
) -> None:
    alice, bob_job = seed.technicians["alice"], seed.jobs["bob"][0]
    item = f"/dav/bob/jobs/{bob_job.href}"
    before = {h: i.etag for h, i in items_of(db, "bob/jobs").items()}
    attempts = [
        dav_request(live, "GET", item, alice.auth),
        dav_request(live, "DELETE", item, alice.auth),
        dav_request(live, "PUT", item, alice.auth, headers=ICS,
                    body=personal_event(bob_job.uid, "mine now", at(1, 10), at(1, 12))),
        dav_request(live, "PUT", "/dav/bob/personal/planted.ics", alice.auth, headers=ICS,
                    body=personal_event("planted@example.test", "x", at(1, 6), at(1, 7))),
        dav_request(live, "MKCALENDAR", "/dav/bob/planted/", alice.auth),
        dav_request(live, "PROPPATCH", "/dav/bob/personal/", alice.auth, headers=XML,
                    body=PROPPATCH.replace("PAYLOAD", "hijacked")),
    ]
    for response in attempts:
        assert response.status_code in (403, 404), (response.request.method,
                                                     response.status_code, response.text)
    assert {h: i.etag for h, i in items_of(db, "bob/jobs").items()} == before


def test_root_listing_shows_only_own_principal_and_team(live: LiveServer, seed: Seed) -> None:
    response = dav_request(live, "PROPFIND", "/dav/", seed.technicians["alice"].auth,
                           headers={"Depth": "1"})
    assert response.status_code in (207, 403, 404)
    if response.status_code == 207:
        hrefs = {r.href for r in parse_multistatus(response.content)}
        assert hrefs <= ALICE_SEES, hrefs
        assert "/dav/alice/" in hrefs


def test_anonymous_requests_are_401(live: LiveServer, unchanged: None) -> None:
    for method, path in (("PROPFIND", "/dav/alice/jobs/"), ("GET", "/dav/alice/personal/"),
                         ("PUT", "/dav/alice/personal/x.ics")):
        response = dav_request(live, method, path, None,
                               body=personal_event("anon@example.test", "x", at(1, 6), at(1, 7))
                               if method == "PUT" else None)
        assert response.status_code == 401, (method, response.status_code)


# --------------------------------------------------------------------------- body limit


def padded_event(size: int) -> bytes:
    text = personal_event("big@example.test", "Big", at(2, 6), at(2, 7))
    padding = "DESCRIPTION:" + "x" * size + "\r\n"
    return text.replace("END:VEVENT", padding + "END:VEVENT").encode()


def test_oversized_put_is_413(live: LiveServer, seed: Seed, db: Database, unchanged: None) -> None:
    alice = seed.technicians["alice"]
    response = dav_request(live, "PUT", "/dav/alice/personal/big.ics", alice.auth,
                           body=padded_event(LIMIT + 1), headers=ICS)
    assert response.status_code == 413, response.status_code
    big_xml = PROPFIND.replace("PAYLOAD", "y" * (LIMIT + 1))
    response = dav_request(live, "PROPFIND", "/dav/alice/personal/", alice.auth, body=big_xml,
                           headers={**XML, "Depth": "0"})
    assert response.status_code == 413
    assert "big.ics" not in items_of(db, "alice/personal")
    below = dav_request(live, "PROPFIND", "/dav/alice/personal/", alice.auth,
                        headers={**XML, "Depth": "0"},
                        body=PROPFIND.replace("PAYLOAD", "y" * (LIMIT // 2)))
    assert below.status_code == 207, "a body under the limit is served"


def test_413_is_answered_before_the_body_is_read(live: LiveServer, seed: Seed,
                                                 unchanged: None) -> None:
    """A huge Content-Length with no body: the answer must come without waiting for it."""
    started = time.monotonic()
    response = raw_request(live, "PUT", "/dav/alice/personal/huge.ics",
                           auth=seed.technicians["alice"].auth, body=b"BEGIN:VCALENDAR\r\n",
                           headers={**ICS, "Content-Length": str(10**9)}, timeout=5)
    assert response.status == 413
    assert time.monotonic() - started < 2.0


def test_chunked_body_over_the_limit_is_refused(live: LiveServer, seed: Seed, db: Database,
                                                unchanged: None) -> None:
    import base64

    body = padded_event(2 * LIMIT)
    token = base64.b64encode(":".join(seed.technicians["alice"].auth).encode()).decode()
    connection = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10)
    try:
        chunks = (body[i:i + 8192] for i in range(0, len(body), 8192))
        try:
            connection.request("PUT", "/dav/alice/personal/chunked.ics", body=chunks,
                               headers={**ICS, "Authorization": f"Basic {token}"},
                               encode_chunked=True)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before the whole body is sent
        status = connection.getresponse().status
    finally:
        connection.close()
    assert status in (411, 413), status
    assert "chunked.ics" not in items_of(db, "alice/personal")


# --------------------------------------------------------------------------- malformed iCalendar

MALFORMED = {
    "not-ical": "this is not a calendar at all\r\n",
    "unterminated": "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:u1@example.test\r\n",
    "bad-date": personal_event("bad-date@example.test", "x", at(1, 6), at(1, 7)).replace(
        "DTSTART:20310304T060000Z", "DTSTART:2031-99-99 nonsense"),
    "bad-end": personal_event("bad-end@example.test", "x", at(1, 6), at(1, 7)).replace(
        "DTEND:20310304T070000Z", "DTEND:tomorrow-ish"),
    "bad-rrule": personal_event("bad-rrule@example.test", "x", at(1, 6), at(1, 7),
                                rrule="FREQ=SOMETIMES;COUNT=many"),
    "no-uid": personal_event("no-uid@example.test", "x", at(1, 6), at(1, 7)).replace(
        "UID:no-uid@example.test\r\n", ""),
    "no-component": "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//x//EN\r\nEND:VCALENDAR\r\n",
}


def reason_given(text: str) -> bool:
    cleaned = text.strip().lower()
    return len(cleaned) >= 20 and cleaned != "bad request"


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_icalendar_is_400_with_a_reason(
    live: LiveServer, seed: Seed, db: Database, unchanged: None, case: str
) -> None:
    alice = seed.technicians["alice"]
    response = dav_request(live, "PUT", f"/dav/alice/personal/{case}.ics", alice.auth,
                           body=MALFORMED[case], headers=ICS)
    assert response.status_code == 400, (response.status_code, response.text)
    assert reason_given(response.text), response.text
    assert f"{case}.ics" not in items_of(db, "alice/personal")


def test_malformed_icalendar_on_a_job_is_400_and_the_job_is_untouched(
    live: LiveServer, seed: Seed, db: Database, unchanged: None
) -> None:
    alice, job = seed.technicians["alice"], seed.jobs["alice"][0]
    path = f"/dav/alice/jobs/{job.href}"
    before = items_of(db, "alice/jobs")[job.href].etag
    response = dav_request(live, "PUT", path, alice.auth, body=MALFORMED["unterminated"],
                           headers=ICS)
    assert response.status_code == 400, (response.status_code, response.text)
    assert reason_given(response.text), response.text
    assert items_of(db, "alice/jobs")[job.href].etag == before
