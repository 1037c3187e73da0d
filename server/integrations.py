"""Integrations: configured connections to platforms, their secrets, scopes and health.

Every change of a visit queues one `platform.fanout` row (when any integration or webhook
exists); the worker turns it into one `platform.push` row per integration whose scope
covers the visit (never back to the integration the change came from) and one webhook
delivery per matching webhook. No platform code lives here: connectors are plugins.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from server import audit, outbox
from server.actions import Action
from server.context import Context, operation
from server.errors import InvalidInput, NotFound
from server.models import ExternalRef, Integration, OutboxMessage, Team, TeamMember, User, Webhook, utcnow
from server.platforms import Config, Remote, connector_class
from server.vault import Vault

FANOUT = "platform.fanout"
PUSH = "platform.push"
ALERT = "platform.alert"
VIDEO_LINK = "appointment.video_link"  # a visit's meeting link arrived (see server.notify)
PLATFORM_CHANNEL = "platform"
SCOPE = re.compile(r"^(all|team:[a-z0-9][a-z0-9-]*|technician:[A-Za-z0-9._-]+)$")


class Status(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    NEEDS_RECONNECT = "needs_reconnect"


def listening(session: Session) -> bool:
    """Whether any integration or active webhook may want to hear of a change."""
    return bool(session.scalar(select(exists().where(Integration.id.is_not(None))
                                      | exists().where(Webhook.active.is_(True)))))


def actor_name(integration_id: int) -> str:
    """The actor name of changes that came in from an integration (loop prevention)."""
    return f"integration:{integration_id}"


def origin_integration(origin: Mapping[str, str] | None) -> int | None:
    if not origin or origin.get("channel") != PLATFORM_CHANNEL:
        return None
    name = str(origin.get("name", ""))
    prefix = "integration:"
    return int(name[len(prefix):]) if name.startswith(prefix) and name[len(prefix):].isdigit() else None


def _check_scope(session: Session, scope: str) -> str:
    if not SCOPE.match(scope):
        raise InvalidInput(f"scope {scope!r} is not one of all, team:SLUG, technician:LOGIN")
    kind, _, value = scope.partition(":")
    if kind == "team" and session.scalar(select(Team.id).where(Team.slug == value)) is None:
        raise NotFound(f"no team {value!r}")
    if kind == "technician" and session.scalar(select(User.id).where(User.login == value)) is None:
        raise NotFound(f"no technician {value!r}")
    return scope


def _public(integration: Integration) -> dict[str, object]:
    """What the audit trail and listings show: never the secrets."""
    return {"platform": integration.platform, "name": integration.name, "scope": integration.scope,
            "settings": dict(integration.settings or {}), "status": integration.status}


@operation
def add(ctx: Context, vault: Vault, platform: str, name: str, *, scope: str = "all",
        settings: Mapping[str, str] | None = None, secrets: Mapping[str, str] | None = None) -> Integration:
    connector = connector_class(platform)
    settings = dict(settings or {})
    secrets = dict(secrets or {})
    connector.validate_settings(settings, secrets)
    if not name.strip():
        raise InvalidInput("an integration needs a --name")
    integration = Integration(platform=platform, name=name.strip(), scope=_check_scope(ctx.session, scope),
                              settings=settings, secrets=vault.seal(secrets), status=Status.ACTIVE,
                              created_by=ctx.actor.name, last_error="")
    ctx.session.add(integration)
    ctx.session.flush()
    audit.record(ctx.session, ctx.actor, Action.INTEGRATION_ADD, "integration", integration.id,
                 after={**_public(integration), "secrets": sorted(secrets)})
    return integration


def get(session: Session, integration_id: int) -> Integration:
    integration = session.get(Integration, integration_id)
    if integration is None:
        raise NotFound(f"no integration {integration_id}")
    return integration


@operation
def set_status(ctx: Context, integration: Integration, status: Status, reason: str = "") -> Integration:
    before = _public(integration)
    integration.status = status
    if reason:
        integration.last_error = reason
    if status == Status.ACTIVE:
        _wake(ctx.session, integration.id)
    audit.record(ctx.session, ctx.actor, Action(f"integration.{status.value}"), "integration", integration.id,
                 before=before, after=_public(integration))
    return integration


@operation
def remove(ctx: Context, integration: Integration) -> None:
    before = _public(integration)
    ctx.session.execute(update(OutboxMessage)
                        .where(OutboxMessage.kind == PUSH, OutboxMessage.status.in_(("pending", "dead")),
                               OutboxMessage.idempotency_key.like(f"push:{integration.id}:%"))
                        .values(status="dropped", last_error="integration removed"))
    ctx.session.delete(integration)
    audit.record(ctx.session, ctx.actor, Action.INTEGRATION_REMOVE, "integration", integration.id,
                 before=before)


@operation
def retry(ctx: Context, integration: Integration) -> int:
    """Put the integration's dead-lettered pushes back in the queue; returns how many."""
    result = ctx.session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.kind == PUSH, OutboxMessage.status == "dead",
               OutboxMessage.idempotency_key.like(f"push:{integration.id}:%"))
        .values(status="pending", attempts=0, next_attempt_at=utcnow()))
    count = int(getattr(result, "rowcount", 0) or 0)
    audit.record(ctx.session, ctx.actor, Action.INTEGRATION_RETRY, "integration", integration.id,
                 after={"requeued": count})
    return count


