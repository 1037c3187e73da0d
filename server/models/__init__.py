"""The jobs database: SQLAlchemy 2 tables. Times are stored in UTC."""

from server.models.base import Base, UTCDateTime, utcnow
from server.models.calendars import CalendarItem, Change, Collection
from server.models.enums import AppointmentStatus, CollectionKind, JobStatus, PartStat, Role
from server.models.jobs import Appointment, Customer, Job, ServiceType, Site, TimeOff, WorkingHours
from server.models.people import Credential, Team, TeamMember, User
from server.models.records import AuditEntry, OutboxMessage, RateLimitBucket, ShareLink

__all__ = [
    "Appointment",
    "AppointmentStatus",
    "AuditEntry",
    "Base",
    "CalendarItem",
    "Change",
    "Collection",
    "CollectionKind",
    "Credential",
    "Customer",
    "Job",
    "JobStatus",
    "OutboxMessage",
    "PartStat",
    "RateLimitBucket",
    "Role",
    "ServiceType",
    "ShareLink",
    "Site",
    "Team",
    "TeamMember",
    "TimeOff",
    "UTCDateTime",
    "User",
    "WorkingHours",
    "utcnow",
]
