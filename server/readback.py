"""Changes made on a platform, read back and applied through the domain.

A platform that holds our visits (Google Calendar, Microsoft Graph) may be edited there.
`platform.pull` (queued by the platform's push notification, or by `integration pull`)
reads what changed since the stored cursor. A visit moved there becomes a reschedule
request through the one write path, as the integration (channel `platform`), so every rule
applies and the change is not pushed back to where it came from. A refused move is reverted
on the platform (the current visit pushed again) and the refusal is audited. A visit
deleted there is put back: fieldcal is the source of truth, and a technician declines
through their own calendar or day page.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from sqlalchemy import delete, select

from server import audit, integrations, outbox, scheduling
from server.actions import Action
from server.actors import Actor
from server.context import Context, operation
from server.db import Database
from server.errors import FieldcalError
from server.models import Appointment, ExternalRef, Integration, OutboxMessage
from server.platforms import Pulled, RemoteChange

log = logging.getLogger("fieldcal.readback")

PULL = "platform.pull"


def actor_for(integration: Integration) -> Actor:
    return Actor(name=integrations.actor_name(integration.id), channel=integrations.PLATFORM_CHANNEL,
                 role="dispatcher")


def apply(database: Database, integration_id: int, pulled: Pulled, organizer: str) -> dict[str, int]:
    """Apply what a pull returned, one change per transaction; returns counts by outcome."""
    outcome = apply_changes(database, integration_id, pulled.changes, organizer)
    with database.write() as session:
        integration = session.get(Integration, integration_id)
        if integration is not None:
            integration.sync_cursor = pulled.cursor
    return outcome


def apply_changes(database: Database, integration_id: int, changes: Iterable[RemoteChange],
                  organizer: str) -> dict[str, int]:
    """Apply changes read back (by a pull, or by a webhook that named the object), one per
    transaction; returns counts by outcome."""
    outcome = {"moved": 0, "reverted": 0, "restored": 0, "unchanged": 0, "unknown": 0}
    for change in changes:
        with database.write() as session:
            integration = session.get(Integration, integration_id)
            if integration is None:
                break
            ctx = Context(session, actor_for(integration), organizer)
            outcome[_apply_one(ctx, integration, change)] += 1
    return outcome


def _apply_one(ctx: Context, integration: Integration, change: RemoteChange) -> str:
    ref = ctx.session.scalars(select(ExternalRef).where(ExternalRef.integration_id == integration.id,
                                                        ExternalRef.remote_id == change.remote_id)).first()
    appointment = ctx.session.get(Appointment, ref.appointment_id) if ref is not None else None
    if appointment is None and change.uid:
        appointment = scheduling.find_by_uid(ctx.session, change.uid)
    if appointment is None:
        return "unknown"
    if change.deleted:
        if appointment.status == "cancelled":
            return "unchanged"
        ctx.session.execute(delete(ExternalRef).where(ExternalRef.integration_id == integration.id,
                                                      ExternalRef.appointment_id == appointment.id))
        _push_current(ctx, integration, appointment, "restore", "")
        return "restored"
    if change.starts_at is None or change.ends_at is None or (
            (change.starts_at, change.ends_at) == (appointment.starts_at, appointment.ends_at)):
        return "unchanged"
    try:
        scheduling.reschedule(ctx, appointment, change.starts_at, change.ends_at)
    except FieldcalError as refused:
        audit.record(ctx.session, ctx.actor, Action.INTEGRATION_REVERT, "appointment", appointment.id,
                     after={"asked": [change.starts_at.isoformat(), change.ends_at.isoformat()],
                            "refused": refused.message})
        _push_current(ctx, integration, appointment, "revert",
                      f"This visit was not moved: {refused.message}")
        log.info("integration %s: move of appointment %s refused (%s); reverting on the platform",
                 integration.id, appointment.id, refused.message)
        return "reverted"
    return "moved"


def _push_current(ctx: Context, integration: Integration, appointment: Appointment, why: str,
                  note: str) -> None:
    integrations.queue_push(ctx.session, integration, appointment.id, appointment.sequence,
                            f"appointment.{why}", note=note, nonce=uuid.uuid4().hex[:12])


@operation
def request_pull(ctx: Context, integration: Integration) -> None:
    """Queue a read-back of the platform's changes (one waiting pull per integration)."""
    waiting = ctx.session.scalar(select(OutboxMessage.id).where(
        OutboxMessage.kind == PULL, OutboxMessage.status == "pending",
        OutboxMessage.idempotency_key.like(f"{PULL}:{integration.id}:%")).limit(1))
    if waiting is None:
        outbox.enqueue(ctx.session, PULL, {"integration_id": integration.id},
                       idempotency_key=f"{PULL}:{integration.id}:{uuid.uuid4().hex}")
