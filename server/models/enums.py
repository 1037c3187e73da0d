"""The states and roles the jobs database knows."""

from __future__ import annotations

import enum


class Role(enum.StrEnum):
    TECHNICIAN = "technician"
    DISPATCHER = "dispatcher"
    READONLY = "readonly"  # staff who may look at the console but change nothing

class JobStatus(enum.StrEnum):
    NEW = "new"
    SCHEDULED = "scheduled"
    DISPATCHED = "dispatched"
    EN_ROUTE = "en_route"
    ON_SITE = "on_site"
    COMPLETED = "completed"
    CANCELLED = "cancelled"

class AppointmentStatus(enum.StrEnum):
    TENTATIVE = "tentative"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"

class PartStat(enum.StrEnum):
    NEEDS_ACTION = "NEEDS-ACTION"
    ACCEPTED = "ACCEPTED"
    TENTATIVE = "TENTATIVE"
    DECLINED = "DECLINED"

class CollectionKind(enum.StrEnum):
    JOBS = "jobs"  # a technician's assigned visits (rendered from appointments)
    CALENDAR = "calendar"  # free-form items: "personal" and any the technician creates
    TEAM = "team"  # read-only view of a team's visits
    CUSTOMER = "customer"  # read-only view of a customer's visits
    ADDRESSBOOK = "addressbook"  # a technician's customers as vCards (server.contacts)
