"""Demo data: a small compressor-service business with crews in Berlin and New York.

Everything is created through the domain functions, in the caller's transaction,
with times placed around a given day. Loading is idempotent: if the demo
accounts exist, nothing is added (only fresh app passwords can be issued).
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import icalendar
from sqlalchemy import select

from server import calendars, directory, links, scheduling, staff
from server.context import Context
from server.models import (
    Appointment,
    AppointmentStatus,
    Credential,
    Customer,
    JobStatus,
    Role,
    ShareLink,
    User,
)
from server.scheduling import areas, capacity
from server.scheduling.travel import NotEnoughTravelTime

PASSWORD_LABEL = "demo"
BUSINESS_TIMEZONE = "Europe/Berlin"
BUSINESS_PHONE = "+49 30 5550 0100"
BUSINESS_EMAIL = "office@compressor-service.example.com"
DAYS_BACK = 7
DAYS_AHEAD = 7


@dataclass(frozen=True)
class Person:
    login: str
    name: str
    timezone: str
    skills: tuple[str, ...] = ()
    team: str = ""

    @property
    def email(self) -> str:
        return f"{self.login}@example.com"


@dataclass(frozen=True)
class CustomerSpec:
    name: str
    email: str
    phone: str
    timezone: str
    address: str
    make: str
    model: str
    serial: str
    team: str
    coordinates: tuple[float, float] | None = None


@dataclass(frozen=True)
class DemoAccount:
    login: str
    password: str
    role: str


TEAMS = (("berlin", "Berlin crew"), ("new-york", "New York crew"))
# Where each crew works: (country, postcode prefixes). Berlin and Potsdam; New York City
# and the New Jersey side of the Hudson.
TEAM_AREAS = {
    "berlin": ("DE", ("10", "12", "13", "14")),
    "new-york": ("US", ("100", "101", "102", "103", "104", "110", "111", "112", "113", "114",
                        "116", "070", "073")),
}
TECHNICIANS = (
    Person("anna", "Anna Schmidt", "Europe/Berlin", ("rotary-screw", "electrical"), "berlin"),
    Person("jonas", "Jonas Weber", "Europe/Berlin", ("piston", "dryers"), "berlin"),
    Person("maria", "Maria Lopez", "America/New_York", ("rotary-screw", "oil-free"), "new-york"),
    Person("sam", "Sam Carter", "America/New_York", ("piston", "electrical"), "new-york"),
)
DISPATCHER = Person("dana", "Dana Fischer", "Europe/Berlin")

CUSTOMERS = (
    CustomerSpec("Bäckerei Hoffmann GmbH", "service@hoffmann.example.com", "+49 30 5550 1234",
                 "Europe/Berlin", "Kastanienallee 12, 10435 Berlin", "Kaeser", "SK 22",
                 "KS-22-104877", "berlin", (52.5386, 13.4098)),
    CustomerSpec("Müller Metallbau KG", "werkstatt@mueller-metall.example.com", "+49 331 5550 88",
                 "Europe/Berlin", "Am Bahnhof 3, 14467 Potsdam", "Atlas Copco", "GA 30 VSD",
                 "API-918273", "berlin", (52.3917, 13.0666)),
    CustomerSpec("Spree Brauerei", "technik@spree-brauerei.example.com", "+49 30 5550 7781",
                 "Europe/Berlin", "Holzmarktstraße 25, 10243 Berlin", "BOGE", "C 9 LDN",
                 "BG-5521-09", "berlin", (52.5113, 13.4253)),
    CustomerSpec("Brooklyn Auto Body Inc.", "shop@brooklyn-autobody.example.com",
                 "+1 718 555 0142", "America/New_York", "118 Richards St, Brooklyn, NY 11231",
                 "Ingersoll Rand", "R11i", "IR-R11I-77311", "new-york", (40.6783, -74.0104)),
    CustomerSpec("Hudson Dental Lab", "lab@hudson-dental.example.com", "+1 201 555 0187",
                 "America/New_York", "40 Newark St, Hoboken, NJ 07030", "Quincy", "QGS 10",
                 "QN-10-55120", "new-york", (40.7370, -74.0300)),
)

JOBS = (
    ("Annual service", "Scheduled maintenance: oil, filters, separator check.", "normal"),
    ("Pressure drops under load", "Line pressure falls to 5 bar when both presses run.", "high"),
    ("Oil in the air line", "Oil mist at the point of use; separator suspected.", "high"),
    ("Replace air/oil separator", "Differential pressure above limit.", "normal"),
    ("Dryer alarm", "Refrigeration dryer shows a high dew point alarm.", "normal"),
    ("Noisy motor bearing", "Grinding noise from the main motor since Monday.", "urgent"),
    ("Safety valve inspection", "Yearly inspection of the receiver safety valve.", "low"),
    ("Condensate drain blocked", "Water in the line; drain does not open.", "normal"),
    ("Controller fault code", "Controller stops the machine after about 20 minutes.", "high"),
    ("Belt replacement", "Belt squeals on start-up.", "low"),
)
SOURCES = ("phone", "phone", "email", "web", "api")
WORKING_HOURS = ("08:00", "17:00")  # Monday to Friday, in each technician's zone
# Local start (hour, minute) and length in minutes of the day's possible visits.
SLOTS = ((8, 0, 120), (10, 30, 90), (13, 0, 120), (15, 30, 90))

VTIMEZONES = {
    "Europe/Berlin": (
        "BEGIN:VTIMEZONE\r\nTZID:Europe/Berlin\r\n"
        "BEGIN:DAYLIGHT\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nTZNAME:CEST\r\n"
        "DTSTART:19810329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\n"
        "BEGIN:STANDARD\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nTZNAME:CET\r\n"
        "DTSTART:19961027T030000\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nEND:STANDARD\r\n"
        "END:VTIMEZONE\r\n"
    ),
    "America/New_York": (
        "BEGIN:VTIMEZONE\r\nTZID:America/New_York\r\n"
        "BEGIN:DAYLIGHT\r\nTZOFFSETFROM:-0500\r\nTZOFFSETTO:-0400\r\nTZNAME:EDT\r\n"
        "DTSTART:20070311T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU\r\nEND:DAYLIGHT\r\n"
        "BEGIN:STANDARD\r\nTZOFFSETFROM:-0400\r\nTZOFFSETTO:-0500\r\nTZNAME:EST\r\n"
        "DTSTART:20071104T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU\r\nEND:STANDARD\r\n"
        "END:VTIMEZONE\r\n"
    ),
}


@dataclass(frozen=True)
class Visit:
    technician: Person
    customer: CustomerSpec
    job: tuple[str, str, str]
    source: str
    starts_at: dt.datetime
    ends_at: dt.datetime


def demo_logins() -> list[str]:
    return [p.login for p in TECHNICIANS] + [DISPATCHER.login]


def is_loaded(ctx: Context) -> bool:
    return ctx.session.scalars(select(User.id).where(User.login.in_(demo_logins()))).first() is not None


def ensure(ctx: Context, today: dt.date, now: dt.datetime) -> bool:
    """Load the demo unless it is there; True if it was loaded now."""
    if is_loaded(ctx):
        return False
    load(ctx, today, now)
    return True


def issue_passwords(ctx: Context) -> list[DemoAccount]:
    """A fresh demo app password for each demo account; it replaces the previous demo one.

    Passwords are stored hashed, so the earlier ones cannot be shown again: they are
    revoked instead of piling up. App passwords with another label (a phone's) stay.
    """
    accounts = []
    users = ctx.session.scalars(select(User).where(User.login.in_(demo_logins()))).all()
    by_login = {user.login: user for user in users}
    earlier = ctx.session.scalars(
        select(Credential.id).where(Credential.user_id.in_([u.id for u in users]),
                                    Credential.label == PASSWORD_LABEL,
                                    Credential.revoked_at.is_(None))).all()
    for credential_id in earlier:
        directory.revoke_password(ctx, credential_id)
    for login in demo_logins():
        user = by_login.get(login)
        if user is None:
            continue
        _, password = directory.issue_password(ctx, user, PASSWORD_LABEL)
        accounts.append(DemoAccount(login=login, password=password, role=user.role))
    return accounts


def issue_console_password(ctx: Context) -> tuple[str, str]:
    """A fresh console password for the demo dispatcher (it ends their earlier sessions)."""
    password = secrets.token_urlsafe(15)
    staff.set_password(ctx, DISPATCHER.login, password)
    return DISPATCHER.login, password


def load(ctx: Context, today: dt.date, now: dt.datetime) -> None:
    teams = {slug: directory.add_team(ctx, slug, name) for slug, name in TEAMS}
    for slug, (country, prefixes) in TEAM_AREAS.items():
        for prefix in prefixes:
            areas.add_service_area(ctx, team=teams[slug], country=country, postcode_prefix=prefix)
    directory.add_user(ctx, DISPATCHER.login, name=DISPATCHER.name, email=DISPATCHER.email,
                       role=Role.DISPATCHER, timezone=DISPATCHER.timezone)
    technicians: dict[str, User] = {}
    for person in TECHNICIANS:
        user = directory.add_user(ctx, person.login, name=person.name, email=person.email,
                                  role=Role.TECHNICIAN, timezone=person.timezone,
                                  skills=list(person.skills))
        directory.add_member(ctx, teams[person.team], user)
        capacity.set_working_hours(ctx, user, {day: [WORKING_HOURS] for day in range(5)})
        technicians[person.login] = user
    customers = {
        spec.name: directory.add_customer(
            ctx, spec.name, email=spec.email, phone=spec.phone, timezone=spec.timezone,
            address=spec.address, compressor_make=spec.make, compressor_model=spec.model,
            compressor_serial=spec.serial,
            latitude=spec.coordinates[0] if spec.coordinates else None,
            longitude=spec.coordinates[1] if spec.coordinates else None,
        )
        for spec in CUSTOMERS
    }
    ctx.session.flush()
    for customer in customers.values():
        ctx.session.refresh(customer, ["sites"])

    future: list[Appointment] = []
    for number, visit in enumerate(visits(today)):
        title, problem, priority = visit.job
        job = directory.add_job(ctx, customers[visit.customer.name], title, problem=problem,
                                priority=priority, source=visit.source)
        window = (visit.starts_at, visit.starts_at + dt.timedelta(hours=2)) if number % 3 == 0 else None
        upcoming = visit.starts_at > now
        tentative = upcoming and number % 7 == 3
        try:
            appointment = scheduling.book(
                ctx, job, technicians[visit.technician.login], visit.starts_at, visit.ends_at,
                status=AppointmentStatus.TENTATIVE if tentative else AppointmentStatus.CONFIRMED,
                window=window,
            )
        except NotEnoughTravelTime:
            continue  # too far from the visit before: the job waits for a dispatcher
        if visit.ends_at <= now:
            scheduling.accept(ctx, appointment)
            scheduling.set_status(ctx, appointment, JobStatus.COMPLETED)
        elif visit.starts_at <= now:
            scheduling.accept(ctx, appointment)
            scheduling.set_status(ctx, appointment, JobStatus.ON_SITE)
        elif not tentative:
            if visit.starts_at.date() <= today + dt.timedelta(days=1) or number % 2:
                scheduling.accept(ctx, appointment)
            future.append(appointment)

    if len(future) > 3:
        scheduling.cancel(ctx, future[len(future) // 2], "Customer postponed: plant shutdown.")
    _book_unassigned(ctx, customers[CUSTOMERS[0].name], today)
    _add_booking_and_links(ctx, customers[CUSTOMERS[0].name])
    for person in TECHNICIANS:
        collection = calendars.require_collection(ctx.session, calendars.personal_path(person.login))
        for uid, text in personal_events(person, today, now):
            calendars.put_item(ctx, collection, f"{uid}.ics", text)


SERVICE_TYPES = (
    # slug, name, minutes, skills, arrival windows (business time zone), capacity per window
    ("repair", "Repair visit", 120, (), (), 0),
    ("annual-service", "Annual service", 90, (), ("08:00-12:00", "12:00-17:00"), 3),
    ("screw-overhaul", "Rotary screw overhaul", 240, ("rotary-screw",), (), 0),
)
SHOWCASE_LINKS = (
    # label, purpose, subject (customer:N is the first demo customer), audience
    ("Customer page (first demo customer)", links.Purpose.SHARE, "customer:first", None),
    ("Berlin crew week view", links.Purpose.SHARE, "team:berlin", None),
    ("Anna's jobs feed (subscribe)", links.Purpose.FEED, "technician:anna", None),
    ("Anna's free/busy feed", links.Purpose.FEED, "technician:anna", links.LinkAudience.FREEBUSY),
    ("Anna's day on a phone (on my way, on site, done)", links.Purpose.DAY, "technician:anna", None),
)


def _add_booking_and_links(ctx: Context, first_customer: Customer) -> None:
    for slug, name, minutes, skills, windows, per_window in SERVICE_TYPES:
        capacity.add_service_type(ctx, slug, name, duration_minutes=minutes, skills=list(skills),
                                  buffer_after_minutes=15, travel_minutes=30,
                                  arrival_windows=list(windows), window_capacity=per_window)
    for label, purpose, subject_text, audience in SHOWCASE_LINKS:
        subject = links.parse_subject(ctx.session,
                                      subject_text.replace("first", str(first_customer.id)))
        links.issue(ctx, purpose, subject, audience=audience, label=f"demo: {label}")


def showcase_links(ctx: Context) -> list[tuple[str, ShareLink]]:
    """The demo's links to show after `init --demo`: (label, link)."""
    found = ctx.session.scalars(
        select(ShareLink).where(ShareLink.label.like("demo: %"), ShareLink.revoked_at.is_(None),
                                ShareLink.parent_id.is_(None))
        .order_by(ShareLink.id)).all()
    return [(link.label.removeprefix("demo: "), link) for link in found]


def _book_unassigned(ctx: Context, customer: Customer, today: dt.date) -> None:
    job = directory.add_job(ctx, customer, "Quote: second compressor for the new oven line",
                            problem="Site survey; the customer wants a quote by month end.",
                            priority="normal", source="web")
    day = _next_weekday(today + dt.timedelta(days=3))
    zone = ZoneInfo(customer.timezone)
    start = dt.datetime.combine(day, dt.time(11, 0), zone).astimezone(dt.UTC)
    scheduling.book(ctx, job, None, start, start + dt.timedelta(hours=1),
                    window=(start, start + dt.timedelta(hours=3)))


def _next_weekday(day: dt.date) -> dt.date:
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


def visits(today: dt.date) -> Iterator[Visit]:
    """Weekday visits from a week before to a week after `today`; none overlap per technician."""
    for person in TECHNICIANS:
        rng = random.Random(f"fieldcal-demo-{person.login}")
        zone = ZoneInfo(person.timezone)
        customers = [c for c in CUSTOMERS if c.team == person.team]
        for offset in range(-DAYS_BACK, DAYS_AHEAD + 1):
            day = today + dt.timedelta(days=offset)
            if day.weekday() >= 5:
                continue
            for hour, minute, minutes in sorted(rng.sample(SLOTS, rng.choice((1, 2, 2, 3)))):
                start = dt.datetime.combine(day, dt.time(hour, minute), zone).astimezone(dt.UTC)
                yield Visit(person, rng.choice(customers), rng.choice(JOBS), rng.choice(SOURCES),
                            start, start + dt.timedelta(minutes=minutes))


def personal_events(person: Person, today: dt.date, now: dt.datetime) -> list[tuple[str, str]]:
    """(uid, iCalendar text): a weekly call, an evening appointment, a weekend all-day event."""
    zone = ZoneInfo(person.timezone)
    monday = today - dt.timedelta(days=today.weekday() + 7)
    wednesday = today + dt.timedelta(days=(2 - today.weekday()) % 7 or 7)
    saturday = today + dt.timedelta(days=(5 - today.weekday()) % 7)

    def local(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(hour, minute), zone)

    weekly = _event(f"demo-{person.login}-team-call@fieldcal.demo", "Team call (weekly)",
                    local(monday, 7, 30), local(monday, 7, 55), now,
                    rrule={"freq": "weekly", "byday": "MO"})
    dentist = _event(f"demo-{person.login}-dentist@fieldcal.demo", "Dentist",
                     local(wednesday, 17, 30), local(wednesday, 18, 30), now)
    weekend = _event(f"demo-{person.login}-weekend@fieldcal.demo", "Family visit",
                     saturday, saturday + dt.timedelta(days=1), now)
    return [
        (uid, _calendar(event, person.timezone))
        for uid, event in (weekly, dentist, weekend)
    ]


def _event(uid: str, summary: str, start: dt.date, end: dt.date, now: dt.datetime,
           rrule: dict[str, str] | None = None) -> tuple[str, icalendar.Event]:
    event = icalendar.Event()
    event.add("uid", uid)
    event.add("dtstamp", now.replace(microsecond=0))
    event.add("summary", summary)
    event.add("dtstart", start)
    event.add("dtend", end)
    if rrule:
        event.add("rrule", rrule)
    return uid, event


def _calendar(event: icalendar.Event, zone_name: str) -> str:
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//fieldcal//demo//EN")
    calendar.add("version", "2.0")
    if isinstance(event.get("dtstart").dt, dt.datetime):
        calendar.add_component(icalendar.Timezone.from_ical(VTIMEZONES[zone_name]))
    calendar.add_component(event)
    return calendar.to_ical().decode("utf-8")