@operation
def rekey(ctx: Context, vault: Vault) -> int:
    """Re-encrypt every stored secret with the newest credential key; returns how many."""
    count = 0
    for integration in ctx.session.scalars(select(Integration).where(Integration.secrets != "")):
        integration.secrets = vault.rotate(integration.secrets)
        count += 1
    for webhook in ctx.session.scalars(select(Webhook)):
        webhook.secrets = vault.rotate(webhook.secrets)
        count += 1
    audit.record(ctx.session, ctx.actor, Action.INTEGRATION_REKEY, "vault", "credentials",
                 after={"secrets": count})
    return count


def _wake(session: Session, integration_id: int) -> None:
    session.execute(update(OutboxMessage)
                    .where(OutboxMessage.kind == PUSH, OutboxMessage.status == "pending",
                           OutboxMessage.idempotency_key.like(f"push:{integration_id}:%"))
                    .values(next_attempt_at=utcnow()))


def config(integration: Integration, vault: Vault) -> Config:
    settings = {str(k): str(v) for k, v in (integration.settings or {}).items()}
    return Config(integration.id, integration.name, settings, vault.open(integration.secrets),
                  settings.get("base_url", ""))


def covers(integration: Integration, technician: User | None, team_slugs: set[str]) -> bool:
    kind, _, value = integration.scope.partition(":")
    if kind == "all":
        return True
    if technician is None:
        return False
    return value == technician.login if kind == "technician" else value in team_slugs


def team_slugs(session: Session, technician: User | None) -> set[str]:
    if technician is None:
        return set()
    return set(session.scalars(select(Team.slug).join(TeamMember, TeamMember.team_id == Team.id)
                               .where(TeamMember.user_id == technician.id)))


def join_url(session: Session, appointment_id: int) -> str:
    """The video link a platform made for a remote visit (Meet, Zoom), if any."""
    return join_urls(session, [appointment_id]).get(appointment_id, "")


def join_urls(session: Session, appointment_ids: list[int]) -> dict[int, str]:
    """The video links of several visits at once (visits without one are left out)."""
    if not appointment_ids:
        return {}
    rows = session.execute(select(ExternalRef.appointment_id, ExternalRef.join_url)
                           .where(ExternalRef.appointment_id.in_(appointment_ids), ExternalRef.join_url != "")
                           .order_by(ExternalRef.id))
    found: dict[int, str] = {}
    for appointment_id, url in rows:
        found.setdefault(appointment_id, url)
    return found


