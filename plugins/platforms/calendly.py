"""Calendly: bookings made on a Calendly page become jobs and visits here.

Calendly posts `invitee.created` and `invitee.canceled` to `/hooks/calendly/ID`, signed with
the subscription's signing key (`Calendly-Webhook-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
"t.body">`). A booking's time, event type and place are read from the scheduled event
(`GET /scheduled_events/{uuid}`) unless the webhook carries it. The event type maps to our
service type (`event_types` setting: `URI=slug,URI=slug`; `service` for every other one);
the service address is the answer to the booking form's address question, else the
event's in-person location. Nothing is pushed to Calendly: it owns its own booking page.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from plugins.platforms.http import HttpConnector
from plugins.platforms.intake import parse_mapping, parse_time
from server.platforms import Inbound, InboundBooking, InboundCancel, InvalidSignature, Rejected, Reply

TOLERANCE_S = 180  # the signature's timestamp may be this old (or this far ahead)
ADDRESS_PLACES = ("physical", "ask_invitee", "custom")


class Calendly(HttpConnector):
    name = "calendly"
    default_base_url = "https://api.calendly.com"
    optional_settings = frozenset({"event_types", "service", "address_question"})
    secret_names = frozenset({"signing_key", "access_token"})
    keeps_objects = False
    pushes = False

    @classmethod
    def validate_settings(cls, settings: Mapping[str, str], secrets: Mapping[str, str]) -> None:
        super().validate_settings(settings, secrets)
        parse_mapping("calendly", "event_types", str(settings.get("event_types", "")))

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.secret('access_token')}"}

    def verify(self, request: Inbound, now: dt.datetime) -> None:
        secret = self.config.secrets.get("signing_key", "")
        parts = dict(part.strip().partition("=")[::2]
                     for part in request.header("Calendly-Webhook-Signature").split(",") if "=" in part)
        stamp, given = parts.get("t", ""), parts.get("v1", "")
        if not secret or not stamp.isdigit() or not given:
            raise InvalidSignature("calendly: the request is not signed")
        if abs(now.timestamp() - int(stamp)) > TOLERANCE_S:
            raise InvalidSignature("calendly: the request's timestamp is outside the tolerance")
        expected = hmac.new(secret.encode(), stamp.encode() + b"." + request.body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, given):
            raise InvalidSignature("calendly: the signature does not match")

    def receive(self, request: Inbound) -> Reply:
        try:
            message = json.loads(request.body or b"{}")
        except ValueError:
            return Reply(400, "the body is not JSON\n")
        if not isinstance(message, dict) or not isinstance(message.get("payload"), dict):
            return Reply(400, "the body has no payload\n")
        invitee: dict[str, Any] = message["payload"]
        uri = str(invitee.get("uri", ""))
        if "/invitees/" not in uri:
            return Reply(400, "the payload names no invitee\n")
        if message.get("event") == "invitee.canceled":
            reason = (invitee.get("cancellation") or {}).get("reason") or ""
            return Reply(200, "cancelled\n", bookings=(InboundCancel(uri, str(reason)),))
        if message.get("event") != "invitee.created":
            return Reply(200, "ignored\n")
        return Reply(200, "booked\n", bookings=(self.booking(invitee, self.scheduled_event(invitee)),))

    def scheduled_event(self, invitee: Mapping[str, Any]) -> dict[str, Any]:
        carried = invitee.get("scheduled_event")
        if isinstance(carried, dict) and carried.get("start_time"):
            return carried
        event_uri = str(invitee.get("event") or str(invitee["uri"]).split("/invitees/")[0])
        uuid = event_uri.rstrip("/").rsplit("/", 1)[-1]
        found = self.request("GET", f"/scheduled_events/{uuid}").json()
        if not isinstance(found, dict) or not isinstance(found.get("resource"), dict):
            raise Rejected(f"calendly: scheduled event {uuid} came back without a resource")
        return found["resource"]

    def booking(self, invitee: Mapping[str, Any], event: Mapping[str, Any]) -> InboundBooking:
        answers = [(str(qa.get("question", "")), str(qa.get("answer", "")))
                   for qa in invitee.get("questions_and_answers") or [] if isinstance(qa, dict)]
        wanted = self.config.setting("address_question", "address").lower()
        address = next((a for q, a in answers if wanted in q.lower() and a.strip()), "")
        place = event.get("location") or {}
        if not address and isinstance(place, dict) and place.get("type") in ADDRESS_PLACES:
            address = str(place.get("location") or "")
        event_type = str(event.get("event_type", "")).rstrip("/").rsplit("/", 1)[-1]
        mapped = parse_mapping("calendly", "event_types", self.config.setting("event_types"))
        slug = mapped.get(event_type) or self.config.setting("service")
        notes = "\n".join(f"{q}: {a}" for q, a in answers if a.strip() and a != address)
        return InboundBooking(
            key=str(invitee["uri"]), starts_at=parse_time("calendly", event.get("start_time")),
            ends_at=parse_time("calendly", event.get("end_time")), name=str(invitee.get("name") or ""),
            email=str(invitee.get("email") or ""), phone=str(invitee.get("text_reminder_number") or ""),
            timezone=str(invitee.get("timezone") or "UTC"), address=address, service_slug=slug,
            title=str(event.get("name") or ""), notes=notes)
