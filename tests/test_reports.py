"""Every report against the hand-computed fixture of reportkit.py: exact equality, both backends."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from reportkit import BUSINESS_ZONE, REPORT_NOW, WEEK_END, WEEK_START, Fixture, build

from server import reports
from server.db import Database
from server.errors import InvalidInput, NotFound
from server.reports import Filters, Metric
from server.reports.patterns import by_hour, by_weekday


@pytest.fixture(scope="module")
def fixture(database_url: str) -> Fixture:
    return build(database_url)


@pytest.fixture(scope="module")
def db(fixture: Fixture) -> Iterator[Database]:
    database = Database(fixture.url)
    yield database
    database.dispose()


def week(team: str | None = None, technician: str | None = None) -> Filters:
    return Filters(WEEK_START, WEEK_END, team=team, technician=technician)


def around(fixture: Fixture, team: str | None = None) -> Filters:
    """The day around the fixture's writing: the audit trail's and the outbox's times."""
    day = dt.timedelta(days=1)
    return Filters(fixture.now - day, fixture.now + day, team=team)


def run(db: Database, metric: Metric, filters: Filters) -> reports.Report:
    with db.read() as session:
        return reports.run(session, metric, filters, business_zone=BUSINESS_ZONE, now=REPORT_NOW)


def test_visits_by_channel(db: Database, fixture: Fixture) -> None:
    report = run(db, Metric.VISITS, around(fixture))
    assert report.columns == ("channel", "booked", "completed", "cancelled", "rescheduled", "holds_lapsed")
    # A1 A5 A6 B1 booked and A1 moved over the API; A4 booked and A1 A3 A6 completed on a
    # phone; A3 and T1-T4 from the CLI; A2 (then cancelled) and U1 on the web
    assert report.rows == [("api", 4, 0, 0, 1, 0), ("caldav", 1, 3, 0, 0, 0), ("cli", 5, 0, 0, 0, 0),
                           ("web", 2, 0, 1, 0, 0)]
    assert report.summary == {"booked": 12, "completed": 3, "cancelled": 1, "rescheduled": 1,
                              "holds_lapsed": 0}
    berlin = run(db, Metric.VISITS, around(fixture, team="berlin"))
    assert berlin.rows == [("api", 3, 0, 0, 1, 0), ("caldav", 1, 3, 0, 0, 0), ("cli", 1, 0, 0, 0, 0),
                           ("web", 1, 0, 1, 0, 0)]


def test_visits_outside_the_range_are_not_counted(db: Database, fixture: Fixture) -> None:
    later = Filters(fixture.now + dt.timedelta(days=1), fixture.now + dt.timedelta(days=2))
    assert run(db, Metric.VISITS, later).rows == []


def test_no_shows(db: Database) -> None:
    # past, not cancelled, assigned: A1 A3 A4 A5 A6 B1; only A4 has no on-site or completed
    report = run(db, Metric.NO_SHOWS, week())
    assert report.rows == [(6, 1, 0.1667)]
    assert run(db, Metric.NO_SHOWS, week(technician="bob")).rows == [(1, 0, 0.0)]


def test_time_to_service(db: Database) -> None:
    # J1 2 h; J2 46 h (to the rebooked A3, not the cancelled A2's 23 h); J4 121 h; J5 72 h;
    # JB1 27 h; one job still waits
    report = run(db, Metric.TIME_TO_SERVICE, week())
    assert report.rows == [("under 24 h", 1), ("1-3 days", 2), ("3-7 days", 2), ("over 7 days", 0),
                           ("no visit yet", 1)]
    assert report.summary == {"jobs": 6, "served": 5, "mean_hours": 53.6, "longest_hours": 121.0}
    bob = run(db, Metric.TIME_TO_SERVICE, week(technician="bob"))
    assert bob.summary == {"jobs": 1, "served": 1, "mean_hours": 27.0, "longest_hours": 27.0}


