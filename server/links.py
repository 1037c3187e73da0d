"""Signed links (itsdangerous): issue, verify, revoke, rotate.

A token carries only the link id and its version, signed with one salt per
purpose. Revoking or rotating bumps the version, so an old URL stops working
on its next request. Keys rotate as a list, newest first (FIELDCAL_SECRET_KEYS).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from itsdangerous import BadData, TimestampSigner, URLSafeTimedSerializer
from itsdangerous.encoding import base64_decode, base64_encode
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from server import audit
from server.actions import Action
from server.context import Context, operation
from server.directory import find_customer, find_team, find_user
from server.errors import InvalidInput, NotFound
from server.models import Appointment, Role, ShareLink, utcnow

CLOCK_SKEW = dt.timedelta(seconds=60)
USE_RESOLUTION = dt.timedelta(seconds=60)


class Purpose(StrEnum):
    FEED = "feed"
    SHARE = "share"
    MANAGE = "manage"
    BOOKING = "booking"
    DAY = "day"  # a technician's "my day" page


def path(purpose: Purpose | str, token: str) -> str:
    """Where a link's token leads on this server."""
    if purpose == Purpose.FEED:
        return f"/feeds/{token}.ics"
    if purpose == Purpose.MANAGE:
        return f"/m/{token}"
    if purpose == Purpose.DAY:
        return f"/d/{token}"
    return f"/s/{token}"


def freebusy_path(link: ShareLink, token: str) -> str | None:
    """The free/busy variant of a technician's feed link (one VFREEBUSY), if it has one."""
    if link.purpose != Purpose.FEED or link.subject_kind != SubjectKind.TECHNICIAN:
        return None
    return f"/feeds/{token}.ifb"


class SubjectKind(StrEnum):
    TECHNICIAN = "technician"
    TEAM = "team"
    CUSTOMER = "customer"
    APPOINTMENT = "appointment"


class LinkAudience(StrEnum):
    TECHNICIAN = "technician"
    TEAM = "team"
    CUSTOMER = "customer"
    FREEBUSY = "freebusy"


DEFAULT_AUDIENCE = {
    SubjectKind.TECHNICIAN: LinkAudience.TECHNICIAN,
    SubjectKind.TEAM: LinkAudience.TEAM,
    SubjectKind.CUSTOMER: LinkAudience.CUSTOMER,
    SubjectKind.APPOINTMENT: LinkAudience.CUSTOMER,
}

ALLOWED_AUDIENCES = {
    SubjectKind.TECHNICIAN: {LinkAudience.TECHNICIAN, LinkAudience.TEAM, LinkAudience.FREEBUSY},
    SubjectKind.TEAM: {LinkAudience.TEAM, LinkAudience.FREEBUSY},
    SubjectKind.CUSTOMER: {LinkAudience.CUSTOMER, LinkAudience.FREEBUSY},
    SubjectKind.APPOINTMENT: {LinkAudience.CUSTOMER, LinkAudience.FREEBUSY},
}


TOKEN_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def is_canonical(token: str) -> bool:
    """Whether `token` is exactly as itsdangerous writes it, character for character.

    itsdangerous reads leniently: it drops non-ASCII characters and anything
    outside the base64 alphabet, accepts padding, and ignores the unused low
    bits of a part's last character. So one token would have many spellings
    that verify. Only the spelling it writes is accepted: every part (after a
    leading "." that marks a compressed payload) is non-empty unpadded
    URL-safe base64 that encodes back to itself.
    """
    parts = (token[1:] if token.startswith(".") else token).split(".")
    for part in parts:
        if not part or not set(part) <= TOKEN_ALPHABET:
            return False
        try:
            if base64_encode(base64_decode(part)).decode("ascii") != part:
                return False
        except BadData:
            return False
    return True


