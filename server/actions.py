"""What the domain does, by name, and what an appointment looked like around a change.

One vocabulary for the domain functions, the audit trail (`AuditEntry.action`,
`before`/`after`), the `appointment.changed` outbox rows that feed the change
stream, and the notification planner. The stored strings are the enum values:
renaming a member is free, changing a value is a data migration.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from server.models import Appointment, AppointmentStatus, JobStatus, PartStat


class Action(StrEnum):
    APPOINTMENT_BOOK = "appointment.book"
    APPOINTMENT_CONFIRM = "appointment.confirm"
    APPOINTMENT_RESCHEDULE = "appointment.reschedule"
    APPOINTMENT_REASSIGN = "appointment.reassign"
    APPOINTMENT_CANCEL = "appointment.cancel"
    APPOINTMENT_CANCEL_REASON = "appointment.cancel.reason"
    APPOINTMENT_ACCEPT = "appointment.accept"
    APPOINTMENT_DECLINE = "appointment.decline"
    APPOINTMENT_STATUS = "appointment.status"
    APPOINTMENT_HOLD_EXPIRE = "appointment.hold.expire"
    APPOINTMENT_ON_MY_WAY = "appointment.on_my_way"  # the day page's buttons (channel day-link)
    APPOINTMENT_ON_SITE = "appointment.on_site"
    APPOINTMENT_DONE = "appointment.done"
    APPOINTMENT_NOTE = "appointment.note"  # the technician's words with "done" or "can't make it"
    APPOINTMENT_CANT_MAKE_IT = "appointment.cant_make_it"
    LINK_ISSUE = "link.issue"
    LINK_REVOKE = "link.revoke"
    LINK_ROTATE = "link.rotate"
    COLLECTION_CREATE = "collection.create"
    COLLECTION_PROPS = "collection.props"
    COLLECTION_DELETE = "collection.delete"
    ITEM_PUT = "item.put"
    ITEM_DELETE = "item.delete"
    USER_ADD = "user.add"
    TEAM_ADD = "team.add"
    TEAM_MEMBER_ADD = "team.member.add"
    CUSTOMER_ADD = "customer.add"
    JOB_ADD = "job.add"
    PASSWORD_ISSUE = "password.issue"
    PASSWORD_REVOKE = "password.revoke"
    SERVICE_TYPE_ADD = "service_type.add"
    WORKING_HOURS_SET = "working_hours.set"
    TIME_OFF_ADD = "time_off.add"
    INTEGRATION_RECONCILE = "integration.reconcile"
    INTEGRATION_INBOUND_TRAY = "integration.inbound.tray"
    JOB_CANCEL = "job.cancel"
    INTAKE_RECEIVE = "intake.receive"
    CUSTOMER_EMAIL_UNDELIVERABLE = "customer.email.undeliverable"
    JOB_MESSAGE = "job.message"
    INTAKE_MAIL = "intake.mail"
    STAFF_PASSWORD = "staff.password"
    STAFF_SIGN_IN = "staff.sign_in"
    STAFF_SIGN_OUT_EVERYWHERE = "staff.sign_out_everywhere"
    WEBHOOK_ADD = "webhook.add"
    WEBHOOK_ROTATE = "webhook.rotate"
    WEBHOOK_REMOVE = "webhook.remove"
    WEBHOOK_REDELIVER = "webhook.redeliver"
    INTEGRATION_ADD = "integration.add"
    INTEGRATION_ACTIVE = "integration.active"
    INTEGRATION_PAUSED = "integration.paused"
    INTEGRATION_NEEDS_RECONNECT = "integration.needs_reconnect"
    INTEGRATION_REMOVE = "integration.remove"
    INTEGRATION_RETRY = "integration.retry"
    INTEGRATION_REKEY = "integration.rekey"
    INTEGRATION_CONNECT = "integration.connect"
    INTEGRATION_CONNECTED = "integration.connected"
    INTEGRATION_REVERT = "integration.revert"
    AUDIT_RESEAL = "audit.reseal"
    APIKEY_ISSUE = "apikey.issue"
    APIKEY_REVOKE = "apikey.revoke"
    SERVICE_TYPE_EDIT = "service_type.edit"
    TIME_OFF_REMOVE = "time_off.remove"
    HOLIDAY_ADD = "holiday.add"
    HOLIDAY_REMOVE = "holiday.remove"
    SERVICE_AREA_ADD = "service_area.add"
    SERVICE_AREA_REMOVE = "service_area.remove"
    TEAM_TRAVEL = "team.travel"
    USER_UPDATE = "user.update"
    SITE_ADD = "site.add"
    SITE_UPDATE = "site.update"
    APPOINTMENT_OVERRIDE = "appointment.override"
    WORKING_HOURS_CLEAR = "working_hours.clear"
    INTAKE_PHONE = "intake.phone"
    EXPORT_RUN = "export.run"
    ADDRESSBOOK_REFRESH = "addressbook.refresh"


PROGRESS_ACTIONS = frozenset({Action.APPOINTMENT_STATUS, Action.APPOINTMENT_ON_MY_WAY,
                              Action.APPOINTMENT_ON_SITE, Action.APPOINTMENT_DONE})
"""Changes that only report how a visit is going (the technician's own answers)."""


class MalformedRecord(ValueError):
    """A stored snapshot or change event that does not have the expected shape."""


@dataclass(frozen=True)
class AppointmentSnapshot:
    """An appointment's state as the audit trail and the change events keep it."""

    technician: str | None
    starts_at: dt.datetime
    ends_at: dt.datetime
    status: AppointmentStatus
    partstat: PartStat
    job_status: JobStatus
    sequence: int

    @classmethod
    def of(cls, appointment: Appointment) -> AppointmentSnapshot:
        return cls(
            technician=appointment.technician.login if appointment.technician else None,
            starts_at=appointment.starts_at,
            ends_at=appointment.ends_at,
            status=AppointmentStatus(appointment.status),
            partstat=PartStat(appointment.partstat),
            job_status=JobStatus(appointment.job.status),
            sequence=appointment.sequence,
        )

    def as_record(self) -> dict[str, Any]:
        """The stored form (JSON): the same keys and strings the trail has always held."""
        return {
            "technician": self.technician,
            "starts_at": self.starts_at.isoformat(),
            "ends_at": self.ends_at.isoformat(),
            "status": self.status.value,
            "partstat": self.partstat.value,
            "job_status": self.job_status.value,
            "sequence": self.sequence,
        }

    @classmethod
    def from_record(cls, record: Any) -> AppointmentSnapshot:
        if not isinstance(record, dict):
            raise MalformedRecord(f"an appointment snapshot is an object, not {type(record).__name__}")
        try:
            technician = record["technician"]
            return cls(
                technician=None if technician is None else str(technician),
                starts_at=dt.datetime.fromisoformat(record["starts_at"]),
                ends_at=dt.datetime.fromisoformat(record["ends_at"]),
                status=AppointmentStatus(record["status"]),
                partstat=PartStat(record["partstat"]),
                job_status=JobStatus(record["job_status"]),
                sequence=int(record["sequence"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedRecord(f"appointment snapshot {record!r}: {exc}") from exc


@dataclass(frozen=True)
class AppointmentChange:
    """One change of an appointment: the payload of an `appointment.changed` outbox row."""

    KIND = "appointment.changed"

    appointment_id: int
    action: Action
    sequence: int
    before: AppointmentSnapshot | None
    after: AppointmentSnapshot

    def as_payload(self) -> dict[str, Any]:
        return {
            "appointment_id": self.appointment_id,
            "action": self.action.value,
            "sequence": self.sequence,
            "before": None if self.before is None else self.before.as_record(),
            "after": self.after.as_record(),
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> AppointmentChange:
        try:
            action = Action(str(payload.get("action")))
            appointment_id = payload["appointment_id"]
            sequence = payload["sequence"]
        except (KeyError, ValueError) as exc:
            raise MalformedRecord(f"change event {payload!r}: {exc}") from exc
        if not isinstance(appointment_id, int) or not isinstance(sequence, int):
            raise MalformedRecord(f"change event {payload!r}: ids and sequences are numbers")
        before = payload.get("before")
        return cls(
            appointment_id=appointment_id,
            action=action,
            sequence=sequence,
            before=None if before is None else AppointmentSnapshot.from_record(before),
            after=AppointmentSnapshot.from_record(payload.get("after")),
        )
