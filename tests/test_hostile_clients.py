"""Clients that would stall, crash or confuse the server: deeply nested XML, stalled bodies,
malformed credentials, misspelt link tokens. Against gunicorn as `fieldcal serve` runs it."""

from __future__ import annotations

import base64
import secrets
import socket
import time
from collections.abc import Iterator

import pytest
import requests
from davkit import XML, raw_request
from live import LiveServer
from seeding import Seed, domain

from server import links
from server.db import Database
from server.links import LinkSigner, Purpose
from share.forms import FormSigner, HoldRef

SECRET = secrets.token_urlsafe(32)
READ_DEADLINE_S = 4  # the module's gunicorn --timeout: the deadline for reading one request


@pytest.fixture(scope="module")
def live(seed: Seed, database_url: str,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(database_url, tmp_path_factory.mktemp("instance"),
                        {"FIELDCAL_SECRET_KEYS": SECRET},
                        gunicorn_options=("--timeout", str(READ_DEADLINE_S)))
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def feed_token(db: Database) -> str:
    with domain(db) as ctx:
        subject = links.parse_subject(ctx.session, "technician:alice")
        link = links.issue(ctx, Purpose.FEED, subject)
        return LinkSigner((SECRET,)).dumps(link)


def answers_quickly(live: LiveServer, seed: Seed, feed_token: str) -> None:
    """A feed GET and a CalDAV PROPFIND, each answered within a second."""
    started = time.monotonic()
    feed = requests.get(live.url(f"/feeds/{feed_token}.ics"), timeout=5)
    feed_s = time.monotonic() - started
    assert feed.status_code == 200 and b"BEGIN:VCALENDAR" in feed.content
    started = time.monotonic()
    listing = raw_request(live, "PROPFIND", "/dav/alice/", auth=seed.technicians["alice"].auth,
                          headers={"Depth": "1"}, timeout=5)
    dav_s = time.monotonic() - started
    assert listing.status == 207, listing.text[:300]
    assert feed_s < 1.0 and dav_s < 1.0, (feed_s, dav_s)


# --------------------------------------------------------------------------- deep XML


def nested(inner: int, short: bool) -> bytes:
    """`inner` nested elements: <x:a> in a default namespace (7 bytes a level) or CalDAV filters."""
    if short:
        return b'<a xmlns="urn:x">' + b"<a>" * (inner - 1) + b"</a>" * inner
    return b'<C:comp-filter name="V">' * inner + b"</C:comp-filter>" * inner


def nested_propfind(depth: int) -> bytes:
    """A PROPFIND whose elements nest `depth` levels deep in all (propfind and prop included)."""
    return (b'<?xml version="1.0" encoding="utf-8"?>\n<D:propfind xmlns:D="DAV:"><D:prop>'
            + nested(depth - 2, short=True) + b"</D:prop></D:propfind>")


def nested_report(depth: int) -> bytes:
    return (b'<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            b"<D:prop><D:getetag/></D:prop><C:filter>" + nested(depth - 2, short=depth > 1_000)
            + b"</C:filter></C:calendar-query>")


def test_xml_a_hundred_levels_deep_is_served(live: LiveServer, seed: Seed) -> None:
    body = nested_propfind(100)
    response = raw_request(live, "PROPFIND", "/dav/alice/personal/",
                           auth=seed.technicians["alice"].auth, body=body,
                           headers={**XML, "Depth": "0"}, timeout=10)
    assert response.status == 207, response.text[:300]


def test_an_element_without_namespace_is_400(live: LiveServer, seed: Seed) -> None:
    body = b'<D:propfind xmlns:D="DAV:"><D:prop><bare/></D:prop></D:propfind>'
    response = raw_request(live, "PROPFIND", "/dav/alice/personal/",
                           auth=seed.technicians["alice"].auth, body=body,
                           headers={**XML, "Depth": "0"})
    assert response.status == 400, (response.status, response.text[:300])
    assert "<bare> has no namespace" in response.text


@pytest.mark.parametrize("depth", [101, 1_000, 200_000])
@pytest.mark.parametrize("method", ["PROPFIND", "REPORT"])
def test_deeper_xml_is_400_at_once_and_the_worker_lives(
    live: LiveServer, seed: Seed, feed_token: str, method: str, depth: int
) -> None:
    body = nested_propfind(depth) if method == "PROPFIND" else nested_report(depth)
    if depth == 200_000:
        assert 1_300_000 < len(body) < 2 * 1024 * 1024, len(body)
    started = time.monotonic()
    response = raw_request(live, method, "/dav/alice/personal/",
                           auth=seed.technicians["alice"].auth, body=body,
                           headers={**XML, "Depth": "1"}, timeout=10)
    elapsed = time.monotonic() - started
    assert response.status == 400, (response.status, response.text[:300])
    assert "nested more than 100 levels" in response.text
    assert elapsed < 0.5, f"{elapsed:.3f} s"
    answers_quickly(live, seed, feed_token)
    assert "SIGSEGV" not in live.log_tail(200) and "Worker exiting" not in live.log_tail(200)


# --------------------------------------------------------------------------- stalled clients


def stalled_connection(live: LiveServer, path: str, headers: str) -> socket.socket:
    """Headers promising 200 bytes of body, then 13 bytes, then nothing."""
    sock = socket.create_connection(("127.0.0.1", live.port), timeout=READ_DEADLINE_S + 10)
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}"
                 "Content-Length: 200\r\n\r\n".encode() + b"thirteen byte")
    return sock