@dataclass(frozen=True)
class Health:
    """How an integration is doing, from its own row and its queued pushes (one query)."""

    integration: Integration
    pending: int  # queued or being sent (paused and needs-reconnect pushes wait here)
    dead: int  # dead letters: failed for good until `retry`
    sent: int

    @property
    def last_success_at(self) -> dt.datetime | None:
        return self.integration.last_success_at

    @property
    def last_error(self) -> str:
        return self.integration.last_error or ""

    @property
    def paused(self) -> bool:
        return self.integration.status == Status.PAUSED

    @property
    def needs_reconnect(self) -> bool:
        return self.integration.status == Status.NEEDS_RECONNECT


def health(session: Session, integration: Integration) -> Health:
    counts: dict[str, int] = {}
    rows = session.execute(select(OutboxMessage.status, func.count())
                           .where(OutboxMessage.kind == PUSH,
                                  OutboxMessage.idempotency_key.like(f"push:{integration.id}:%"))
                           .group_by(OutboxMessage.status))
    for status, count in rows:
        counts[str(status)] = int(count)
    return Health(integration, counts.get("pending", 0) + counts.get("sending", 0), counts.get("dead", 0),
                  counts.get("sent", 0))


def check(integration: Integration, vault: Vault, timeout: float = 10.0) -> str:
    """One cheap authenticated call to the platform (a connection test); returns what was
    reached, or raises the connector's PlatformError (nothing is written)."""
    return connector_class(integration.platform)(config(integration, vault), timeout=timeout).check()


def record_push(session: Session, integration: Integration, appointment_id: int, remote: Remote | None,
                sequence: int) -> None:
    """After a successful push: remember the remote object and the integration's health."""
    ref = session.scalars(select(ExternalRef).where(ExternalRef.integration_id == integration.id,
                                                    ExternalRef.appointment_id == appointment_id)).first()
    if remote is not None:
        if not remote.join_url.startswith("https://"):  # a link people click: https only
            remote = Remote(remote.id)
        if remote.join_url and (ref is None or ref.join_url != remote.join_url):
            queue_video_link(session, appointment_id, remote.join_url)
        if ref is None:
            session.add(ExternalRef(integration_id=integration.id, appointment_id=appointment_id,
                                    remote_id=remote.id, pushed_sequence=sequence, join_url=remote.join_url))
        else:
            ref.remote_id, ref.pushed_sequence, ref.updated_at = remote.id, sequence, utcnow()
            ref.join_url = remote.join_url or ref.join_url
    integration.last_success_at = utcnow()
    integration.last_error = ""


def queue_video_link(session: Session, appointment_id: int, url: str) -> None:
    """A visit got a (new) video link: the customer hears of it unless a message already told
    them (server.notify decides; the same link queues this once)."""
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    outbox.enqueue(session, VIDEO_LINK, {"appointment_id": appointment_id},
                   idempotency_key=f"{VIDEO_LINK}:{appointment_id}:{digest}")


def queue_alert(session: Session, text: str, key: str) -> int:
    """Tell dispatch through every active integration that takes alerts; returns how many."""
    count = 0
    for integration in session.scalars(select(Integration).where(Integration.status == Status.ACTIVE)):
        if connector_class(integration.platform).alerts:
            outbox.enqueue(session, ALERT, {"integration_id": integration.id, "text": text[:500]},
                           idempotency_key=f"{ALERT}:{integration.id}:{key}")
            count += 1
    return count


def queue_push(session: Session, integration: Integration, appointment_id: int, sequence: int,
               action: str, *, note: str = "", nonce: str = "") -> None:
    """One push of a visit's current state (the same change queues it once, unless `nonce`)."""
    key = f"push:{integration.id}:{appointment_id}:{sequence}:{action}" + (f":{nonce}" if nonce else "")
    outbox.enqueue(session, PUSH, {"integration_id": integration.id, "appointment_id": appointment_id,
                                   "sequence": sequence, "action": action, "note": note},
                   idempotency_key=key)
