"""Free slots: working hours in each technician's zone, DST, buffers, busy items, fairness."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import IntegrityError

from server import calendars, directory
from server.actors import SYSTEM
from server.context import Context
from server.db import Database
from server.errors import SlotTaken
from server.migrate import upgrade
from server.models import Appointment, Job, Role, ServiceType, User
from server.scheduling import appointments, capacity
from server.scheduling.availability import Slot, free_slots

ORGANIZER = "dispatch@example.test"
BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
WEEKDAYS = {d: [("08:00", "12:00"), ("13:00", "17:00")] for d in range(5)}
NOW = dt.datetime(2031, 3, 20, 12, tzinfo=dt.UTC)  # Thursday, before both DST changes


@pytest.fixture()
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    upgrade(database)
    with database.write() as session:  # each test starts from empty tables
        for table in ("appointment", "job", "calendar_item", "change", "time_off", "working_hours",
                      "service_type", "team_member", "site", "collection", "credential", "customer",
                      "outbox_message", "share_link", "audit_entry", '"user"', "team"):
            session.execute(text(f"DELETE FROM {table}"))
    yield database
    database.dispose()


def tech(ctx: Context, login: str, zone: str, skills: list[str] | None = None) -> User:
    user = directory.add_user(ctx, login, name=login.title(), email=f"{login}@example.test",
                              role=Role.TECHNICIAN,
                              timezone=zone, skills=skills or ["screw"])
    capacity.set_working_hours(ctx, user, WEEKDAYS)
    return user


def service(ctx: Context, **kw: object) -> ServiceType:
    options: dict[str, object] = {"duration_minutes": 60, "skills": ["screw"], "min_notice_minutes": 0,
                                  "horizon_days": 60}
    options.update(kw)
    return capacity.add_service_type(ctx, kw.pop("slug", "repair"), "Repair", **options)  # type: ignore[arg-type]


def book_at(ctx: Context, technician: User, starts: dt.datetime, minutes: int = 60,
            service_type: ServiceType | None = None) -> None:
    customer = directory.add_customer(ctx, "C", email="c@example.test", address="Somewhere 1")
    job = directory.add_job(ctx, customer, "Visit")
    appointments.book(ctx, job, technician, starts, starts + dt.timedelta(minutes=minutes),
                      service_type=service_type)


def local(zone: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=zone).astimezone(dt.UTC)


def window_of(offer: Slot) -> tuple[dt.datetime, dt.datetime]:
    """The arrival window of an offer that has one."""
    assert offer.window is not None, offer
    return offer.window


def starts(slots: list, zone: ZoneInfo) -> list[str]:
    return [s.starts_at.astimezone(zone).strftime("%Y-%m-%d %H:%M") for s in slots]


def test_working_hours_in_each_technicians_zone(db: Database) -> None:
    with db.write() as s:
        ctx = Context(s, SYSTEM, ORGANIZER)
        berlin, new_york = tech(ctx, "anna", "Europe/Berlin"), tech(ctx, "ned", "America/New_York")
        st = service(ctx)
        day = local(BERLIN, 2031, 3, 24)  # Monday
        slots = free_slots(s, st, start=day, end=day + dt.timedelta(days=1), now=NOW)
        anna = [x for x in slots if berlin.id in x.technician_ids]
        ned = [x for x in slots if new_york.id in x.technician_ids]
        assert starts(anna, BERLIN)[0] == "2031-03-24 08:00"
        assert starts(anna, BERLIN)[-1] == "2031-03-24 16:00"
        assert "2031-03-24 11:30" not in starts(anna, BERLIN), "a visit may not run into lunch"
        assert "2031-03-24 12:00" not in starts(anna, BERLIN)
        assert starts(ned, NEW_YORK)[0] == "2031-03-24 08:00"
        assert len(anna) == len(ned) == 14


def test_dst_transition_keeps_local_hours(db: Database) -> None:
    with db.write() as s:
        ctx = Context(s, SYSTEM, ORGANIZER)
        anna = tech(ctx, "anna", "Europe/Berlin")
        st = service(ctx)
        # Europe switches to summer time on Sunday 2031-03-30.
        before, after = local(BERLIN, 2031, 3, 28), local(BERLIN, 2031, 3, 31)
        friday = free_slots(s, st, start=before, end=before + dt.timedelta(days=1), now=NOW)
        monday = free_slots(s, st, start=after, end=after + dt.timedelta(days=1), now=NOW)
        assert starts(friday, BERLIN)[0] == "2031-03-28 08:00"
        assert starts(monday, BERLIN)[0] == "2031-03-31 08:00"
        assert friday[0].starts_at.hour == 7 and monday[0].starts_at.hour == 6, "UTC shifts by an hour"
        assert anna.id in monday[0].technician_ids


def test_appointments_buffers_and_travel_block_time(db: Database) -> None:
    with db.write() as s:
        ctx = Context(s, SYSTEM, ORGANIZER)
        anna = tech(ctx, "anna", "Europe/Berlin")
        st = service(ctx, buffer_before_minutes=15, buffer_after_minutes=15, travel_minutes=30)
        book_at(ctx, anna, local(BERLIN, 2031, 3, 24, 10), service_type=st)
        day = local(BERLIN, 2031, 3, 24)
        got = starts(free_slots(s, st, start=day, end=day + dt.timedelta(days=1), now=NOW), BERLIN)
        # Booked 10:00-11:00 blocks 09:45-11:45. A new visit needs 15 min before and 45 after.
        assert "2031-03-24 08:00" in got and "2031-03-24 08:30" not in got
        assert "2031-03-24 11:30" not in got and "2031-03-24 13:00" in got


def test_personal_recurring_busy_items_and_time_off(db: Database) -> None:
    with db.write() as s:
        ctx = Context(s, SYSTEM, ORGANIZER)
        anna = tech(ctx, "anna", "Europe/Berlin")
        st = service(ctx)
        personal = calendars.require_collection(s, calendars.personal_path("anna"))
        calendars.put_item(ctx, personal, "gym.ics", (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:gym\r\n"
            "DTSTAMP:20310101T000000Z\r\nDTSTART;TZID=Europe/Berlin:20310303T080000\r\n"
            "DTEND;TZID=Europe/Berlin:20310303T100000\r\nRRULE:FREQ=WEEKLY;BYDAY=MO\r\n"
            "SUMMARY:Gym\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"))
        calendars.put_item(ctx, personal, "free.ics", (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:free\r\n"
            "DTSTAMP:20310101T000000Z\r\nDTSTART:20310324T130000Z\r\nDTEND:20310324T160000Z\r\n"
            "TRANSP:TRANSPARENT\r\nSUMMARY:Reachable\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"))
        capacity.add_time_off(ctx, None, local(BERLIN, 2031, 3, 25), local(BERLIN, 2031, 3, 26), "Holiday")
        capacity.add_time_off(ctx, anna, local(BERLIN, 2031, 3, 26, 13), local(BERLIN, 2031, 3, 27))
        day = local(BERLIN, 2031, 3, 24)
        got = starts(free_slots(s, st, start=day, end=day + dt.timedelta(days=4), now=NOW), BERLIN)
        monday = [g for g in got if g.startswith("2031-03-24")]
        assert monday[0] == "2031-03-24 10:00", "the weekly gym slot is busy (recurrence expanded)"
        assert "2031-03-24 14:00" in monday, "transparent items do not block"
        assert not [g for g in got if g.startswith("2031-03-25")], "holiday"
        assert [g for g in got if g.startswith("2031-03-26")][-1] == "2031-03-26 11:00"
        assert any(g.startswith("2031-03-27") for g in got)


def test_notice_horizon_and_skills(db: Database) -> None:
    with db.write() as s:
        ctx = Context(s, SYSTEM, ORGANIZER)
        tech(ctx, "anna", "Europe/Berlin", skills=["screw"])
        tech(ctx, "pete", "Europe/Berlin", skills=["piston"])
        st = service(ctx, min_notice_minutes=24 * 60, horizon_days=5)
        slots = free_slots(s, st, start=NOW - dt.timedelta(days=3), end=NOW + dt.timedelta(days=30), now=NOW)
        assert slots[0].starts_at >= NOW + dt.timedelta(days=1)
        assert slots[-1].starts_at <= NOW + dt.timedelta(days=5)
        anna_id = s.scalar(select(User.id).where(User.login == "anna"))
        assert {t for slot in slots for t in slot.technician_ids} == {anna_id}


def test_fair_choice_least_booked_then_round_robin(db: Database) -> None:
    with db.write() as s:
        ctx = Context(s, SYSTEM, ORGANIZER)
        anna, bert = tech(ctx, "anna", "Europe/Berlin"), tech(ctx, "bert", "Europe/Berlin")
        st = service(ctx)
        day = local(BERLIN, 2031, 3, 24)
        first = free_slots(s, st, start=day, end=day + dt.timedelta(days=1), now=NOW)[0]
        assert first.technician_ids == (anna.id, bert.id), "tie: neither booked yet, lowest id"
        book_at(ctx, anna, local(BERLIN, 2031, 3, 25, 9))
        first = free_slots(s, st, start=day, end=day + dt.timedelta(days=1), now=NOW)[0]
        assert first.technician_ids[0] == bert.id, "least booked first"
        book_at(ctx, bert, local(BERLIN, 2031, 3, 25, 9))
        first = free_slots(s, st, start=day, end=day + dt.timedelta(days=1), now=NOW)[0]
        assert first.technician_ids[0] == anna.id, "equal counts: longest since the last booking"


def test_arrival_windows_with_capacity(db: Database) -> None:
    with db.write() as s:
        ctx = Context(s, SYSTEM, ORGANIZER)
        anna = tech(ctx, "anna", "Europe/Berlin")
        st = service(ctx, arrival_windows=["08:00-12:00", "13:00-17:00"], window_capacity=1)
        day = local(BERLIN, 2031, 3, 24)
        offers = free_slots(s, st, start=day, end=day + dt.timedelta(days=1), now=NOW,
                            windows_zone="Europe/Berlin")
        assert [(window_of(o)[0].astimezone(BERLIN).hour, window_of(o)[1].astimezone(BERLIN).hour)
                for o in offers] == [(8, 12), (13, 17)]
        customer = directory.add_customer(ctx, "C", email="c@example.test", address="Somewhere 1")
        job = directory.add_job(ctx, customer, "Visit")
        appointments.book(ctx, job, anna, offers[0].starts_at, offers[0].ends_at,
                          window=offers[0].window, service_type=st)
        again = free_slots(s, st, start=day, end=day + dt.timedelta(days=1), now=NOW,
                           windows_zone="Europe/Berlin")
        assert len(again) == 1 and again[0].window == offers[1].window, "capacity 1 per window"


def test_database_guard_covers_buffers(db: Database) -> None:
    with db.write() as s:
        ctx = Context(s, SYSTEM, ORGANIZER)
        anna = tech(ctx, "anna", "Europe/Berlin")
        st = service(ctx, buffer_after_minutes=30)
        book_at(ctx, anna, local(BERLIN, 2031, 3, 24, 10), service_type=st)
        with pytest.raises(SlotTaken):
            book_at(ctx, anna, local(BERLIN, 2031, 3, 24, 11, 15), service_type=st)


def _raw_insert(db: Database, login: str, uid: str, starts: dt.datetime, ends: dt.datetime,
                blocked_from: dt.datetime, blocked_until: dt.datetime) -> None:
    """An appointment row written straight to the table: no friendly check runs."""
    with db.write() as s:
        technician = directory.find_user(s, login)
        job_id = s.scalars(select(Job.id).order_by(Job.id)).first()
        s.execute(insert(Appointment).values(
            uid=uid, job_id=job_id, technician_id=technician.id, starts_at=starts, ends_at=ends,
            blocked_from=blocked_from, blocked_until=blocked_until, status="confirmed",
            partstat="NEEDS-ACTION", sequence=0, created_at=NOW, updated_at=NOW))


def _refused_by_the_database(caught: pytest.ExceptionInfo[IntegrityError]) -> bool:
    text_of = str(caught.value).lower()
    return "overlap" in text_of or "23p01" in text_of or "exclusion" in text_of


def test_database_itself_refuses_an_overlap_only_in_the_buffers(db: Database) -> None:
    """The trigger (SQLite) or exclusion constraint (PostgreSQL) guards the buffered span,
    even when the friendly check is bypassed."""
    ten = local(BERLIN, 2031, 3, 24, 10)
    hour, quarter = dt.timedelta(hours=1), dt.timedelta(minutes=15)
    with db.write() as s:
        ctx = Context(s, SYSTEM, ORGANIZER)
        anna = tech(ctx, "anna", "Europe/Berlin")
        st = service(ctx, buffer_after_minutes=30)
        book_at(ctx, anna, ten, service_type=st)  # 10:00-11:00, blocked until 11:30
    # Into the existing visit's buffer after (the visit times themselves only touch).
    with pytest.raises(IntegrityError) as caught:
        _raw_insert(db, "anna", "raw-after", ten + hour + quarter, ten + 2 * hour,
                    ten + hour + quarter, ten + 2 * hour)
    assert _refused_by_the_database(caught), caught.value
    # A new visit whose own buffer before reaches back into the existing visit.
    with pytest.raises(IntegrityError) as caught:
        _raw_insert(db, "anna", "raw-before", ten + 2 * hour, ten + 3 * hour,
                    ten + hour, ten + 3 * hour)
    assert _refused_by_the_database(caught), caught.value
    # A raw UPDATE that widens a clear visit's buffer into its neighbour is refused too.
    _raw_insert(db, "anna", "raw-clear", ten + 2 * hour, ten + 3 * hour, ten + 2 * hour, ten + 3 * hour)
    with pytest.raises(IntegrityError) as caught, db.write() as s:
        s.execute(update(Appointment).where(Appointment.uid == "raw-clear")
                  .values(blocked_from=ten + hour + quarter))
    assert _refused_by_the_database(caught), caught.value
    with db.read() as s:
        uids = set(s.scalars(select(Appointment.uid)))
        clear = s.scalars(select(Appointment).where(Appointment.uid == "raw-clear")).one()
        assert "raw-after" not in uids and "raw-before" not in uids
        assert clear.blocked_from == ten + 2 * hour, "the refused update left the row as it was"