def test_ten_stalled_bodies_do_not_stop_anyone_else(live: LiveServer, seed: Seed,
                                                    feed_token: str) -> None:
    alice = base64.b64encode(":".join(seed.technicians["alice"].auth).encode()).decode()
    targets = [("/book/anything/details", "Content-Type: application/x-www-form-urlencoded\r\n"),
               ("/dav/alice/personal/", f"Authorization: Basic {alice}\r\n"
                                        "Content-Type: application/xml\r\n")]
    stalled = [stalled_connection(live, *targets[i % 2]) for i in range(10)]
    opened = time.monotonic()
    try:
        time.sleep(0.3)  # every stalled request has reached a thread
        for _ in range(3):
            answers_quickly(live, seed, feed_token)
        for sock in stalled:
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b"did not arrive in time" in answer
        held = time.monotonic() - opened
        assert held < READ_DEADLINE_S + 2, f"stalled requests were held {held:.1f} s"
    finally:
        for sock in stalled:
            sock.close()
    answers_quickly(live, seed, feed_token)


def test_stalled_headers_are_dropped_after_the_deadline(live: LiveServer, seed: Seed,
                                                       feed_token: str) -> None:
    stalled = []
    for _ in range(10):
        sock = socket.create_connection(("127.0.0.1", live.port), timeout=READ_DEADLINE_S + 10)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        stalled.append(sock)
    opened = time.monotonic()
    try:
        time.sleep(0.3)
        answers_quickly(live, seed, feed_token)
        for sock in stalled:
            try:
                answer = sock.recv(4096)
            except ConnectionResetError:
                answer = b""
            assert answer == b"", answer[:200]
        held = time.monotonic() - opened
        assert READ_DEADLINE_S - 1 < held < READ_DEADLINE_S + 2, f"held {held:.1f} s"
    finally:
        for sock in stalled:
            sock.close()


# --------------------------------------------------------------------------- malformed credentials

MALFORMED_BASIC = [
    "Basic !!!notbase64",
    "Basic " + base64.b64encode(b"no-colon-here").decode(),
    "Basic ",
    "Basic",
    "Basic====",
    "Basic bG9naW46cGFzcw",  # missing padding
    "Basic \xe9\xe9\xe9",
    "Basic " + base64.b64encode(b"alice:pw").decode() + " trailing",
]


