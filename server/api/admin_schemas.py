"""What /api/v1 accepts and answers for sites, service areas, time off, service types, team
travel, a technician's day, integrations and webhooks (declared once, like schemas.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import AwareDatetime, BaseModel, Field

from server.api.pages import Page
from server.api.schemas import Strict

WINDOW = r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$"
SKILL = Field(max_length=50)


# --------------------------------------------------------------------------- sites


class SiteIn(Strict):
    address: str = Field(min_length=1, max_length=2000,
                         description="As people write it; postcode and country are read from it "
                                     "unless given.")
    postcode: str = Field("", max_length=20)
    country: str = Field("", max_length=60, description="ISO code (DE) or name (Germany).")
    latitude: float | None = Field(None, ge=-90, le=90)
    longitude: float | None = Field(None, ge=-180, le=180)
    compressor_make: str = Field("", max_length=100)
    compressor_model: str = Field("", max_length=100)
    compressor_serial: str = Field("", max_length=100)


class SitePatch(Strict):
    address: str | None = Field(None, min_length=1, max_length=2000,
                                description="A new address is read again unless postcode and "
                                            "country are given too.")
    postcode: str | None = Field(None, max_length=20)
    country: str | None = Field(None, max_length=60)
    latitude: float | None = Field(None, ge=-90, le=90,
                                   description="With longitude; both null clear the point.")
    longitude: float | None = Field(None, ge=-180, le=180)
    compressor_make: str | None = Field(None, max_length=100)
    compressor_model: str | None = Field(None, max_length=100)
    compressor_serial: str | None = Field(None, max_length=100)


# --------------------------------------------------------------------------- areas, time off


class Point(Strict):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class AreaIn(Strict):
    country: str = Field(min_length=2, max_length=60, description="ISO code, e.g. DE or US.")
    postcode_prefix: str = Field("", max_length=20,
                                 description="e.g. 10 or SW1; empty: the whole country (or a "
                                             "circle).")
    centre: Point | None = Field(None, description="A circle's centre, with radius_km.")
    radius_km: float | None = Field(None, gt=0, le=1000)


class AreaOut(BaseModel):
    id: int
    technician: str | None = Field(description="Owner login (null for a team's area).")
    team: str | None = Field(description="Owner team slug (null for a technician's own area).")
    country: str
    postcode_prefix: str
    centre: Point | None
    radius_km: float | None
    label: str


class AreaPage(Page):
    items: list[AreaOut]


class TimeOffIn(Strict):
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    reason: str = Field("", max_length=200)


class TimeOffOut(BaseModel):
    id: int
    technician: str | None
    starts_at: dt.datetime
    ends_at: dt.datetime
    reason: str


class TimeOffPage(Page):
    items: list[TimeOffOut]


class TimeOffQuery(Strict):
    all: bool = Field(False, description="Include time off that has ended.")


class TravelIn(Strict):
    road_factor: float | None = Field(None, ge=1, le=5, description="Road km per straight km.")
    speed_kmh: float | None = Field(None, ge=1, le=200)


# --------------------------------------------------------------------------- service types


class ServiceTypeIn(Strict):
    slug: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9-]*$")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=5000)
    duration_minutes: int = Field(ge=1, le=12 * 60)
    buffer_before_minutes: int = Field(0, ge=0, le=8 * 60)
    buffer_after_minutes: int = Field(0, ge=0, le=8 * 60)
    travel_minutes: int = Field(0, ge=0, le=8 * 60)
    skills: list[str] = Field(default_factory=list, max_length=50)
    min_notice_minutes: int = Field(120, ge=0, le=60 * 24 * 60)
    horizon_days: int = Field(30, ge=1, le=730)
    arrival_windows: list[str] = Field(default_factory=list, max_length=24,
                                       description='Like "08:00-12:00", in the business zone.')
    window_capacity: int = Field(0, ge=0, le=1000)
    remote: bool = Field(False, description="Done from anywhere: no areas, no travel.")


class ServiceTypePatch(Strict):
    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=5000)
    duration_minutes: int | None = Field(None, ge=1, le=12 * 60)
    buffer_before_minutes: int | None = Field(None, ge=0, le=8 * 60)
    buffer_after_minutes: int | None = Field(None, ge=0, le=8 * 60)
    travel_minutes: int | None = Field(None, ge=0, le=8 * 60)
    skills: list[str] | None = Field(None, max_length=50)
    min_notice_minutes: int | None = Field(None, ge=0, le=60 * 24 * 60)
    horizon_days: int | None = Field(None, ge=1, le=730)
    arrival_windows: list[str] | None = Field(None, max_length=24)
    window_capacity: int | None = Field(None, ge=0, le=1000)
    remote: bool | None = None
    active: bool | None = None


# --------------------------------------------------------------------------- the day


class DayQuery(Strict):
    date: dt.date = Field(description="The day, in the technician's zone.")


class DaySite(BaseModel):
    id: int
    address: str
    postcode: str
    country: str
    latitude: float | None
    longitude: float | None


class Drive(BaseModel):
    from_appointment_id: int
    distance_km: float | None = Field(description="Road km; null without coordinates at both ends.")
    minutes: int = Field(description="The travel the gap must hold (computed, or the fixed "
                                     "minutes of the service).")
    computed: bool
    gap_minutes: int = Field(description="From the end of the previous visit to this one's start.")
    enough: bool


class DayVisit(BaseModel):
    appointment_id: int
    job_id: int
    title: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    status: str
    site: DaySite | None
    travel_before: Drive | None


class DayOut(BaseModel):
    technician: str
    date: dt.date
    technician_timezone: str
    road_factor: float
    speed_kmh: float
    travel_minutes: int
    distance_km: float
    visits: list[DayVisit]
    timezone: str = Field(description="The zone every time in this answer is given in.")


# --------------------------------------------------------------------------- integrations


class IntegrationIn(Strict):
    platform: str = Field(min_length=1, max_length=40, description="e.g. google-calendar, slack.")
    name: str = Field(min_length=1, max_length=200)
    scope: str = Field("all", max_length=120, description="all, team:SLUG or technician:LOGIN")
    settings: dict[str, str] = Field(default_factory=dict, max_length=50)
    secrets: dict[str, str] = Field(default_factory=dict, max_length=20,
                                    description="Stored encrypted; never returned.")


class IntegrationOut(BaseModel):
    id: int
    platform: str
    name: str
    scope: str
    status: str = Field(description="active, paused or needs_reconnect")
    settings: dict[str, Any]
    secrets: list[str] = Field(description="Names of the stored secrets (never their values).")
    created_by: str
    created_at: dt.datetime
    last_success_at: dt.datetime | None
    last_error: str | None
    pending: int = Field(description="Pushes waiting (a paused integration keeps them).")
    dead_letters: int = Field(description="Pushes given up on; retry them.")
    pushed: int
    needs_reconnect: bool


class IntegrationPage(Page):
    items: list[IntegrationOut]


class RetryOut(BaseModel):
    requeued: int
    integration: IntegrationOut


class WebhookIn(Strict):
    url: str = Field(min_length=1, max_length=2000)
    events: list[str] = Field(default_factory=lambda: ["appointment.*", "job.*"], max_length=50)
    allow_private: bool = Field(False, description="Allow a loopback or private-network target.")


class WebhookOut(BaseModel):
    id: int
    url: str
    events: list[str]
    active: bool
    allow_private: bool
    created_by: str
    created_at: dt.datetime
    previous_secret_until: dt.datetime | None


class WebhookSecretOut(BaseModel):
    webhook: WebhookOut
    secret: str | None = Field(description="The signing secret: shown this once, stored "
                                           "encrypted (null on an Idempotency-Key replay; "
                                           "rotate to get a new one).")


class WebhookPage(Page):
    items: list[WebhookOut]


class RotateIn(Strict):
    overlap_hours: int = Field(24, ge=0, le=24 * 30,
                               description="How long the old secret also signs.")


class DeliveryOut(BaseModel):
    id: int
    webhook_id: int
    event_id: str
    type: str
    status: str
    attempts: int
    response_status: int | None
    last_error: str | None
    created_at: dt.datetime
    delivered_at: dt.datetime | None


class DeliveryPage(Page):
    items: list[DeliveryOut]
