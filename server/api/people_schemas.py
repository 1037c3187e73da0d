"""What /api/v1 accepts and answers about people and places: technicians and their
working hours, teams, customers and their sites."""

from __future__ import annotations

from pydantic import BaseModel, Field

from server.api.schemas import Strict


class WorkingHoursOut(BaseModel):
    weekday: int = Field(description="0 = Monday, in the technician's time zone")
    starts: str
    ends: str


class WorkingHoursIn(Strict):
    weekday: int = Field(ge=0, le=6, description="0 = Monday")
    starts: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["08:00"])
    ends: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$", examples=["17:00"])


class WeekIn(Strict):
    working_hours: list[WorkingHoursIn] = Field(max_length=70)


class TechnicianOut(BaseModel):
    id: int
    login: str
    name: str
    email: str
    timezone: str
    skills: list[str]
    teams: list[str]
    active: bool
    working_hours: list[WorkingHoursOut]


class TechnicianIn(Strict):
    login: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    email: str = Field(min_length=3, max_length=320)
    timezone: str = Field("UTC", max_length=64)
    skills: list[str] = Field(default_factory=list, max_length=50)


class TeamOut(BaseModel):
    id: int
    slug: str
    name: str
    members: list[str]
    road_factor: float = Field(description="Road distance per straight-line km.")
    speed_kmh: float = Field(description="Average driving speed.")


class TeamIn(Strict):
    slug: str = Field(min_length=1, max_length=63)
    name: str = Field(min_length=1, max_length=200)


class SiteOut(BaseModel):
    id: int
    customer_id: int
    address: str
    postcode: str
    country: str = Field(description="ISO 3166 code, e.g. DE; empty when unknown.")
    latitude: float | None
    longitude: float | None
    compressor_make: str
    compressor_model: str
    compressor_serial: str


class CustomerOut(BaseModel):
    id: int
    name: str
    email: str
    phone: str
    timezone: str
    sites: list[SiteOut]


class CustomerIn(Strict):
    name: str = Field(min_length=1, max_length=200)
    email: str = Field("", max_length=320)
    phone: str = Field("", max_length=50)
    timezone: str | None = Field(None, max_length=64, description="Default: the business's zone.")
    address: str = Field("", max_length=2000, description="Creates the customer's first site.")
    compressor_make: str = Field("", max_length=100)
    compressor_model: str = Field("", max_length=100)
    compressor_serial: str = Field("", max_length=100)