@pytest.mark.parametrize("header", MALFORMED_BASIC)
@pytest.mark.parametrize("method", ["PROPFIND", "GET", "PUT"])
def test_malformed_basic_credentials_are_401(live: LiveServer, method: str, header: str) -> None:
    response = raw_request(live, method, "/dav/alice/personal/", auth=None,
                           body=b"" if method == "PUT" else None,
                           headers={"Authorization": header, "Depth": "0"})
    assert response.status == 401, (response.status, response.text[:300])
    assert response.headers.get("www-authenticate", "").startswith("Basic")


@pytest.mark.parametrize("header", MALFORMED_BASIC[:3])
@pytest.mark.parametrize("path", ["/healthz", "/book", "/s/nothing", "/.well-known/caldav"])
def test_malformed_basic_credentials_elsewhere_are_never_500(live: LiveServer, path: str,
                                                             header: str) -> None:
    response = raw_request(live, "GET", path, auth=None, headers={"Authorization": header})
    assert response.status < 500, (path, response.status)


def test_an_unknown_request_charset_is_400(live: LiveServer, seed: Seed) -> None:
    response = raw_request(live, "PROPFIND", "/dav/alice/personal/",
                           auth=seed.technicians["alice"].auth, body=nested_propfind(4),
                           headers={"Content-Type": "text/xml; charset=no-such-charset",
                                    "Depth": "0"})
    assert response.status == 400, (response.status, response.text[:300])
    assert "charset" in response.text


# --------------------------------------------------------------------------- canonical tokens


def misspellings(token: str) -> dict[str, str]:
    payload, stamp, signature = token.split(".")
    return {
        "appended !!": token + "!!",
        "inserted !!": f"{payload}.{stamp}.{signature[:5]}!!{signature[5:]}",
        "appended %C3%A9": token + "%C3%A9",
        "inserted %C3%A9": f"{payload}.{stamp}.{signature[:5]}%C3%A9{signature[5:]}",
        "padding =": token + "=",
        "padding in payload": f"{payload}=.{stamp}.{signature}",
        "unused low bits": low_bits_sibling(token),
    }


def test_only_the_exact_feed_token_opens_the_feed(live: LiveServer, feed_token: str) -> None:
    assert requests.get(live.url(f"/feeds/{feed_token}.ics"), timeout=10).status_code == 200
    for name, spelling in misspellings(feed_token).items():
        response = requests.get(live.url(f"/feeds/{spelling}.ics"), timeout=10)
        assert response.status_code == 404, (name, response.status_code)


def test_only_the_exact_share_token_opens_the_page(live: LiveServer, db: Database) -> None:
    with domain(db) as ctx:
        subject = links.parse_subject(ctx.session, "technician:alice")
        token = LinkSigner((SECRET,)).dumps(links.issue(ctx, Purpose.SHARE, subject))
    assert requests.get(live.url(f"/s/{token}"), timeout=10).status_code == 200
    not_found = requests.get(live.url("/s/not-a-token"), timeout=10)
    for name, spelling in misspellings(token).items():
        response = requests.get(live.url(f"/s/{spelling}"), timeout=10)
        assert response.status_code == 404, (name, response.status_code)
        assert response.text == not_found.text, name


def low_bits_sibling(token: str) -> str:
    """The same token with the unused low bits of its last character flipped (same bytes)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return token[:-1] + alphabet[alphabet.index(token[-1]) ^ 1]


def test_booking_tokens_are_accepted_only_as_issued() -> None:
    signer = FormSigner((SECRET,))
    ref = HoldRef(7, "k3y", "UTC")
    hold = signer.hold_token(ref)
    csrf = signer.csrf_token("confirm", 7, "k3y")
    assert signer.load_hold(hold) == ref
    assert signer.csrf_matches(csrf, "confirm", 7, "k3y")
    for spelling in (hold + "!!", hold + "=", hold + "é", hold[:9] + "!!" + hold[9:],
                     low_bits_sibling(hold)):
        assert signer.load_hold(spelling) is None, spelling
    for spelling in (csrf + "!!", csrf + "==", csrf + "%C3%A9", low_bits_sibling(csrf)):
        assert not signer.csrf_matches(spelling, "confirm", 7, "k3y"), spelling
