"""Helpers for the live-server tests: scratch databases, seed data, gunicorn, raw HTTP.

The tests talk to a real gunicorn (2 workers) on loopback with real clients and
check the outcome in the database through the domain's own read paths.
"""

from __future__ import annotations

import datetime as dt
import http.client
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import caldav
import psycopg
import requests
from sqlalchemy import func, select

from server import calendars, directory, scheduling
from server.actors import SYSTEM, Actor
from server.context import Context
from server.db import Database
from server.errors import SlotTaken
from server.migrate import upgrade
from server.models import (
    Appointment,
    AuditEntry,
    CalendarItem,
    Change,
    OutboxMessage,
    Role,
)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GUNICORN = BIN / "gunicorn"
ORGANIZER = "dispatch@example.test"
PG_ADMIN_URL = os.environ.get(
    "FIELDCAL_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
STARTUP_TIMEOUT_S = 20.0
HTTP_TIMEOUT_S = 30.0
UTC = dt.UTC

# The seeded week: Monday 2031-03-03 00:00 UTC. Far from "now" on purpose.
WEEK = dt.datetime(2031, 3, 3, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    """A time in the seeded week: day 0 = Monday; negative days or > 6 leave the week."""
    return WEEK + dt.timedelta(days=day, hours=hour, minutes=minute)


# --------------------------------------------------------------------------- databases


def postgres_problem(admin_url: str = PG_ADMIN_URL) -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        with psycopg.connect(admin_url, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL at {admin_url} is unreachable: {exc}"
    return None


def create_postgres_database(admin_url: str = PG_ADMIN_URL) -> tuple[str, str]:
    """A new empty database; returns (name, url)."""
    name = f"fieldcal_t_{secrets.token_hex(6)}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    parsed = urllib.parse.urlsplit(admin_url)
    return name, urllib.parse.urlunsplit(parsed._replace(path=f"/{name}"))


def drop_postgres_database(name: str, admin_url: str = PG_ADMIN_URL) -> None:
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as connection:
        connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')


# --------------------------------------------------------------------------- seeding


@dataclass(frozen=True)
class Account:
    login: str
    password: str
    email: str
    role: str

    @property
    def auth(self) -> tuple[str, str]:
        return (self.login, self.password)


@dataclass(frozen=True)
class Booked:
    appointment_id: int
    uid: str
    job_id: int
    starts_at: dt.datetime
    ends_at: dt.datetime

    @property
    def href(self) -> str:
        return f"{self.uid}.ics"


@dataclass
class Seed:
    """What the base seed created; tests that mutate make their own technicians."""

    url: str
    dispatcher: Account
    technicians: dict[str, Account]
    team_slug: str
    customer_ids: list[int]
    jobs: dict[str, list[Booked]] = field(default_factory=dict)  # login -> appointments
    personal: dict[str, list[str]] = field(default_factory=dict)  # login -> item hrefs
    recurring_uid: str = ""
    recurring_href: str = ""
    dentist_uid: str = ""

    def week_uids(self, login: str) -> set[str]:
        end = WEEK + dt.timedelta(days=7)
        return {b.uid for b in self.jobs[login] if WEEK <= b.starts_at < end}


@contextmanager
def domain(db: Database, actor: Actor = SYSTEM) -> Iterator[Context]:
    """One write transaction with a domain context, as the dispatcher's tools use it."""
    with db.write() as session:
        yield Context(session, actor, ORGANIZER)


def add_account(ctx: Context, login: str, role: Role, *, team_slug: str | None = None,
                timezone: str = "UTC") -> Account:
    email = f"{login}@example.test"
    user = directory.add_user(ctx, login, name=f"{login.capitalize()} Tester", email=email,
                              role=role, timezone=timezone)
    _credential, password = directory.issue_password(ctx, user, "tests")
    if team_slug is not None:
        directory.add_member(ctx, directory.find_team(ctx.session, team_slug), user)
    return Account(login, password, email, str(role))


def book_job(ctx: Context, login: str | None, customer_id: int, title: str,
             starts_at: dt.datetime, ends_at: dt.datetime) -> Booked:
    customer = directory.find_customer(ctx.session, customer_id)
    job = directory.add_job(ctx, customer, title, problem=f"{title}: pressure drops under load")
    technician = directory.find_user(ctx.session, login) if login else None
    appointment = scheduling.book(ctx, job, technician, starts_at, ends_at)
    return Booked(appointment.id, appointment.uid, job.id, starts_at, ends_at)


def personal_event(uid: str, summary: str, start: dt.datetime, end: dt.datetime,
                   rrule: str | None = None) -> str:
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//fieldcal tests//EN",
        "BEGIN:VEVENT",
        f"UID:{uid}",
        "DTSTAMP:20310101T000000Z",
        f"DTSTART:{start:%Y%m%dT%H%M%SZ}",
        f"DTEND:{end:%Y%m%dT%H%M%SZ}",
        f"SUMMARY:{summary}",
    ]
    if rrule:
        lines.append(f"RRULE:{rrule}")
    lines += ["END:VEVENT", "END:VCALENDAR", ""]
    return "\r\n".join(lines)


def put_personal(ctx: Context, login: str, href: str, text: str) -> None:
    collection = calendars.require_collection(ctx.session, calendars.personal_path(login))
    calendars.put_item(ctx, collection, href, text)


def seed_base(url: str) -> Seed:
    """Migrate a fresh database and load the fixed data every module starts from."""
    db = Database(url)
    try:
        upgrade(db)
        with domain(db) as ctx:
            directory.add_team(ctx, "north", "North team")
            dispatcher = add_account(ctx, "dispatch", Role.DISPATCHER)
            alice = add_account(ctx, "alice", Role.TECHNICIAN, team_slug="north",
                                timezone="Europe/Berlin")
            bob = add_account(ctx, "bob", Role.TECHNICIAN, team_slug="north",
                              timezone="America/New_York")
            carol = add_account(ctx, "carol", Role.TECHNICIAN, timezone="Europe/Berlin")
            acme = directory.add_customer(
                ctx, "Acme Compressed Air", email="ops@acme.example.test",
                phone="+49 30 1234567", timezone="Europe/Berlin",
                address="Hauptstraße 1, 10115 Berlin", compressor_make="Kaeser",
                compressor_model="SK 22", compressor_serial="KS-0042")
            brewery = directory.add_customer(
                ctx, "Bayside Brewery", email="tech@bayside.example.test",
                timezone="America/New_York", address="12 Harbor Rd, Boston MA",
                compressor_make="Atlas Copco", compressor_model="GA 30")
            seed = Seed(url=url, dispatcher=dispatcher,
                        technicians={"alice": alice, "bob": bob, "carol": carol},
                        team_slug="north", customer_ids=[acme.id, brewery.id])
            seed.jobs["alice"] = [
                book_job(ctx, "alice", acme.id, "Annual service", at(0, 9), at(0, 11)),
                book_job(ctx, "alice", brewery.id, "Oil leak", at(2, 13), at(2, 15)),
                book_job(ctx, "alice", acme.id, "Filter change", at(4, 8), at(4, 10)),
                book_job(ctx, "alice", acme.id, "Previous week visit", at(-3, 9), at(-3, 10)),
                book_job(ctx, "alice", brewery.id, "Next week visit", at(7, 9), at(7, 10)),
            ]
            seed.jobs["bob"] = [
                book_job(ctx, "bob", brewery.id, "Pressure switch", at(1, 10), at(1, 12)),
            ]
            seed.jobs["carol"] = [
                book_job(ctx, "carol", acme.id, "Carol's inspection", at(3, 10), at(3, 11)),
            ]
            book_job(ctx, None, acme.id, "Unassigned survey", at(3, 14), at(3, 15))
            seed.recurring_uid = "breakfast-weekly@example.test"
            seed.recurring_href = "breakfast.ics"
            put_personal(ctx, "alice", seed.recurring_href, personal_event(
                seed.recurring_uid, "Team breakfast", at(-13, 7), at(-13, 7, 30),
                rrule="FREQ=WEEKLY;COUNT=10"))
            seed.dentist_uid = "dentist@example.test"
            put_personal(ctx, "alice", "dentist.ics", personal_event(
                seed.dentist_uid, "Dentist", at(3, 16), at(3, 17)))
            seed.personal["alice"] = [seed.recurring_href, "dentist.ics"]
        return seed
    finally:
        db.dispose()


@dataclass(frozen=True)
class FreshTechnician:
    account: Account
    booked: list[Booked]


def fresh_technician(db: Database, seed: Seed, prefix: str,
                     slots: list[tuple[dt.datetime, dt.datetime]],
                     *, team_slug: str | None = None) -> FreshTechnician:
    """A technician of its own for one test, with appointments at the given slots."""
    login = f"{prefix}-{secrets.token_hex(3)}"
    with domain(db) as ctx:
        account = add_account(ctx, login, Role.TECHNICIAN, team_slug=team_slug)
        booked = [
            book_job(ctx, login, seed.customer_ids[i % len(seed.customer_ids)],
                     f"{prefix} job {i + 1}", start, end)
            for i, (start, end) in enumerate(slots)
        ]
    return FreshTechnician(account, booked)


def appointment_row(db: Database, appointment_id: int) -> Appointment:
    with db.read() as session:
        appointment = scheduling.get_appointment(session, appointment_id)
        _ = appointment.technician, appointment.job  # load before the session closes
        return appointment


def row_counts(db: Database) -> dict[str, int]:
    """Rows of the tables a request could leave partial writes in."""
    with db.read() as session:
        return {
            model.__tablename__: session.scalar(select(func.count()).select_from(model)) or 0
            for model in (CalendarItem, Change, AuditEntry, OutboxMessage, Appointment)
        }


def items_of(db: Database, path: str) -> dict[str, CalendarItem]:
    with db.read() as session:
        collection = calendars.require_collection(session, path)
        return {
            item.href: item
            for item in session.scalars(
                select(CalendarItem).where(CalendarItem.collection_id == collection.id)
            )
        }


# --------------------------------------------------------------------------- multiprocess booking


def book_in_process(url: str, job_id: int, login: str, starts_at: dt.datetime,
                    ends_at: dt.datetime, barrier: object) -> str:
    """Run in a separate process: wait for the others, then try to book. Returns the outcome."""
    from server.models import Job

    db = Database(url)
    try:
        with db.read() as session:
            session.get(Job, job_id)  # connect before the race starts
        barrier.wait(timeout=60)  # type: ignore[attr-defined]
        try:
            with domain(db) as ctx:
                job = ctx.session.get(Job, job_id)
                assert job is not None
                technician = directory.find_user(ctx.session, login)
                scheduling.book(ctx, job, technician, starts_at, ends_at)
        except SlotTaken:
            return "taken"
        return "booked"
    finally:
        db.dispose()


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveServer:
    """gunicorn with 2 workers serving wsgi:create_wsgi_app() on a loopback port."""

    def __init__(self, database_url: str, instance: Path, extra_env: dict[str, str] | None = None,
                 workers: int = 2) -> None:
        self.database_url = database_url
        self.instance = instance
        self.extra_env = dict(extra_env or {})
        self.workers = workers
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = instance / "gunicorn.log"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dav(self) -> str:
        return f"{self.base}/dav/"

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return "(no server log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        self.instance.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDCAL_")}
        env.update({
            "FIELDCAL_INSTANCE": str(self.instance),
            "FIELDCAL_DATABASE_URL": self.database_url,
            "FIELDCAL_SECRET_KEYS": secrets.token_urlsafe(32),
            "FIELDCAL_BASE_URL": self.base,
            "FIELDCAL_ORGANIZER_EMAIL": ORGANIZER,
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.extra_env)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [str(GUNICORN), "-w", str(self.workers), "-b", f"127.0.0.1:{self.port}",
             "--timeout", "120", "--graceful-timeout", "5", "--log-level", "info",
             "--no-control-socket",
             "wsgi:create_wsgi_app()"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"gunicorn exited with {self.process.returncode} during startup:\n"
                    f"{self.log_tail()}"
                )
            try:
                if requests.get(self.url("/healthz"), timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"gunicorn did not answer /healthz within {timeout:.0f} s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


# --------------------------------------------------------------------------- raw HTTP


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def raw_request(server: LiveServer, method: str, target: str, *, auth: tuple[str, str] | None,
                body: bytes | None = None, headers: dict[str, str] | None = None,
                timeout: float = HTTP_TIMEOUT_S) -> RawResponse:
    """Send the request target exactly as given (no dot-segment or quoting clean-up)."""
    import base64

    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        all_headers = dict(headers or {})
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            all_headers["Authorization"] = f"Basic {token}"
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in all_headers.items():
            connection.putheader(name, value)
        if body is not None and "Content-Length" not in all_headers:
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders()
        if body is not None:
            connection.send(body)
        response = connection.getresponse()
        data = response.read()
        return RawResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        connection.close()


def dav_request(server: LiveServer, method: str, path: str, auth: tuple[str, str] | None, *,
                body: str | bytes | None = None, headers: dict[str, str] | None = None,
                timeout: float = HTTP_TIMEOUT_S) -> requests.Response:
    """A request through `requests` (path is quoted here; give it unquoted)."""
    data = body.encode("utf-8") if isinstance(body, str) else body
    return requests.request(method, server.url(urllib.parse.quote(path)), auth=auth, data=data,
                            headers=headers or {}, timeout=timeout, allow_redirects=False)


ICS = {"Content-Type": "text/calendar; charset=utf-8"}
XML = {"Content-Type": "application/xml; charset=utf-8"}


def calendar_query(start: dt.datetime, end: dt.datetime, *, expand: bool = False) -> str:
    data = (
        f'<C:calendar-data><C:expand start="{start:%Y%m%dT%H%M%SZ}" '
        f'end="{end:%Y%m%dT%H%M%SZ}"/></C:calendar-data>'
        if expand else "<C:calendar-data/>"
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
        f"<D:prop><D:getetag/>{data}</D:prop>"
        '<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
        f'<C:time-range start="{start:%Y%m%dT%H%M%SZ}" end="{end:%Y%m%dT%H%M%SZ}"/>'
        "</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>"
    )


def sync_collection(token: str = "") -> str:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<D:sync-collection xmlns:D="DAV:">'
        f"<D:sync-token>{token}</D:sync-token><D:sync-level>1</D:sync-level>"
        "<D:prop><D:getetag/></D:prop></D:sync-collection>"
    )


PROPFIND_ALL = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getetag/><D:displayname/>'
    "</D:prop></D:propfind>"
)


