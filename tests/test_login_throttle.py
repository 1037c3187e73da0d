"""Password guessing over CalDAV is throttled per address and per login, answered at once,
and never locks out the real device (Linux routes all of 127/8 to loopback, so each test
client picks its own source address)."""

from __future__ import annotations

import base64
import http.client
import time
from dataclasses import dataclass

from live import LiveServer
from seeding import Seed

from server import login_throttle

DEVICE = "127.0.0.1"  # alice's phone
GUESSER = "127.0.0.2"  # someone guessing alice's password; bob's phone shares the address
ELSEWHERE = "127.0.0.3"  # alice's phone after it moved to another network


@dataclass(frozen=True)
class Answer:
    status: int
    retry_after: str | None
    seconds: float


def propfind(live: LiveServer, source: str, login: str, password: str) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10,
                                            source_address=(source, 0))
    credentials = base64.b64encode(f"{login}:{password}".encode()).decode()
    started = time.monotonic()
    try:
        connection.request("PROPFIND", f"/dav/{login}/", headers={
            "Authorization": f"Basic {credentials}", "Depth": "0"})
        response = connection.getresponse()
        response.read()
        return Answer(response.status, response.getheader("Retry-After"),
                      time.monotonic() - started)
    finally:
        connection.close()


def test_guessing_is_throttled_and_the_real_devices_keep_working(live: LiveServer,
                                                                seed: Seed) -> None:
    alice, bob, carol = (seed.technicians[name] for name in ("alice", "bob", "carol"))
    assert propfind(live, DEVICE, *alice.auth).status == 207
    assert propfind(live, GUESSER, *bob.auth).status == 207

    answers: list[Answer] = []
    for attempt in range(200):
        answers.append(propfind(live, GUESSER, alice.login, f"guess-{attempt}"))
        if attempt % 20 == 0:
            assert propfind(live, DEVICE, *alice.auth).status == 207, attempt
            assert propfind(live, GUESSER, *bob.auth).status == 207, attempt

    statuses = [a.status for a in answers]
    assert set(statuses[:login_throttle.LOGIN_FAILURES]) == {401}
    assert 429 in statuses
    first = statuses.index(429)
    assert first <= login_throttle.ADDRESS_FAILURES
    assert set(statuses[first:]) == {429}, "once throttled, the guesser stays throttled"
    refused = answers[first:]
    assert all(a.retry_after and 0 < int(a.retry_after) <= 15 * 60 for a in refused)
    assert max(a.seconds for a in refused) < 0.5, max(a.seconds for a in refused)

    # after: the phone, the neighbour, and the phone from a new network all still sign in
    assert propfind(live, DEVICE, *alice.auth).status == 207
    assert propfind(live, GUESSER, *bob.auth).status == 207
    assert propfind(live, ELSEWHERE, *alice.auth).status == 207
    # a wrong password for the guessed login is 429 from anywhere; other logins are untouched
    assert propfind(live, ELSEWHERE, alice.login, "another-guess").status == 429
    assert propfind(live, ELSEWHERE, carol.login, "wrong").status == 401
    assert propfind(live, ELSEWHERE, *carol.auth).status == 207
    # the guesser's address is refused without a password check, even the right one
    assert propfind(live, GUESSER, *alice.auth).status == 429


def test_anonymous_requests_are_not_counted(live: LiveServer, seed: Seed) -> None:
    source = "127.0.0.5"
    for _ in range(login_throttle.ADDRESS_FAILURES + 5):
        connection = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10,
                                                source_address=(source, 0))
        try:
            connection.request("PROPFIND", "/dav/carol/", headers={"Depth": "0"})
            assert connection.getresponse().status == 401
        finally:
            connection.close()
    assert propfind(live, source, *seed.technicians["carol"].auth).status == 207