class InvalidLink(Exception):
    """The token does not lead to a live link. `reason` is for logs, never for the page."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Subject:
    kind: SubjectKind
    id: int
    name: str


def parse_subject(session: Session, text: str) -> Subject:
    """`technician:LOGIN`, `team:SLUG`, `customer:ID` or `appointment:ID`."""
    kind_text, sep, key = text.partition(":")
    try:
        kind = SubjectKind(kind_text)
    except ValueError:
        kind = None
    if not sep or kind is None or not key:
        raise InvalidInput(
            f"Subject {text!r} must be technician:LOGIN, team:SLUG, customer:ID or appointment:ID."
        )
    if kind is SubjectKind.TECHNICIAN:
        user = find_user(session, key)
        if user.role != Role.TECHNICIAN:
            raise InvalidInput(f"{key!r} is not a technician.")
        return Subject(kind, user.id, user.login)
    if kind is SubjectKind.TEAM:
        team = find_team(session, key)
        return Subject(kind, team.id, team.slug)
    if not key.isdigit():
        raise InvalidInput(f"{kind.value} ids are numbers, not {key!r}.")
    if kind is SubjectKind.CUSTOMER:
        customer = find_customer(session, int(key))
        return Subject(kind, customer.id, customer.name)
    appointment = session.get(Appointment, int(key))
    if appointment is None:
        raise NotFound(f"No appointment #{key}.")
    return Subject(kind, appointment.id, appointment.uid)


class _StampedSigner(TimestampSigner):
    """Signs with a given time instead of now, so a link's token is stable."""

    def __init__(self, *args: Any, timestamp: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._timestamp = timestamp

    def get_timestamp(self) -> int:
        return self._timestamp


class LinkSigner:
    """Signs and reads link tokens; one salt per purpose, keys newest first."""

    def __init__(self, secret_keys: tuple[str, ...]) -> None:
        if not secret_keys:
            raise ValueError("LinkSigner needs at least one secret key")
        # itsdangerous signs with the last key and accepts all of them.
        self._keys = list(reversed(secret_keys))

    def _serializer(self, purpose: Purpose) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self._keys, salt=f"fieldcal.link.{purpose.value}")

    def dumps(self, link: ShareLink) -> str:
        """The link's URL token; the same link at the same version always gives the same token."""
        stamp = int((link.created_at or utcnow()).timestamp())
        serializer = URLSafeTimedSerializer(
            self._keys, salt=f"fieldcal.link.{link.purpose}", signer=_StampedSigner,
            signer_kwargs={"timestamp": stamp})
        return serializer.dumps([link.id, link.version])

    def loads(self, token: str, purpose: Purpose) -> tuple[int, int]:
        if not is_canonical(token):
            raise InvalidLink("token is not spelled as it was issued")
        try:
            payload, signed_at = self._serializer(purpose).loads(token, return_timestamp=True)
        except BadData as exc:
            raise InvalidLink(f"bad signature or payload ({type(exc).__name__})") from exc
        if signed_at > utcnow() + CLOCK_SKEW:
            raise InvalidLink("token is dated in the future")
        if (
            not isinstance(payload, list)
            or len(payload) != 2
            or not all(isinstance(p, int) and not isinstance(p, bool) for p in payload)
        ):
            raise InvalidLink("payload is not [id, version]")
        return payload[0], payload[1]


def resolve(session: Session, signer: LinkSigner, token: str, purpose: Purpose) -> ShareLink:
    """The live link a token stands for, or InvalidLink."""
    link_id, version = signer.loads(token, purpose)
    link = session.get(ShareLink, link_id)
    if link is None or link.purpose != purpose:
        raise InvalidLink("no such link")
    if link.version != version:
        raise InvalidLink("link was rotated or revoked")
    if link.revoked_at is not None:
        raise InvalidLink("link is revoked")
    if link.expires_at is not None and link.expires_at <= utcnow():
        raise InvalidLink("link has expired")
    return link


def redact(token: str) -> str:
    """A token shortened for logs: enough to correlate, useless to replay."""
    return token[:6] + "…" if len(token) > 6 else "…"


