"""The load mix's generator (arrivals at the business's rates, times the scale) and its booking
page journey against a live server."""

from __future__ import annotations

import random
from collections import Counter

import httpx
import pytest
from live import LiveServer
from sqlalchemy import select

from bench import loadmix_booking
from bench.loadmix import RATES, Kind, arrivals
from server.actors import SYSTEM
from server.context import Context
from server.db import Database
from server.models import Appointment, AppointmentStatus, Customer, Job


def test_arrivals_follow_the_rates_times_the_scale() -> None:
    seconds, scale = 600.0, 4.0
    found = arrivals(scale, seconds, random.Random(7))
    times = [at for at, _kind in found]
    assert times == sorted(times) and 0 <= times[0] and times[-1] < seconds
    counts = Counter(kind for _at, kind in found)
    assert set(RATES) == set(Kind)
    for kind in (Kind.SYNC, Kind.FEED, Kind.WRITE):
        expected = RATES[kind] * scale * seconds
        assert abs(counts[kind] - expected) < 5 * expected ** 0.5, (kind, counts[kind], expected)
    assert RATES[Kind.WRITE] == 30 / 5 and round(RATES[Kind.FEED] * 3600) == 5000


def test_doubling_the_scale_doubles_the_load() -> None:
    one = len(arrivals(1.0, 600.0, random.Random(1)))
    two = len(arrivals(2.0, 600.0, random.Random(1)))
    assert 1.7 < two / one < 2.3


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    return dict(loadmix_booking.SERVER_ENV)


def test_the_booking_page_journey_ends_confirmed_for_each_new_customer(live: LiveServer,
                                                                      db: Database) -> None:
    with db.write() as session:
        loadmix_booking.seed(Context(session, SYSTEM, "dispatch@example.test"))
    rng = random.Random(3)
    with httpx.Client(timeout=30) as client:
        outcomes = [loadmix_booking.journey(client, live.base, number, rng) for number in (1, 2, 3)]
    assert outcomes == [True, True, True]
    with db.read() as session:
        booked = session.scalars(select(Appointment).join(Job).join(Customer)
                                 .where(Customer.email.like("page%@bench.test"))).all()
        assert len(booked) == 3
        assert {a.status for a in booked} == {AppointmentStatus.CONFIRMED}
        assert len({a.job.customer.email for a in booked}) == 3
