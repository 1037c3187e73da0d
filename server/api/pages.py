"""The pages every /api/v1 list answers with: items, the next page's URL, the time zone."""

from __future__ import annotations

from pydantic import BaseModel, Field

from server.api.people_schemas import (
    CustomerOut,
    TeamOut,
    TechnicianOut,
)
from server.api.schemas import (
    AppointmentOut,
    EventOut,
    HolidayOut,
    JobOut,
    LinkOut,
    ServiceTypeOut,
    SlotOut,
)


class Page(BaseModel):
    next: str | None = Field(description="URL of the next page; null on the last one.")
    timezone: str = Field(description="The zone every time in this answer is given in.")


class TechnicianPage(Page):
    items: list[TechnicianOut]


class TeamPage(Page):
    items: list[TeamOut]


class CustomerPage(Page):
    items: list[CustomerOut]


class JobPage(Page):
    items: list[JobOut]


class AppointmentPage(Page):
    items: list[AppointmentOut]


class ServiceTypePage(Page):
    items: list[ServiceTypeOut]


class HolidayPage(Page):
    items: list[HolidayOut]


class SlotPage(Page):
    items: list[SlotOut]


class LinkPage(Page):
    items: list[LinkOut]


class EventPage(Page):
    items: list[EventOut]
