"""Acuity Scheduling: appointments booked, moved or cancelled there become visits here.

Acuity posts a form (`action` = scheduled | rescheduled | changed | canceled, `id`,
`calendarID`, `appointmentTypeID`) to `/hooks/acuity/ID`, signed with the account's API key
(`x-acuity-signature`: base64 HMAC-SHA256 of the raw body). The signature carries no
timestamp, so a replayed request is harmless rather than refused: the booking is keyed on
Acuity's appointment id, and the same state applied twice changes nothing. The appointment
itself is read with `GET /appointments/{id}` (HTTP Basic: user id and API key). Its type
maps to our service type (`appointment_types`: `ID=slug,...`; `service` for the others);
the service address is the intake form field named by `address_field` (default "address"),
else the appointment's location.

Nothing is pushed to Acuity: the contract documents no endpoint for blocked time, and
booking our visits there as appointments would send its customers' notifications.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import httpx

from plugins.platforms.http import HttpConnector
from plugins.platforms.intake import parse_mapping, parse_time
from server.platforms import Inbound, InboundBooking, InboundCancel, InvalidSignature, Rejected, Reply

BOOKING_ACTIONS = ("scheduled", "rescheduled", "changed")


def key_of(appointment_id: str) -> str:
    return f"appointment:{appointment_id}"


class Acuity(HttpConnector):
    name = "acuity"
    default_base_url = "https://acuityscheduling.com/api/v1"
    required_settings = frozenset({"user_id"})
    optional_settings = frozenset({"appointment_types", "service", "address_field"})
    secret_names = frozenset({"api_key"})
    keeps_objects = False
    pushes = False

    @classmethod
    def validate_settings(cls, settings: Mapping[str, str], secrets: Mapping[str, str]) -> None:
        super().validate_settings(settings, secrets)
        parse_mapping("acuity", "appointment_types", str(settings.get("appointment_types", "")))

    def auth_headers(self) -> dict[str, str]:
        pair = f"{self.config.setting('user_id')}:{self.config.secret('api_key')}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}

    def verify(self, request: Inbound, now: dt.datetime) -> None:
        secret = self.config.secrets.get("api_key", "")
        given = request.header("x-acuity-signature")
        if not secret or not given:
            raise InvalidSignature("acuity: the request is not signed")
        expected = base64.b64encode(hmac.new(secret.encode(), request.body, hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, given):
            raise InvalidSignature("acuity: the signature does not match")

    def receive(self, request: Inbound) -> Reply:
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        action, appointment_id = form.get("action", ""), form.get("id", "")
        if not appointment_id.isdigit():
            return Reply(400, "the form names no appointment id\n")
        cancelled = Reply(200, "cancelled\n",
                          bookings=(InboundCancel(key_of(appointment_id), "cancelled on Acuity"),))
        if action == "canceled":
            return cancelled
        if action not in BOOKING_ACTIONS:
            return Reply(200, "ignored\n")
        found = self.appointment(appointment_id)
        if found.get("canceled"):
            return cancelled
        return Reply(200, f"{action}\n", bookings=(self.booking(found),))

    def appointment(self, appointment_id: str) -> dict[str, Any]:
        response: httpx.Response = self.request("GET", f"/appointments/{appointment_id}")
        found = response.json()
        if not isinstance(found, dict) or str(found.get("id", "")) != appointment_id:
            raise Rejected(f"acuity: appointment {appointment_id} came back as something else")
        return found

    def booking(self, found: Mapping[str, Any]) -> InboundBooking:
        wanted = self.config.setting("address_field", "address").lower()
        fields = [(str(f.get("name", "")), str(f.get("value", "")))
                  for form in found.get("forms") or [] if isinstance(form, dict)
                  for f in form.get("values") or [] if isinstance(f, dict)]
        address = next((value for name, value in fields if wanted in name.lower() and value.strip()), "")
        address = address or str(found.get("location") or "")
        starts_at = parse_time("acuity", found.get("datetime"))
        minutes = int(found.get("duration") or 60)
        mapped = parse_mapping("acuity", "appointment_types", self.config.setting("appointment_types"))
        slug = mapped.get(str(found.get("appointmentTypeID", ""))) or self.config.setting("service")
        answers = [f"{name}: {value}" for name, value in fields if value.strip() and value != address]
        notes = "\n".join([str(found.get("notes") or ""), *answers])
        name = " ".join(filter(None, (str(found.get("firstName") or ""), str(found.get("lastName") or ""))))
        return InboundBooking(
            key=key_of(str(found["id"])), starts_at=starts_at,
            ends_at=starts_at + dt.timedelta(minutes=minutes),
            name=name, email=str(found.get("email") or ""), phone=str(found.get("phone") or ""),
            timezone=str(found.get("timezone") or "UTC"), address=address, service_slug=slug,
            title=str(found.get("type") or ""), notes=notes.strip())
