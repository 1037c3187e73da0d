"""The jobs database: SQLAlchemy 2 tables. Times are stored in UTC."""

from server.models.access import ApiKey, IdempotentRequest
from server.models.areas import ServiceArea
from server.models.base import Base, UTCDateTime, utcnow
from server.models.calendars import CalendarItem, Change, Collection
from server.models.enums import AppointmentStatus, CollectionKind, JobStatus, PartStat, Role
from server.models.intake import InboundMail, JobFile, JobMessage, JobPhoto, SentMail
from server.models.integrations import ExternalRef, InboundRef, Integration, Webhook, WebhookDelivery
from server.models.jobs import Appointment, Customer, Job, ServiceType, Site, TimeOff, WorkingHours
from server.models.people import Credential, Team, TeamMember, User
from server.models.records import AuditEntry, OutboxMessage, RateLimitBucket, ShareLink
from server.models.staff import StaffPassword

__all__ = [
    "ApiKey",
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
    "ExternalRef",
    "IdempotentRequest",
    "InboundMail",
    "InboundRef",
    "Integration",
    "Job",
    "JobFile",
    "JobMessage",
    "JobPhoto",
    "JobStatus",
    "OutboxMessage",
    "PartStat",
    "RateLimitBucket",
    "Role",
    "SentMail",
    "ServiceArea",
    "ServiceType",
    "ShareLink",
    "Site",
    "StaffPassword",
    "Team",
    "TeamMember",
    "TimeOff",
    "UTCDateTime",
    "User",
    "Webhook",
    "WebhookDelivery",
    "WorkingHours",
    "utcnow",
]
