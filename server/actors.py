"""Who made a change, and through which channel: carried into every audit entry."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    name: str
    channel: str
    role: str = "system"
    request_id: str = ""
    timezone: str = ""  # where the person acting reads times ("" = the business's zone)

    @property
    def is_dispatcher(self) -> bool:
        return self.role in ("dispatcher", "system")


SYSTEM = Actor(name="system", channel="system")
