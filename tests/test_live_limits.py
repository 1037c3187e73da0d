"""Limits that only the whole server shows: the rate limit counts across both gunicorn
workers (it lives in the database), and booking POSTs over the body limit get 413."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from bookkit import BookingSeed, confirmed_booking, details, free_starts, seed_booking
from live import HTTP_TIMEOUT_S
from pidkit import Workers, with_access_log
from seeding import Seed

from server.db import Database
from server.links import LinkSigner
from server.models import utcnow

KEYS = secrets.token_urlsafe(32)
RATE = 10
MAX_BODY = 64 * 1024


@dataclass
class Limited:
    workers: Workers
    booking: BookingSeed
    db: Database


@pytest.fixture(scope="module")
def limited(seed: Seed, db: Database, database_url: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Limited]:
    booking_seed = seed_booking(db, prefix="limits-")
    server, access_log = with_access_log(database_url, tmp_path_factory.mktemp("limits"), {
        "FIELDCAL_SECRET_KEYS": KEYS, "FIELDCAL_BOOKING_RATE": str(RATE),
        "FIELDCAL_MAX_BODY_BYTES": str(MAX_BODY)})
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield Limited(Workers(server, access_log), booking_seed, db)
    finally:
        server.stop()


def test_manage_rate_limit_counts_across_workers(limited: Limited) -> None:
    now = utcnow()
    start = next(s for s in free_starts(limited.db, limited.booking.repair, now)
                 if s > now + dt.timedelta(days=5))
    _visit, token = confirmed_booking(limited.db, LinkSigner((KEYS,)), limited.booking.repair, start,
                                      f"rate-{secrets.token_hex(3)}@example.test", secrets.token_urlsafe(18))
    workers = limited.workers

    def post(probe: str) -> requests.Response:  # a forged form: refused (403) unless rate-limited
        return requests.post(workers.server.url(f"/m/{token}/cancel?{probe}"), data={"csrf": "x" * 40},
                             allow_redirects=False, timeout=HTTP_TIMEOUT_S)

    answers = workers.read_on_both(post)
    while len(answers) < RATE + 4:
        answers += workers.read_on_both(post)
    by_worker: dict[str, list[int]] = {}
    for pid, answer in answers:
        by_worker.setdefault(pid, []).append(answer.status_code)
    codes = [answer.status_code for _, answer in answers]
    assert set(codes) <= {403, 429}, codes
    assert codes.count(403) == RATE, f"{RATE} POSTs in the window, whichever worker took them: {by_worker}"
    assert len(by_worker) == 2 and all(by_worker.values())
    limited_answer = next(a for _, a in answers if a.status_code == 429)
    assert int(limited_answer.headers["Retry-After"]) >= 1 and "Please slow down" in limited_answer.text


@pytest.mark.parametrize("path", ["/book/{slug}/details", "/book/{slug}/hold", "/book/{slug}/slots"])
def test_booking_posts_over_the_body_limit_get_413(limited: Limited, path: str) -> None:
    url = limited.workers.server.url(path.format(slug=limited.booking.repair))
    form = details("big@example.test", problem="x" * (MAX_BODY + 1))
    response = requests.post(url, data=form, timeout=HTTP_TIMEOUT_S)
    assert response.status_code == 413, response.text[:300]
    small = requests.post(limited.workers.server.url(f"/book/{limited.booking.repair}/details"),
                          data=details("small@example.test"), timeout=HTTP_TIMEOUT_S)
    assert small.status_code == 200, "the server is still serving"
