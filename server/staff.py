"""Staff sign-in for the dispatch console: argon2id passwords, throttled, audited.

A console session names a person and the session generation it was issued under;
`sign_out_everywhere` (and setting a new password) raises the generation, which
ends every session issued before at once, on every worker and host.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from server import audit, login_throttle
from server.actions import Action
from server.actors import Actor
from server.context import Context, operation
from server.directory import find_user
from server.errors import InvalidInput
from server.models import StaffPassword, User, utcnow

MIN_PASSWORD = 10
MAX_PASSWORD = 200
CHANNEL = "console"
_HASHER = PasswordHasher()  # argon2id with the library's current parameters


@dataclass(frozen=True)
class Member:
    """Who a console session belongs to."""

    user_id: int
    login: str
    name: str
    role: str
    timezone: str
    generation: int

    @property
    def is_dispatcher(self) -> bool:
        return self.role == "dispatcher"

    @property
    def may_look(self) -> bool:
        """Dispatchers and read-only staff see the console's settings (only dispatchers edit)."""
        return self.role in ("dispatcher", "readonly")

    def actor(self, request_id: str = "") -> Actor:
        return Actor(name=self.login, channel=CHANNEL, role=self.role, request_id=request_id,
                     timezone=self.timezone)


@dataclass(frozen=True)
class Attempt:
    """The outcome of one sign-in: a member, or why not (and for how long)."""

    member: Member | None
    retry_after: int | None = None


def _member(user: User, access: StaffPassword) -> Member:
    return Member(user.id, user.login, user.name, user.role, user.timezone, access.generation)


@operation
def set_password(ctx: Context, login: str, password: str) -> None:
    """Set a console password; every session of that person ends."""
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidInput(f"A console password needs {MIN_PASSWORD} to {MAX_PASSWORD} "
                           "characters.")
    user = find_user(ctx.session, login)
    access = ctx.session.get(StaffPassword, user.id)
    hashed = _HASHER.hash(password)
    if access is None:
        ctx.session.add(StaffPassword(user_id=user.id, password_hash=hashed, generation=1,
                                      set_at=utcnow()))
    else:
        access.password_hash = hashed
        access.generation += 1
        access.set_at = utcnow()
    audit.record(ctx.session, ctx.actor, Action.STAFF_PASSWORD, "user", user.id,
                 after={"login": user.login})


def _check(access: StaffPassword | None, password: str) -> bool:
    if access is None:
        _HASHER.hash(password)  # the same work as a real check: no timing hint of who exists
        return False
    try:
        return _HASHER.verify(access.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def sign_in(ctx: Context, login: str, password: str, address: str) -> Attempt:
    """Check a password under the login throttle; the caller commits either way.

    Wrong passwords count per login and per address (as for CalDAV logins); a
    successful sign-in is audited as `staff.sign_in`.
    """
    standing = login_throttle.standing(ctx.session, login, address)
    if standing.refused_for is not None:
        return Attempt(None, standing.refused_for)
    user = ctx.session.scalars(select(User).where(User.login == login)).first()
    access = ctx.session.get(StaffPassword, user.id) if user is not None else None
    if user is None or not user.active or not _check(access, password) or access is None:
        return Attempt(None, login_throttle.note_failure(ctx.session, login, address))
    if _HASHER.check_needs_rehash(access.password_hash):
        access.password_hash = _HASHER.hash(password)
    access.last_sign_in_at = utcnow()
    if standing.needs_note(utcnow()):
        login_throttle.note_success(ctx.session, login, address)
    member = _member(user, access)
    audit.record(ctx.session, member.actor(ctx.actor.request_id), Action.STAFF_SIGN_IN, "user",
                 user.id, after={"login": user.login, "address": address[:64]})
    return Attempt(member)


@operation
def sign_out_everywhere(ctx: Context, user_id: int) -> None:
    """End every console session of this person (on every device)."""
    access = ctx.session.get(StaffPassword, user_id)
    if access is None:
        return
    access.generation += 1
    audit.record(ctx.session, ctx.actor, Action.STAFF_SIGN_OUT_EVERYWHERE, "user", user_id,
                 after={"generation": access.generation})


def current(session: Session, user_id: int, generation: int) -> Member | None:
    """The member a session names, if that session is still good (active, same generation)."""
    row = session.execute(
        select(User, StaffPassword).join(StaffPassword, StaffPassword.user_id == User.id)
        .where(User.id == user_id)
    ).first()
    if row is None:
        return None
    user, access = row
    if not user.active or access.generation != generation:
        return None
    return _member(user, access)


def last_sign_in(session: Session, user_id: int) -> dt.datetime | None:
    access = session.get(StaffPassword, user_id)
    return access.last_sign_in_at if access is not None else None
