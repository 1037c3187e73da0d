"""Service areas, the rules a dispatcher may override, and travel between visits."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
from seeding import must_get
from sqlalchemy import select, text

from server import calendars, directory
from server.actors import SYSTEM, Actor
from server.addresses import PostalArea, parse_address
from server.audit import trail
from server.context import Context
from server.db import Database
from server.errors import Forbidden, InvalidInput, SlotTaken
from server.migrate import upgrade
from server.models import Appointment, Job, Role, ServiceType, Site, Team, User
from server.scheduling import appointments, areas, booking, capacity, travel
from server.scheduling.areas import Area, area_of_address
from server.scheduling.availability import free_slots
from server.scheduling.rules import (
    OutsideServiceArea,
    OutsideWorkingHours,
    OverPersonalTime,
    Override,
)

ORGANIZER = "dispatch@example.test"
BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
NOW = dt.datetime(2031, 3, 17, 6, tzinfo=dt.UTC)  # Monday
MONDAY = dt.date(2031, 3, 17)
DISPATCHER = Actor(name="dana", channel="cli", role="dispatcher", timezone="America/New_York")
ALEX = (52.5219, 13.4132)  # Alexanderplatz
POTSDAM = (52.3917, 13.0666)  # about 30 km away


@pytest.mark.parametrize(("address", "country", "postcode"), [
    ("Alexanderplatz 1, 10178 Berlin", "DE", "10178"),
    ("350 5th Ave, New York, NY 10118", "US", "10118"),
    ("10 Downing St, London SW1A 2AA", "GB", "SW1A 2AA"),
    ("5 Rue de Rivoli, 75001 Paris", "FR", "75001"),
    ("Hauptstraße 1\n10115 Berlin", "DE", "10115"),
    ("40 Newark St, Hoboken, NJ 07030", "US", "07030"),
    ("221B Baker Street, London NW1 6XE, United Kingdom", "GB", "NW1 6XE"),
    ("12 avenue Foch, 69006 Lyon, France", "FR", "69006"),
    ("Große Elbstraße 14, 22767 Hamburg, Germany", "DE", "22767"),
    ("1 Main St, Springfield, IL 62701-1234, USA", "US", "62701"),
    ("10 downing st, london sw1a2aa", "GB", "SW1A 2AA"),
])
def test_addresses_as_people_type_them(address: str, country: str, postcode: str) -> None:
    assert parse_address(address) == PostalArea(postcode, country)


def test_ambiguous_five_digit_codes_follow_the_customers_country() -> None:
    assert parse_address("Chemin 3, 31000 Toulouse").country == "FR"
    assert parse_address("Gewerbepark 3, 31000 Ort", "FR").country == "FR"
    assert parse_address("Gewerbepark 3, 31000 Ort", "DE").country == "DE"
    assert parse_address("somewhere without a postcode") == PostalArea("", "")
    assert area_of_address("Somewhere 1", "Europe/Berlin", country="de", postcode="10 115") \
        == Area("DE", "10115")
    with pytest.raises(InvalidInput, match="latitude"):
        area_of_address("x", latitude=95.0, longitude=1.0)


@pytest.mark.parametrize(("prefix", "postcode", "country", "serves"), [
    ("10", "10178", "DE", True),
    ("10", "11011", "DE", False),
    ("SW1", "SW1A 2AA", "GB", True),
    ("SW1", "SW19 1AA", "GB", False),
    ("SW", "SW19 1AA", "GB", True),
    ("S", "SW1A 2AA", "GB", False),
    ("SW1A 2", "SW1A 2AA", "GB", True),
    ("", "75001", "FR", True),
])
def test_postcode_prefixes(prefix: str, postcode: str, country: str, serves: bool) -> None:
    assert areas.postcode_matches(prefix, postcode, country) is serves


def test_haversine_and_travel_model() -> None:
    assert 27 < areas.haversine_km(ALEX, POTSDAM) < 29
    assert travel.TravelModel().minutes(ALEX, POTSDAM) == 54  # 27.6 km x 1.3 / 40 km/h
    assert travel.TravelModel(1.0, 60.0).minutes(ALEX, ALEX) == 0


@pytest.fixture()
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    upgrade(database)
    with database.write() as session:  # each test starts from empty tables
        for table in ("service_area", "appointment", "job", "calendar_item", "change", "time_off",
                      "working_hours", "service_type", "team_member", "site", "collection",
                      "credential", "customer", "outbox_message", "share_link", "audit_entry",
                      '"user"', "team"):
            session.execute(text(f"DELETE FROM {table}"))
    yield database
    database.dispose()


def tech(ctx: Context, login: str, zone: str, team: Team | None = None) -> User:
    user = directory.add_user(ctx, login, name=login.title(), email=f"{login}@example.test",
                              role=Role.TECHNICIAN, timezone=zone, skills=["screw"])
    capacity.set_working_hours(ctx, user, {d: [("08:00", "17:00")] for d in range(5)})
    if team is not None:
        directory.add_member(ctx, team, user)
    return user


def crews(ctx: Context) -> tuple[User, User]:
    """anna (Berlin crew: DE 10, 12) and ned (New York: US 100-104, and within 30 km of Times Sq)."""
    berlin, new_york = directory.add_team(ctx, "berlin", "Berlin"), directory.add_team(
        ctx, "new-york", "New York")
    for prefix in ("10", "12"):
        areas.add_service_area(ctx, team=berlin, country="DE", postcode_prefix=prefix)
    for prefix in ("100", "101", "102", "103", "104"):
        areas.add_service_area(ctx, team=new_york, country="us", postcode_prefix=prefix)
    ned = tech(ctx, "ned", "America/New_York", new_york)
    areas.add_service_area(ctx, technician=ned, country="US", centre=(40.758, -73.9855),
                           radius_km=30)
    return tech(ctx, "anna", "Europe/Berlin", berlin), ned


def job_at(ctx: Context, address: str, zone: str = "Europe/Berlin",
           point: tuple[float, float] | None = None) -> Job:
    customer = directory.add_customer(ctx, "C", email="c@example.test", timezone=zone,
                                      address=address, latitude=point[0] if point else None,
                                      longitude=point[1] if point else None)
    return directory.add_job(ctx, customer, "Visit")


def local(zone: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=zone).astimezone(dt.UTC)


def repair(ctx: Context, **options: object) -> ServiceType:
    values: dict[str, object] = {"duration_minutes": 60, "skills": ["screw"],
                                 "min_notice_minutes": 0, "horizon_days": 60}
    values.update(options)
    return capacity.add_service_type(ctx, "repair", "Repair", **values)  # type: ignore[arg-type]


def test_only_technicians_serving_the_site_are_offered(db: Database) -> None:
    with db.write() as s:
        ctx = Context(s, SYSTEM, ORGANIZER)
        anna, ned = crews(ctx)
        service = repair(ctx)
        plain = tech(ctx, "free", "Europe/Berlin")  # no area: serves every site
        ids = {anna.id: "anna", ned.id: "ned", plain.id: "free"}
    start, end = NOW, NOW + dt.timedelta(days=7)
    with db.read() as s:
        service = must_get(s, ServiceType, service.id)

        def offered(area: Area) -> set[str]:
            found = free_slots(s, service, start=start, end=end, now=NOW, area=area)
            return {ids[i] for slot in found for i in slot.technician_ids}

        assert offered(area_of_address("Alexanderplatz 1, 10178 Berlin")) == {"anna", "free"}
        assert offered(area_of_address("350 5th Ave, New York, NY 10118")) == {"ned", "free"}
        assert offered(area_of_address("Große Elbstraße 14, 22767 Hamburg")) == {"free"}
        assert offered(Area("US", "07030", 40.737, -74.03)) == {"ned", "free"}  # in ned's circle
        assert offered(area_of_address("no postcode here")) == {"free"}
        berlin_slots = free_slots(s, service, start=start, end=end, now=NOW,
                                  area=area_of_address("Alexanderplatz 1, 10178 Berlin"))
        assert all(local(BERLIN, 2031, 1, 1) < slot.starts_at for slot in berlin_slots)
        latest = max(slot.ends_at.astimezone(BERLIN).time() for slot in berlin_slots)
        assert latest <= dt.time(17, 0)  # never a New York evening slot


def test_dispatcher_booking_outside_the_area_needs_force_and_is_audited(db: Database) -> None:
    with db.write() as s:
        ctx = Context(s, DISPATCHER, ORGANIZER)
        anna, _ = crews(ctx)
        hamburg = job_at(ctx, "Große Elbstraße 14, 22767 Hamburg")
        starts = local(BERLIN, 2031, 3, 18, 9)
        with pytest.raises(OutsideServiceArea) as refused:
            appointments.book(ctx, hamburg, anna, starts, starts + dt.timedelta(hours=1))
        assert refused.value.status == 409
        assert refused.value.context()["problems"][0]["area"] == "DE 22767"
        assert "does not serve DE 22767" in refused.value.message
        assert "DE 10…; DE 12…" in refused.value.message
        with pytest.raises(InvalidInput, match="reason"):
            Override("  ")
        booked = appointments.book(ctx, hamburg, anna, starts, starts + dt.timedelta(hours=1),
                                   force=Override("Anna lives in Hamburg this week"))
        entries = trail(s, "appointment", booked.id)
        override = [e for e in entries if e.action == "appointment.override"]
        assert len(override) == 1 and override[0].actor == "dana"
        assert override[0].after is not None
        assert override[0].after["reason"] == "Anna lives in Hamburg this week"
        assert [p["rule"] for p in override[0].after["overridden"]] == ["area"]


def test_warnings_name_what_is_in_the_way_in_the_dispatchers_zone(db: Database) -> None:
    with db.write() as s:
        ctx = Context(s, DISPATCHER, ORGANIZER)
        anna, _ = crews(ctx)
        berlin_job = job_at(ctx, "Alexanderplatz 1, 10178 Berlin")
        evening = local(BERLIN, 2031, 3, 18, 18)
        with pytest.raises(OutsideWorkingHours) as late:
            appointments.book(ctx, berlin_job, anna, evening, evening + dt.timedelta(hours=1))
        # 18:00 Berlin is 13:00 in New York, where this dispatcher reads times
        assert "Tue 2031-03-18 13:00–14:00 America/New_York" in late.value.message
        assert "03:00–12:00 America/New_York" in late.value.message  # anna's day, 08-17 Berlin
        assert "Tue 2031-03-18 18:00–19:00 Europe/Berlin" in late.value.describe("Europe/Berlin")

        capacity.add_time_off(ctx, anna, local(BERLIN, 2031, 3, 19, 0), local(BERLIN, 2031, 3, 20, 0),
                              "training")
        collection = calendars.require_collection(s, calendars.personal_path("anna"))
        calendars.put_item(ctx, collection, "dentist.ics", (
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\n"
            "UID:dentist@t\r\nDTSTAMP:20310101T000000Z\r\nDTSTART:20310320T100000Z\r\n"
            "DTEND:20310320T110000Z\r\nSUMMARY:Dentist\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"))
        day_off = local(BERLIN, 2031, 3, 19, 9)
        with pytest.raises(OverPersonalTime, match="time off “training”"):
            appointments.book(ctx, berlin_job, anna, day_off, day_off + dt.timedelta(hours=1))
        dentist = local(BERLIN, 2031, 3, 20, 11, 30)
        with pytest.raises(OverPersonalTime) as busy:
            appointments.book(ctx, berlin_job, anna, dentist, dentist + dt.timedelta(hours=1))
        assert "personal event “Dentist” Thu 2031-03-20 06:00–07:00 America/New_York" \
            in busy.value.message
        booked = appointments.book(ctx, berlin_job, anna, dentist, dentist + dt.timedelta(hours=1),
                                   force=Override("customer only free then"))
        assert booked.technician_id == anna.id
        holiday = capacity.add_holiday(ctx, local(BERLIN, 2031, 3, 21, 0),
                                       local(BERLIN, 2031, 3, 22, 0), "Spring holiday")
        friday = local(BERLIN, 2031, 3, 21, 9)
        with pytest.raises(OverPersonalTime, match="holiday “Spring holiday”"):
            appointments.book(ctx, berlin_job, anna, friday, friday + dt.timedelta(hours=1))
        capacity.remove_time_off(ctx, holiday.id, None)
        appointments.book(ctx, berlin_job, anna, friday, friday + dt.timedelta(hours=1))


def test_only_dispatchers_may_force_and_reassign_checks_the_area(db: Database) -> None:
    with db.write() as s:
        ctx = Context(s, DISPATCHER, ORGANIZER)
        anna, ned = crews(ctx)
        new_york_job = job_at(ctx, "350 5th Ave, New York, NY 10118", "America/New_York")
        starts = local(NEW_YORK, 2031, 3, 18, 9)
        visit = appointments.book(ctx, new_york_job, ned, starts, starts + dt.timedelta(hours=1))
        with pytest.raises(OutsideServiceArea):
            appointments.reassign(ctx, visit, anna)
        customer = Context(s, Actor(name="c@example.test", channel="booking", role="customer"),
                           ORGANIZER)
        with pytest.raises(Forbidden):
            appointments.reassign(customer, visit, anna, force=Override("please"))
        with pytest.raises(OutsideServiceArea):
            appointments.reschedule(ctx, visit, starts, starts + dt.timedelta(hours=1),
                                    technician=anna)
        assert s.get(Appointment, visit.id).technician_id == ned.id  # type: ignore[union-attr]
        directory.update_user(ctx, ned, active=False)
        with pytest.raises(InvalidInput, match="inactive"):
            appointments.book(ctx, new_york_job, ned, starts + dt.timedelta(hours=2),
                              starts + dt.timedelta(hours=3))
        appointments.reschedule(ctx, visit, starts + dt.timedelta(hours=2),
                                starts + dt.timedelta(hours=3))  # a visit they already have


def test_self_booking_never_assigns_a_technician_outside_the_area(db: Database) -> None:
    with db.write() as s:
        ctx = Context(s, SYSTEM, ORGANIZER)
        anna, ned = crews(ctx)
        service = repair(ctx)
        for login in ("anna", "ned"):  # both work round the clock: only the area decides
            user = directory.find_user(s, login)
            capacity.set_working_hours(ctx, user, {d: [("00:00", "23:59")] for d in range(7)})
    contact = booking.Contact(name="Kim", email="kim@example.test", phone="", timezone="Europe/Berlin",
                              address="Alexanderplatz 1, 10178 Berlin", problem="Leaks")
    assert contact.area() == Area("DE", "10178")
    with db.write() as s:
        ctx = Context(s, SYSTEM, ORGANIZER)
        service = booking.service_type_by_slug(s, "repair")
        held = []
        for hour in (2, 9, 16, 22):  # Berlin night and day; New York day for 16 and 22
            starts_at = local(BERLIN, 2031, 3, 18, hour)
            with pytest.raises(SlotTaken):
                booking.hold(ctx, service, starts_at, contact, idempotency_key=f"k{hour}",
                             now=NOW, technician=ned)
            someone = dataclasses.replace(contact, email=f"kim{hour}@example.test")
            held.append(booking.hold(ctx, service, starts_at, someone, idempotency_key=f"a{hour}",
                                     now=NOW))
            booking.confirm(ctx, held[-1], now=NOW)
        assert {a.technician_id for a in held} == {anna.id}
        sites = s.scalars(select(Site).where(Site.address.like("Alexanderplatz%"))).all()
        assert {(site.country, site.postcode) for site in sites} == {("DE", "10178")}


def test_travel_between_sites_with_coordinates(db: Database) -> None:
    with db.write() as s:
        ctx = Context(s, SYSTEM, ORGANIZER)
        anna = tech(ctx, "anna", "Europe/Berlin")
        service = repair(ctx, travel_minutes=15)
        alex = job_at(ctx, "Alexanderplatz 1, 10178 Berlin", point=ALEX)
        potsdam = job_at(ctx, "Am Bahnhof 3, 14467 Potsdam", point=POTSDAM)
        first = appointments.book(ctx, alex, anna, local(BERLIN, 2031, 3, 18, 9),
                                  local(BERLIN, 2031, 3, 18, 10), service_type=service)
        # 54 min drive to Potsdam: a start 30 min after the first visit is refused, with why
        with pytest.raises(travel.NotEnoughTravelTime) as refused:
            appointments.book(ctx, potsdam, anna, local(BERLIN, 2031, 3, 18, 10, 30),
                              local(BERLIN, 2031, 3, 18, 11, 30), service_type=service)
        assert "needs 54 min to drive 35.9 km" in refused.value.message
        assert "10:54" in refused.value.message
        second = appointments.book(ctx, potsdam, anna, local(BERLIN, 2031, 3, 18, 11),
                                   local(BERLIN, 2031, 3, 18, 12), service_type=service)
        # the extra 39 min beyond the fixed 15 are blocked, so the database guard holds it
        assert second.blocked_from == local(BERLIN, 2031, 3, 18, 10, 21)
        # before the first visit: the drive from Potsdam must fit too (force overrides the
        # hours, never the drive)
        with pytest.raises(travel.NotEnoughTravelTime, match="must end by"):
            appointments.book(ctx, potsdam, anna, local(BERLIN, 2031, 3, 18, 7, 30),
                              local(BERLIN, 2031, 3, 18, 8, 30), service_type=service,
                              force=Override("early start agreed"))
        plan = travel.day_plan(s, anna, dt.date(2031, 3, 18))
        assert [v.appointment.id for v in plan.visits] == [first.id, second.id]
        leg = plan.visits[1].travel_before
        assert leg is not None and leg.computed and leg.minutes == 54 and leg.enough
        assert leg.distance_km == 35.9 and leg.gap_minutes == 60
        assert travel.day_plan_json(plan)["travel_minutes"] == 54
        # availability leaves the drive free as well: near Alexanderplatz after Potsdam
    with db.read() as s:
        service = must_get(s, ServiceType, service.id)
        starts = {slot.starts_at for slot in free_slots(
            s, service, start=local(BERLIN, 2031, 3, 18, 8), end=local(BERLIN, 2031, 3, 18, 17),
            now=NOW, area=area_of_address("x", country="DE", postcode="10178",
                                          latitude=52.5206, longitude=13.4094))}
        assert local(BERLIN, 2031, 3, 18, 12, 30) not in starts  # 15 fixed + 39 more
        assert local(BERLIN, 2031, 3, 18, 13) in starts  # 12:00 + 54 min drive
        plain = {slot.starts_at for slot in free_slots(
            s, service, start=local(BERLIN, 2031, 3, 18, 8), end=local(BERLIN, 2031, 3, 18, 17),
            now=NOW)}
        assert local(BERLIN, 2031, 3, 18, 12, 30) in plain  # without coordinates: fixed only


def test_team_travel_model_and_remote_services(db: Database) -> None:
    with db.write() as s:
        ctx = Context(s, SYSTEM, ORGANIZER)
        team = directory.add_team(ctx, "berlin", "Berlin")
        areas.add_service_area(ctx, team=team, country="DE", postcode_prefix="10")
        anna = tech(ctx, "anna", "Europe/Berlin", team)
        travel.set_team_travel(ctx, team, road_factor=1.0, speed_kmh=60)
        assert travel.model_for(anna).minutes(ALEX, POTSDAM) == 28
        with pytest.raises(InvalidInput):
            travel.set_team_travel(ctx, team, speed_kmh=0)
        remote = repair(ctx, remote=True)
        hamburg = job_at(ctx, "Große Elbstraße 14, 22767 Hamburg")
        starts = local(BERLIN, 2031, 3, 18, 9)
        appointments.book(ctx, hamburg, anna, starts, starts + dt.timedelta(hours=1),
                          service_type=remote)  # a call from the office: no area, no drive
        offered = free_slots(s, remote, start=NOW, end=NOW + dt.timedelta(days=2), now=NOW,
                             area=area_of_address("Große Elbstraße 14, 22767 Hamburg"))
        assert offered


def test_a_cancelled_visit_frees_the_drive_its_neighbour_blocked(db: Database) -> None:
    with db.write() as s:
        ctx = Context(s, SYSTEM, ORGANIZER)
        anna = tech(ctx, "anna", "Europe/Berlin")
        service = repair(ctx, travel_minutes=15)
        alex = job_at(ctx, "Alexanderplatz 1, 10178 Berlin", point=ALEX)
        potsdam = job_at(ctx, "Am Bahnhof 3, 14467 Potsdam", point=POTSDAM)
        first = appointments.book(ctx, alex, anna, local(BERLIN, 2031, 3, 18, 9),
                                  local(BERLIN, 2031, 3, 18, 10), service_type=service)
        second = appointments.book(ctx, potsdam, anna, local(BERLIN, 2031, 3, 18, 11),
                                   local(BERLIN, 2031, 3, 18, 12), service_type=service)
        assert second.blocked_from == local(BERLIN, 2031, 3, 18, 10, 21)
        appointments.cancel(ctx, first)
        assert second.blocked_from == local(BERLIN, 2031, 3, 18, 11)  # no drive from anywhere
        # and a visit booked before an existing one blocks the drive to it; moving that one
        # away gives the time back
        third = appointments.book(ctx, alex, anna, local(BERLIN, 2031, 3, 18, 9),
                                  local(BERLIN, 2031, 3, 18, 10), service_type=service)
        assert third.blocked_until == local(BERLIN, 2031, 3, 18, 10, 54)
        assert second.blocked_from == local(BERLIN, 2031, 3, 18, 11)
        appointments.reschedule(ctx, second, local(BERLIN, 2031, 3, 20, 11),
                                local(BERLIN, 2031, 3, 20, 12))
        assert third.blocked_until == local(BERLIN, 2031, 3, 18, 10, 15)
