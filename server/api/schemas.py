"""What /api/v1 accepts and answers, declared once: validation and the OpenAPI document."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

MAX_PAGE = 200
ID = Field(ge=1, le=2**31 - 1)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str | None = None
    blocking: list[int] | None = Field(None, description="Visits in the way (409 slot taken).")
    errors: list[dict[str, Any]] | None = Field(None, description="Field errors (422).")
    rule: str | None = Field(None, description="The rule a refused visit breaks (409): area, "
                                               "hours or personal; a dispatcher may force it.")
    conflicts: list[dict[str, Any]] | None = Field(
        None, description="What stands in the way of a refused visit (409), one entry per rule.")
    timezone: str | None = Field(None, description="The zone `detail` gives times in.")


# --------------------------------------------------------------------------- headers


class WriteHeaders(BaseModel):
    if_match: str | None = Field(
        None, alias="If-Match",
        description="The resource's ETag from your last read (required: 428 without it, "
                    "412 when the resource changed since).")


class CreateHeaders(BaseModel):
    idempotency_key: str | None = Field(
        None, alias="Idempotency-Key", max_length=255,
        description="Any unique string (e.g. a UUID). A retry with the same key and body gets "
                    "the first answer again; kept 24 h.")


class ActionHeaders(WriteHeaders, CreateHeaders):
    pass


# --------------------------------------------------------------------------- queries


class PageQuery(Strict):
    limit: int = Field(50, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(None, max_length=200, description="From the `next` link.")


class AppointmentQuery(PageQuery):
    technician: str | None = Field(None, max_length=64, description="Technician login.")
    customer: int | None = Field(None, ge=1, le=2**31 - 1)
    job: int | None = Field(None, ge=1, le=2**31 - 1)
    from_: AwareDatetime | None = Field(None, alias="from")
    to: AwareDatetime | None = None
    status: AppointmentState | None = None


class JobQuery(PageQuery):
    customer: int | None = Field(None, ge=1, le=2**31 - 1)


class ChangeQuery(Strict):
    after: int = Field(0, ge=0, le=2**63 - 1, description="Last event id you have seen.")
    limit: int = Field(100, ge=1, le=MAX_PAGE)
    entity: str | None = Field(None, max_length=50)


class AvailabilityQuery(Strict):
    service: str = Field(max_length=64, description="Service type slug.")
    site: int | None = Field(None, ge=1, le=2**31 - 1)
    from_: AwareDatetime = Field(alias="from")
    to: AwareDatetime
    limit: int = Field(MAX_PAGE, ge=1, le=1000)


class LinkQuery(Strict):
    subject: str = Field(max_length=100, description="technician:LOGIN, team:SLUG, customer:ID "
                                                    "or appointment:ID")


# --------------------------------------------------------------------------- enums


class AppointmentState(StrEnum):
    TENTATIVE = "tentative"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


class BookState(StrEnum):
    TENTATIVE = "tentative"
    CONFIRMED = "confirmed"


class Progress(StrEnum):
    DISPATCHED = "dispatched"
    EN_ROUTE = "en_route"
    ON_SITE = "on_site"
    COMPLETED = "completed"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Source(StrEnum):
    WEB = "web"
    PHONE = "phone"
    EMAIL = "email"
    API = "api"
    PLATFORM = "platform"


class LinkPurpose(StrEnum):
    FEED = "feed"
    SHARE = "share"
    DAY = "day"  # a technician's day page (subject technician:LOGIN)


class Audience(StrEnum):
    TECHNICIAN = "technician"
    TEAM = "team"
    CUSTOMER = "customer"
    FREEBUSY = "freebusy"


# --------------------------------------------------------------------------- work


class JobOut(BaseModel):
    id: int
    customer_id: int
    site_id: int | None
    title: str
    problem: str
    priority: str
    source: str
    status: str
    created_at: dt.datetime
    updated_at: dt.datetime


class JobIn(Strict):
    customer_id: int = Field(ge=1, le=2**31 - 1)
    title: str = Field(min_length=1, max_length=200)
    problem: str = Field("", max_length=10_000)
    priority: Priority = Priority.NORMAL
    source: Source = Source.API
    site_id: int | None = Field(None, ge=1, le=2**31 - 1)


class AppointmentOut(BaseModel):
    id: int
    uid: str
    job_id: int
    technician: str | None
    starts_at: dt.datetime
    ends_at: dt.datetime
    window_start: dt.datetime | None
    window_end: dt.datetime | None
    status: str
    partstat: str
    job_status: str
    progress: str | None = Field(description="What the technician last reported for this visit "
                                             "(en_route, on_site, completed), if anything.")
    progress_at: dt.datetime | None
    sequence: int
    service_type: str | None
    updated_at: dt.datetime


class Force(Strict):
    """Book against the service area, working hours or personal time (dispatcher keys only)."""

    reason: str = Field(min_length=1, max_length=500, description="Who asked and why (audited).")


FORCE = Field(None, description="Override a rule refusal (409 with `conflicts`) with a reason; "
                                "dispatcher keys only. Overlaps and travel are never overridden.")


class AppointmentIn(Strict):
    job_id: int = Field(ge=1, le=2**31 - 1)
    technician: str | None = Field(None, max_length=64, description="Login; null = unassigned.")
    starts_at: AwareDatetime
    ends_at: AwareDatetime | None = Field(None, description="Or give duration_minutes.")
    duration_minutes: int | None = Field(None, ge=1, le=14 * 24 * 60)
    window_minutes: int | None = Field(None, ge=1, le=24 * 60,
                                       description="Customer arrival window from starts_at.")
    status: BookState = BookState.CONFIRMED
    service_type: str | None = Field(None, max_length=64, description="Service type slug.")
    force: Force | None = FORCE


class AppointmentPatch(Strict):
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    technician: str | None = Field(None, max_length=64, description="Hand over to this login.")
    force: Force | None = FORCE


class ReassignIn(Strict):
    technician: str | None = Field(max_length=64, description="Login, or null to unassign.")
    force: Force | None = FORCE


class ZoneQuery(Strict):
    tz: str | None = Field(None, max_length=64, description="IANA zone for the times in a "
                                                           "refusal's message (default: the "
                                                           "Fieldcal-Timezone header, else the "
                                                           "business's zone).")


class CancelIn(Strict):
    reason: str = Field("", max_length=1000)


class StatusIn(Strict):
    status: Progress


class ServiceTypeOut(BaseModel):
    id: int
    slug: str
    name: str
    description: str
    duration_minutes: int
    buffer_before_minutes: int
    buffer_after_minutes: int
    travel_minutes: int
    skills: list[str]
    min_notice_minutes: int
    horizon_days: int
    arrival_windows: list[str]
    window_capacity: int
    active: bool
    remote: bool


class HolidayOut(BaseModel):
    id: int
    starts_at: dt.datetime
    ends_at: dt.datetime
    reason: str


class HolidayIn(Strict):
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    reason: str = Field("", max_length=200)


class SlotOut(BaseModel):
    starts_at: dt.datetime
    ends_at: dt.datetime
    technician: str = Field(description="Who would get the visit (the fairest free one).")
    window_start: dt.datetime | None
    window_end: dt.datetime | None


class LinkIn(Strict):
    purpose: LinkPurpose
    subject: str = Field(max_length=100, description="technician:LOGIN, team:SLUG, customer:ID "
                                                    "or appointment:ID")
    audience: Audience | None = None
    expires_in_days: int | None = Field(None, ge=1, le=3650)
    label: str = Field("", max_length=200)


class LinkOut(BaseModel):
    id: int
    purpose: str
    subject: str
    audience: str
    label: str
    version: int
    url: str | None = Field(description="Null once revoked.")
    created_by: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None


class EventOut(BaseModel):
    id: int
    at: dt.datetime
    actor: str
    channel: str
    action: str
    entity: str
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


AppointmentQuery.model_rebuild()