DAV_NS = "{DAV:}"
CALDAV_NS = "{urn:ietf:params:xml:ns:caldav}"


@dataclass(frozen=True)
class DavResponse:
    href: str  # unquoted path
    status: int
    etag: str
    calendar_data: str


def parse_multistatus(body: bytes) -> list[DavResponse]:
    """The responses of a 207 multistatus (our own server's output, parsed for assertions)."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(body)
    found: list[DavResponse] = []
    for response in root.iter(f"{DAV_NS}response"):
        href = urllib.parse.unquote(response.findtext(f"{DAV_NS}href", default=""))
        status_text = response.findtext(f"{DAV_NS}status") or ""
        etag = ""
        data = ""
        for propstat in response.iter(f"{DAV_NS}propstat"):
            ok = " 200 " in (propstat.findtext(f"{DAV_NS}status") or "")
            if ok:
                etag = propstat.findtext(f".//{DAV_NS}getetag") or etag
                data = propstat.findtext(f".//{CALDAV_NS}calendar-data") or data
                status_text = status_text or "HTTP/1.1 200 OK"
        status = int(status_text.split()[1]) if status_text else 0
        found.append(DavResponse(href, status, etag, data))
    return found


def sync_token_of(body: bytes) -> str:
    import xml.etree.ElementTree as ET

    return ET.fromstring(body).findtext(f"{DAV_NS}sync-token") or ""


def dav_client(server: LiveServer, account: Account, url: str | None = None) -> caldav.DAVClient:
    """A `caldav` library client logged in as `account`."""
    return caldav.DAVClient(url=url or server.dav, username=account.login,
                            password=account.password, timeout=int(HTTP_TIMEOUT_S))


def basename(url: object) -> str:
    """The last path segment of a URL, unquoted."""
    path = urllib.parse.urlsplit(str(url)).path.rstrip("/")
    return urllib.parse.unquote(path.rsplit("/", 1)[-1])