@operation
def issue(
    ctx: Context,
    purpose: Purpose,
    subject: Subject,
    *,
    audience: LinkAudience | None = None,
    expires_at: dt.datetime | None = None,
    label: str = "",
) -> ShareLink:
    """A new link. A share page link comes with a feed link for its subscribe options."""
    audience = audience or DEFAULT_AUDIENCE[subject.kind]
    if audience not in ALLOWED_AUDIENCES[subject.kind]:
        allowed = ", ".join(sorted(a.value for a in ALLOWED_AUDIENCES[subject.kind]))
        raise InvalidInput(
            f"A {subject.kind.value} link cannot have audience {audience.value!r}; use {allowed}."
        )
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidInput("The expiry must be in the future.")
    if purpose is Purpose.DAY and subject.kind is not SubjectKind.TECHNICIAN:
        raise InvalidInput("A day link is a technician's own page: use technician:LOGIN.")
    link = _new_link(ctx, purpose, subject, audience, expires_at, label)
    if purpose is Purpose.SHARE:
        _new_link(ctx, Purpose.FEED, subject, audience, expires_at, label, parent=link)
    audit.record(ctx.session, ctx.actor, Action.LINK_ISSUE, "share_link", link.id,
                 after={"purpose": purpose.value, "subject": f"{subject.kind.value}:{subject.id}",
                        "audience": audience.value,
                        "expires_at": expires_at.isoformat() if expires_at else None})
    return link


def _new_link(
    ctx: Context, purpose: Purpose, subject: Subject, audience: LinkAudience,
    expires_at: dt.datetime | None, label: str, parent: ShareLink | None = None,
) -> ShareLink:
    link = ShareLink(
        purpose=purpose,
        subject_kind=subject.kind,
        subject_id=subject.id,
        audience=audience,
        parent_id=parent.id if parent else None,
        version=1,
        label=label,
        created_by=ctx.actor.name,
        expires_at=expires_at,
        last_user_agent="",
    )
    ctx.session.add(link)
    ctx.session.flush()
    return link


def companion_feed(session: Session, link: ShareLink) -> ShareLink | None:
    """The live feed link issued with a share page link."""
    return session.scalars(
        select(ShareLink).where(ShareLink.parent_id == link.id, ShareLink.revoked_at.is_(None))
    ).first()


def get_link(session: Session, link_id: int) -> ShareLink:
    link = session.get(ShareLink, link_id)
    if link is None:
        raise NotFound(f"No link #{link_id}.")
    return link


@operation
def revoke(ctx: Context, link: ShareLink) -> ShareLink:
    if link.revoked_at is None:
        link.revoked_at = utcnow()
        link.version += 1
        for child in ctx.session.scalars(select(ShareLink).where(ShareLink.parent_id == link.id)):
            child.revoked_at = link.revoked_at
            child.version += 1
        audit.record(ctx.session, ctx.actor, Action.LINK_REVOKE, "share_link", link.id,
                     after={"version": link.version})
    return link


@operation
def rotate(ctx: Context, link: ShareLink) -> ShareLink:
    """Same link, new URL: the old token stops working."""
    if link.revoked_at is not None:
        raise InvalidInput(f"Link #{link.id} is revoked; issue a new one.")
    link.version += 1
    for child in ctx.session.scalars(select(ShareLink).where(ShareLink.parent_id == link.id)):
        child.version += 1
    audit.record(ctx.session, ctx.actor, Action.LINK_ROTATE, "share_link", link.id,
                 after={"version": link.version})
    return link


def links_of(session: Session, subject: Subject) -> list[ShareLink]:
    return list(session.scalars(
        select(ShareLink)
        .where(ShareLink.subject_kind == subject.kind, ShareLink.subject_id == subject.id)
        .order_by(ShareLink.id)
    ))


def recent(session: Session, limit: int = 200) -> list[ShareLink]:
    """The newest feed and share-page links a person issued (a share page's own feed link is
    left out: it lives and dies with its page), newest first."""
    return list(session.scalars(
        select(ShareLink)
        .where(ShareLink.purpose.in_((Purpose.FEED, Purpose.SHARE)), ShareLink.parent_id.is_(None))
        .order_by(ShareLink.id.desc()).limit(limit)
    ))


def use_is_stale(link: ShareLink, user_agent: str, now: dt.datetime) -> bool:
    """Whether this fetch should be noted (a new client, or a minute since the last note)."""
    if link.last_used_at is None or link.last_user_agent != user_agent[:300]:
        return True
    return now - link.last_used_at >= USE_RESOLUTION


def record_use(session: Session, link: ShareLink, user_agent: str) -> bool:
    """Note when and by which client a link was last fetched (at most once a minute)."""
    now = utcnow()
    agent = user_agent[:300]
    if not use_is_stale(link, agent, now):
        return False
    session.execute(
        update(ShareLink).where(ShareLink.id == link.id)
        .values(last_used_at=now, last_user_agent=agent)
    )
    return True