def test_first_time_fix(db: Database) -> None:
    # completed: J1 (one visit), J2 (A2 cancelled, A3 done: one visit), J5 (A5 and A6: two)
    report = run(db, Metric.FIRST_TIME_FIX, week())
    assert report.rows == [(3, 2, 0.6667)]
    assert run(db, Metric.FIRST_TIME_FIX, week(team="newyork")).rows == [(0, 0, None)]


def test_on_time_arrival(db: Database, fixture: Fixture) -> None:
    # T1 inside its window, T2 before it, T3 after it, T4 never recorded
    report = run(db, Metric.ON_TIME, around(fixture))
    assert report.rows == [(4, 3, 1, 1, 1, 1, 0.3333)]
    # B1's window is in 2031; its "on site" was recorded today: early
    assert run(db, Metric.ON_TIME, week()).rows == [(1, 1, 0, 1, 0, 0, 0.0)]


def test_utilisation(db: Database) -> None:
    # anna: 8 h of visits + 5 x 30 min travel over 31 h (Mon 8, Tue 8, Wed 8-4, Thu 8,
    # Fri 0 (holiday and leave count once), Sun 3 (the clock change day)).
    # bob: B1's 2 h (across his midnight) + 30 min travel over 32 h (Mon-Thu; Fri holiday).
    report = run(db, Metric.UTILISATION, week())
    assert report.rows == [("anna", 8.0, 2.5, 31.0, 0.3387), ("bob", 2.0, 0.5, 32.0, 0.0781)]
    assert report.summary == {"booked_hours": 10.0, "travel_hours": 3.0, "working_hours": 63.0,
                              "utilisation": 0.2063}
    assert run(db, Metric.UTILISATION, week(team="berlin")).rows == [("anna", 8.0, 2.5, 31.0, 0.3387)]


def test_utilisation_clips_to_the_range(db: Database) -> None:
    # Sunday 2031-03-30 only: anna's 01:00-05:00 shift is 3 h that day, A4 fills 1 h
    sunday = Filters(dt.datetime(2031, 3, 29, 23, tzinfo=dt.UTC), dt.datetime(2031, 3, 30, 22, tzinfo=dt.UTC),
                     technician="anna")
    assert run(db, Metric.UTILISATION, sunday).rows == [("anna", 1.0, 0.5, 3.0, 0.5)]


def test_booking_hours(db: Database) -> None:
    report = run(db, Metric.BOOKING_HOURS, week())
    # A4 at 03:00 Berlin summer time on the clock change day; B1 at 23:00 Monday in New
    # York (Tuesday 03:00 UTC); U1 unassigned, in the business's zone
    assert report.rows == [("Mon", 9, 1), ("Mon", 23, 1), ("Wed", 9, 1), ("Wed", 16, 1),
                           ("Thu", 14, 1), ("Sat", 10, 1), ("Sun", 3, 1)]
    assert dict(by_weekday(report)) == {"Mon": 2, "Tue": 0, "Wed": 2, "Thu": 1, "Fri": 0, "Sat": 1,
                                        "Sun": 1}
    assert dict(by_hour(report))[9] == 2
    berlin = run(db, Metric.BOOKING_HOURS, week(team="berlin"))
    assert berlin.summary == {"visits": 5}


def test_integration_health(db: Database, fixture: Fixture) -> None:
    report = run(db, Metric.INTEGRATION_HEALTH, around(fixture))
    # 24 visit changes waiting for the (not running) worker; 4 pushes: 2 delivered (one on
    # its third try), 1 dead after 5 tries, 1 waiting
    assert report.rows == [
        ("appointment.changed", None, "", "", 24, 0, 24, 0, 0),
        ("platform.push", fixture.integration_id, "Dispatch", "slack", 4, 2, 1, 1, 7),
    ]


def test_unknown_names_and_bad_ranges_are_refused(db: Database) -> None:
    with pytest.raises(NotFound):
        run(db, Metric.VISITS, week(team="nowhere"))
    with pytest.raises(NotFound):
        run(db, Metric.VISITS, week(technician="nobody"))
    with pytest.raises(InvalidInput):
        Filters(WEEK_END, WEEK_START)
