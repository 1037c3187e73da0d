"""People and places: technicians, dispatchers, teams, customers, sites, jobs, app passwords."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from server import audit, calendars, contacts
from server.actions import Action
from server.addresses import locate
from server.context import Context, operation
from server.errors import Conflict, InvalidInput, NotFound
from server.models import (
    CollectionKind,
    Credential,
    Customer,
    Job,
    JobStatus,
    Role,
    Site,
    Team,
    TeamMember,
    User,
    utcnow,
)
from server.text import clean_text, one_line

LOGIN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
SKILL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
RESERVED_PREFIXES = ("team-", "customer-")
PASSWORD_BYTES = 24
LAST_USED_RESOLUTION_S = 60


def check_timezone(zone: str) -> str:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidInput(f"Unknown time zone {zone!r}; use an IANA name like Europe/Berlin.") from exc
    return zone


def check_skills(skills: list[str]) -> list[str]:
    """Skills as stored: each letters, digits, '.', '_' or '-'; sorted, no repeats."""
    for skill in skills:
        if not SKILL.match(skill):
            raise InvalidInput(f"Skill {skill!r} must be letters, digits, '.', '_' or '-' "
                               "(up to 64, no spaces).", "skills")
    return sorted(set(skills))


def find_user(session: Session, login: str) -> User:
    user = session.scalars(select(User).where(User.login == login)).first()
    if user is None:
        raise NotFound(f"No technician or dispatcher with login {login!r}.")
    return user


def find_team(session: Session, slug: str) -> Team:
    team = session.scalars(select(Team).where(Team.slug == slug)).first()
    if team is None:
        raise NotFound(f"No team {slug!r}.")
    return team


def find_customer(session: Session, customer_id: int) -> Customer:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"No customer #{customer_id}.")
    return customer


@operation
def add_user(
    ctx: Context,
    login: str,
    *,
    name: str,
    email: str,
    role: Role,
    timezone: str = "UTC",
    skills: list[str] | None = None,
    active: bool = True,
) -> User:
    if not LOGIN.match(login) or login.startswith(RESERVED_PREFIXES):
        raise InvalidInput(
            f"Login {login!r} must be lower-case letters, digits, '.', '_' or '-' "
            "and must not start with 'team-' or 'customer-'."
        )
    if "@" not in email:
        raise InvalidInput(f"{email!r} is not an email address.")
    if ctx.session.scalars(select(User.id).where(User.login == login)).first() is not None:
        raise Conflict(f"Login {login!r} is taken.")
    user = User(login=login, name=one_line(name), email=one_line(email), role=role,
                timezone=check_timezone(timezone), skills=check_skills(list(skills or [])),
                active=active)
    ctx.session.add(user)
    ctx.session.flush()
    if role == Role.TECHNICIAN:
        calendars.create_collection(ctx, calendars.jobs_path(login), CollectionKind.JOBS, owner=user,
                                    props={"D:displayname": "Jobs", "ICAL:calendar-color": "#1f6feb"})
        calendars.create_collection(ctx, calendars.personal_path(login), CollectionKind.CALENDAR,
                                    owner=user, props={"D:displayname": "Personal",
                                                       "ICAL:calendar-color": "#8250df"})
    audit.record(ctx.session, ctx.actor, Action.USER_ADD, "user", user.id,
                 after={"login": login, "role": str(role), "timezone": timezone, "active": active})
    return user


def _user_state(user: User) -> dict[str, object]:
    return {"name": user.name, "email": user.email, "timezone": user.timezone,
            "skills": list(user.skills or []), "active": user.active}


@operation
def update_user(ctx: Context, user: User, *, name: str | None = None, email: str | None = None,
                timezone: str | None = None, skills: list[str] | None = None,
                active: bool | None = None) -> User:
    """Change a technician's or dispatcher's details; an inactive technician gets no new work."""
    before = _user_state(user)
    if name is not None:
        if not one_line(name):
            raise InvalidInput("A name cannot be empty.")
        user.name = one_line(name)
    if email is not None:
        if "@" not in email:
            raise InvalidInput(f"{email!r} is not an email address.")
        user.email = one_line(email)
    if timezone is not None:
        user.timezone = check_timezone(timezone)
    if skills is not None:
        user.skills = check_skills(list(skills))
    if active is not None:
        user.active = active
    after = _user_state(user)
    if after != before:
        audit.record(ctx.session, ctx.actor, Action.USER_UPDATE, "user", user.id, before=before,
                     after=after)
    return user


@operation
def add_team(ctx: Context, slug: str, name: str) -> Team:
    if not SLUG.match(slug):
        raise InvalidInput(f"Team slug {slug!r} must be lower-case letters, digits and '-'.")
    if ctx.session.scalars(select(Team.id).where(Team.slug == slug)).first() is not None:
        raise Conflict(f"Team {slug!r} exists already.")
    team = Team(slug=slug, name=name)
    ctx.session.add(team)
    ctx.session.flush()
    calendars.create_collection(ctx, calendars.team_path(slug), CollectionKind.TEAM, team=team,
                                props={"D:displayname": f"{name} schedule"})
    audit.record(ctx.session, ctx.actor, Action.TEAM_ADD, "team", team.id, after={"slug": slug})
    return team


@operation
def add_member(ctx: Context, team: Team, user: User) -> None:
    exists = ctx.session.get(TeamMember, (team.id, user.id))
    if exists is not None:
        return
    ctx.session.add(TeamMember(team_id=team.id, user_id=user.id))
    ctx.session.flush()
    ctx.session.expire(user, ["teams"])
    calendars.project_all_of(ctx, user)
    audit.record(ctx.session, ctx.actor, Action.TEAM_MEMBER_ADD, "team", team.id,
                 after={"login": user.login})


@operation
def add_customer(
    ctx: Context,
    name: str,
    *,
    email: str = "",
    phone: str = "",
    timezone: str = "UTC",
    address: str = "",
    compressor_make: str = "",
    compressor_model: str = "",
    compressor_serial: str = "",
    postcode: str = "",
    country: str = "",
    latitude: float | None = None,
    longitude: float | None = None,
) -> Customer:
    """A customer, and their site when an address is given (its postcode and country are read
    from the address unless given; coordinates are optional and never looked up)."""
    if not one_line(name):
        raise InvalidInput("A customer needs a name.")
    customer = Customer(name=one_line(name), email=one_line(email), phone=one_line(phone),
                        timezone=check_timezone(timezone))
    ctx.session.add(customer)
    ctx.session.flush()
    if clean_text(address):
        ctx.session.add(new_site(customer, address, compressor_make=compressor_make,
                                 compressor_model=compressor_model,
                                 compressor_serial=compressor_serial, postcode=postcode,
                                 country=country, latitude=latitude, longitude=longitude))
    calendars.create_collection(ctx, calendars.customer_path(customer.id), CollectionKind.CUSTOMER,
                                customer_id=customer.id,
                                props={"D:displayname": f"{customer.name}: appointments"})
    audit.record(ctx.session, ctx.actor, Action.CUSTOMER_ADD, "customer", customer.id,
                 after={"name": customer.name, "email": customer.email})
    return customer


def new_site(customer: Customer, address: str, *, compressor_make: str = "",
             compressor_model: str = "", compressor_serial: str = "", postcode: str = "",
             country: str = "", latitude: float | None = None,
             longitude: float | None = None) -> Site:
    """A site row (not yet added) with its place read from the address or given."""
    if not clean_text(address):
        raise InvalidInput("A site needs an address.")
    where = locate(address, customer.timezone, country=country, postcode=postcode,
                   latitude=latitude, longitude=longitude)
    return Site(customer_id=customer.id, address=clean_text(address),
                compressor_make=one_line(compressor_make),
                compressor_model=one_line(compressor_model),
                compressor_serial=one_line(compressor_serial), postcode=where.postcode,
                country=where.country, latitude=where.latitude, longitude=where.longitude)


def site_json(site: Site) -> dict[str, object]:
    return {"id": site.id, "customer_id": site.customer_id, "address": site.address,
            "postcode": site.postcode, "country": site.country, "latitude": site.latitude,
            "longitude": site.longitude, "compressor_make": site.compressor_make,
            "compressor_model": site.compressor_model,
            "compressor_serial": site.compressor_serial}


@operation
def add_site(ctx: Context, customer: Customer, address: str, *, compressor_make: str = "",
             compressor_model: str = "", compressor_serial: str = "", postcode: str = "",
             country: str = "", latitude: float | None = None,
             longitude: float | None = None) -> Site:
    site = new_site(customer, address, compressor_make=compressor_make,
                    compressor_model=compressor_model, compressor_serial=compressor_serial,
                    postcode=postcode, country=country, latitude=latitude, longitude=longitude)
    ctx.session.add(site)
    ctx.session.flush()
    contacts.follow_customer(ctx.session, customer.id)
    audit.record(ctx.session, ctx.actor, Action.SITE_ADD, "site", site.id, after=site_json(site))
    return site


@operation
def update_site(ctx: Context, site: Site, *, address: str | None = None,
                postcode: str | None = None, country: str | None = None,
                coordinates: tuple[float, float] | None = None,
                clear_coordinates: bool = False, compressor_make: str | None = None,
                compressor_model: str | None = None,
                compressor_serial: str | None = None) -> Site:
    """Change a site's address, place or equipment; a new address is read again unless
    postcode/country are given too."""
    before = site_json(site)
    if compressor_make is not None:
        site.compressor_make = one_line(compressor_make)[:100]
    if compressor_model is not None:
        site.compressor_model = one_line(compressor_model)[:100]
    if compressor_serial is not None:
        site.compressor_serial = one_line(compressor_serial)[:100]
    text = clean_text(address) if address is not None else site.address
    if not text:
        raise InvalidInput("A site needs an address.")
    latitude, longitude = coordinates if coordinates else (site.latitude, site.longitude)
    if clear_coordinates:
        latitude = longitude = None
    reread = address is not None
    where = locate(text, site.customer.timezone,
                   country=country if country is not None else ("" if reread else site.country),
                   postcode=postcode if postcode is not None else ("" if reread else site.postcode),
                   latitude=latitude, longitude=longitude)
    site.address, site.postcode, site.country = text, where.postcode, where.country
    site.latitude, site.longitude = where.latitude, where.longitude
    after = site_json(site)
    if after != before:
        ctx.session.flush()
        contacts.follow_customer(ctx.session, site.customer_id)
        audit.record(ctx.session, ctx.actor, Action.SITE_UPDATE, "site", site.id, before=before,
                     after=after)
    return site


@operation
def add_job(
    ctx: Context,
    customer: Customer,
    title: str,
    *,
    problem: str = "",
    priority: str = "normal",
    source: str = "phone",
    site: Site | None = None,
) -> Job:
    if not one_line(title):
        raise InvalidInput("A job needs a title.")
    if site is None and customer.sites:
        site = customer.sites[0]
    job = Job(customer_id=customer.id, site_id=site.id if site else None, title=one_line(title),
              problem=clean_text(problem), priority=priority, source=source, status=JobStatus.NEW)
    ctx.session.add(job)
    ctx.session.flush()
    audit.record(ctx.session, ctx.actor, Action.JOB_ADD, "job", job.id,
                 after={"title": job.title, "customer": customer.id, "source": source})
    return job


NOTED_USE = "fieldcal.directory.noted_use"


def hash_password(password: str) -> str:
    """App passwords are 192 random bits, so one SHA-256 is enough and keeps logins O(1)."""
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


@operation
def issue_password(ctx: Context, user: User, label: str = "device") -> tuple[Credential, str]:
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    credential = Credential(user_id=user.id, label=label, password_hash=hash_password(password))
    ctx.session.add(credential)
    ctx.session.flush()
    audit.record(ctx.session, ctx.actor, Action.PASSWORD_ISSUE, "user", user.id,
                 after={"credential": credential.id, "label": label})
    return credential, password


@operation
def revoke_password(ctx: Context, credential_id: int) -> Credential:
    credential = ctx.session.get(Credential, credential_id)
    if credential is None:
        raise NotFound(f"No app password #{credential_id}.")
    if credential.revoked_at is None:
        credential.revoked_at = utcnow()
        audit.record(ctx.session, ctx.actor, Action.PASSWORD_REVOKE, "user", credential.user_id,
                     after={"credential": credential.id, "label": credential.label})
    return credential


@dataclass(frozen=True)
class SignedIn:
    """Who an app password belongs to: enough for rights, in one query."""

    user_id: int
    login: str
    role: str
    teams: frozenset[str]


SIGN_IN = (  # built once: constructing it costs more than running it
    select(User.id, User.role, Credential.id, Credential.last_used_at, Team.slug)
    .join(Credential, Credential.user_id == User.id)
    .outerjoin(TeamMember, TeamMember.user_id == User.id)
    .outerjoin(Team, Team.id == TeamMember.team_id)
    .where(
        Credential.password_hash == bindparam("b_hash"),
        Credential.revoked_at.is_(None),
        User.login == bindparam("b_login"),
        User.active.is_(True),
    )
)


def sign_in(session: Session, login: str, password: str) -> SignedIn | None:
    """The active user and their team slugs for this app password, or None."""
    rows = session.execute(SIGN_IN, {"b_hash": hash_password(password), "b_login": login}).all()
    if not rows:
        return None
    user_id, role, credential_id, last_used, _ = rows[0]
    _note_use(session, credential_id, last_used)
    return SignedIn(user_id, login, str(role), frozenset(r.slug for r in rows if r.slug))


def _note_use(session: Session, credential_id: int, last_used: dt.datetime | None) -> None:
    now = utcnow()
    if last_used is None or (now - last_used).total_seconds() > LAST_USED_RESOLUTION_S:
        session.execute(update(Credential).where(Credential.id == credential_id)
                        .values(last_used_at=now))
        session.info[NOTED_USE] = True


def noted_use(session: Session) -> bool:
    """Did a sign-in in this session stamp its credential's last use (a write)? Asked once."""
    return bool(session.info.pop(NOTED_USE, False))


def authenticate(session: Session, login: str, password: str) -> User | None:
    """The active user this app password belongs to, or None."""
    found = sign_in(session, login, password)
    return None if found is None else session.get(User, found.user_id)
