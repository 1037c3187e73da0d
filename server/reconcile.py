"""Reconciling a platform with what we pushed there: drift found and repaired, idempotently.

For a connector that can list the objects carrying our UIDs (`Connector.listing`), every
live visit in the integration's scope ending after `since` must exist there exactly once,
at its current time; nothing of ours that is cancelled (or no longer in scope) may stay.
Missing → created again, duplicated → the extras deleted, stale → updated. The objects we
keep are recorded as the visit's external reference, as a push would. A second run finds
nothing to do. Platform calls happen outside any transaction; each repair is recorded in
its own short one.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

import httpx
from sqlalchemy import select

from server import audit, integrations, oauth
from server.actions import Action
from server.actors import Actor
from server.db import Database
from server.delivery import visit_of
from server.errors import InvalidInput
from server.models import Appointment, AppointmentStatus, ExternalRef, Integration
from server.platforms import Connector, Listed, Op, Remote, Visit, connector_class
from server.vault import Vault


@dataclass
class Report:
    integration_id: int
    listed: int = 0
    recreated: list[str] = field(default_factory=list)  # our UIDs
    deleted: list[str] = field(default_factory=list)  # remote ids
    updated: list[str] = field(default_factory=list)  # our UIDs
    unchanged: int = 0

    @property
    def repaired(self) -> int:
        return len(self.recreated) + len(self.deleted) + len(self.updated)

    def as_json(self) -> dict[str, object]:
        return {"integration_id": self.integration_id, "listed": self.listed, "recreated": self.recreated,
                "deleted": self.deleted, "updated": self.updated, "unchanged": self.unchanged}


@dataclass(frozen=True)
class _Ours:
    visit: Visit
    remote_id: str | None  # what our external reference says


def _load(database: Database, vault: Vault, integration_id: int, since: dt.datetime,
          base_url: str) -> tuple[Connector, dict[str, _Ours], set[str]]:
    """The connector, our live visits in scope by UID, and the UIDs we know but that must
    not be on the platform (cancelled or out of scope)."""
    with database.read() as session:
        integration = integrations.get(session, integration_id)
        connector_type = connector_class(integration.platform)
        if not connector_type.listing:
            raise InvalidInput(f"{integration.platform} cannot list its objects, so it cannot be "
                               "reconciled; `integration retry` resends what failed")
        config = integrations.config(integration, vault)
        refs: dict[int, str] = {
            appointment_id: remote_id for appointment_id, remote_id in session.execute(
                select(ExternalRef.appointment_id, ExternalRef.remote_id)
                .where(ExternalRef.integration_id == integration.id))}
        ours: dict[str, _Ours] = {}
        gone: set[str] = set()
        for appointment in session.scalars(select(Appointment).where(Appointment.ends_at > since)
                                           .order_by(Appointment.id)):
            slugs = integrations.team_slugs(session, appointment.technician)
            live = (appointment.status != AppointmentStatus.CANCELLED
                    and appointment.hold_expires_at is None
                    and integrations.covers(integration, appointment.technician, slugs))
            if live:
                visit = visit_of(appointment, "appointment.reconcile", slugs, base_url)
                ours[appointment.uid] = _Ours(visit, refs.get(appointment.id))
            else:
                gone.add(appointment.uid)
    return connector_type(config), ours, gone


def reconcile(database: Database, vault: Vault, integration_id: int, *, since: dt.datetime,
              base_url: str, actor: Actor, http: httpx.Client) -> Report:
    """Repair the platform's drift from our visits; `http` refreshes an OAuth token first."""
    oauth.fresh_token(database, vault, integration_id, http)
    connector, ours, gone = _load(database, vault, integration_id, since, base_url)
    listed = connector.list_objects(since)
    report = Report(integration_id, listed=len(listed))
    on_platform: dict[str, list[Listed]] = defaultdict(list)
    for item in listed:
        on_platform[item.uid].append(item)
    for uid, entry in ours.items():
        _repair(connector, entry, on_platform.pop(uid, []), report, database, integration_id)
    for uid, items in on_platform.items():
        if uid in gone:  # ours, but cancelled or out of scope: it must not stay there
            for item in items:
                _delete(connector, item, report)
    with database.write() as session:
        integration = session.get(Integration, integration_id)
        if integration is not None and report.repaired:
            audit.record(session, actor, Action.INTEGRATION_RECONCILE, "integration", integration_id,
                         after=report.as_json())
    return report


def _repair(connector: Connector, entry: _Ours, items: list[Listed], report: Report,
            database: Database, integration_id: int) -> None:
    visit = entry.visit
    if not items:
        remote = connector.push(Op.CREATE, visit, None)
        report.recreated.append(visit.uid)
        _record(database, integration_id, visit, remote)
        return
    items.sort(key=lambda i: (i.remote_id != entry.remote_id, i.remote_id))  # keep the referenced one
    keep, extras = items[0], items[1:]
    for extra in extras:
        _delete(connector, extra, report)
    if (keep.starts_at, keep.ends_at) != (visit.starts_at, visit.ends_at):
        remote = connector.push(Op.UPDATE, visit, keep.remote_id)
        report.updated.append(visit.uid)
        _record(database, integration_id, visit, remote or Remote(keep.remote_id))
        return
    report.unchanged += 1
    if entry.remote_id != keep.remote_id:
        _record(database, integration_id, visit, Remote(keep.remote_id))


def _delete(connector: Connector, item: Listed, report: Report) -> None:
    connector.push(Op.CANCEL, _stub(item), item.remote_id)
    report.deleted.append(item.remote_id)


def _stub(item: Listed) -> Visit:
    """The least a connector needs to delete an object: its UID and times."""
    moment = item.starts_at or dt.datetime.now(dt.UTC)
    return Visit(appointment_id=0, uid=item.uid, sequence=0, action="appointment.reconcile",
                 status="cancelled", job_status="cancelled", job_id=0, title="", description="",
                 starts_at=moment, ends_at=item.ends_at or moment, timezone="UTC", location="",
                 customer_id=0, customer_name="", customer_email="", customer_phone="",
                 technician_login="", technician_name="", technician_email="")


def _record(database: Database, integration_id: int, visit: Visit, remote: Remote | None) -> None:
    with database.write() as session:
        integration = session.get(Integration, integration_id)
        if integration is not None:
            integrations.record_push(session, integration, visit.appointment_id, remote, visit.sequence)
