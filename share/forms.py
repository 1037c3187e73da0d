"""Booking and manage forms: field parsing and validation, signed hidden fields, CSRF checks.

Nothing here is kept on the server between requests. What a later step needs
travels in hidden fields signed with the app's keys (itsdangerous, one salt per
use); the payload is readable, not encrypted, so it carries only what the
customer typed themselves or ids.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from itsdangerous import BadData, URLSafeTimedSerializer
from werkzeug.datastructures import Headers

from server import inputs
from server.links import Purpose, is_canonical
from server.scheduling.booking import Contact
from server.text import clean_text, one_line
from share.zones import canonical, from_address, zone_choices

DETAILS_MAX_AGE = dt.timedelta(hours=24)
HOLD_TOKEN_MAX_AGE = dt.timedelta(hours=24)
CSRF_MAX_AGE = dt.timedelta(hours=12)
BOOKING_SALT = f"fieldcal.link.{Purpose.BOOKING.value}"
CSRF_SALT = "fieldcal.csrf"
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE_PATTERN = re.compile(r"^[0-9+()./ -]*$")
LIMITS = {"name": 200, "email": 320, "phone": 50, "address": 500, "problem": 4000,
          "make": 100, "model": 100}


@dataclass(frozen=True)
class Details:
    """What the customer told us on the details step."""

    problem: str = ""
    address: str = ""
    make: str = ""
    model: str = ""
    name: str = ""
    email: str = ""
    phone: str = ""
    timezone: str = "UTC"

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def contact(self) -> Contact:
        return Contact(name=self.name, email=self.email, phone=self.phone, timezone=self.timezone,
                       address=self.address, problem=self.problem, compressor_make=self.make,
                       compressor_model=self.model)


def parse_details(form: Mapping[str, str], default_zone: str) -> tuple[Details, dict[str, str]]:
    """The submitted details, cleaned, and an error message per field that needs fixing.

    An empty time zone means "work it out": the browser's zone (sent by a script),
    else the address's country, else the business's zone.
    """
    values = {name: form.get(name, "") or "" for name in LIMITS}
    cleaned = {name: (clean_text(v) if name in ("address", "problem") else one_line(v))
               for name, v in values.items()}
    chosen = form.get("timezone", "") or ""
    zone = chosen or (canonical(form.get("browser_zone", "") or "")
                      or from_address(cleaned["address"]) or default_zone)
    details = Details(timezone=zone if zone in zone_choices() else default_zone, **cleaned)
    errors: dict[str, str] = {}
    if not details.problem:
        errors["problem"] = "Describe what is wrong with the compressor"
    if not details.address:
        errors["address"] = "Enter the address where the compressor is"
    if not details.name:
        errors["name"] = "Enter your name"
    if not details.email:
        errors["email"] = "Enter your email address"
    elif not EMAIL_PATTERN.match(details.email):
        errors["email"] = "Enter an email address like name@example.com"
    if details.phone and (not PHONE_PATTERN.match(details.phone)
                          or sum(c.isdigit() for c in details.phone) < 6):
        errors["phone"] = "Enter a phone number like +1 555 0100 123, or leave it empty"
    if zone not in zone_choices():
        errors["timezone"] = "Choose a time zone from the list"
    for name, limit in LIMITS.items():
        if len(cleaned[name]) > limit and name not in errors:
            errors[name] = f"Use at most {limit} characters (you used {len(cleaned[name])})"
    return details, errors


def new_idempotency_key() -> str:
    return secrets.token_urlsafe(18)


def valid_key(key: str) -> bool:
    return bool(KEY_PATTERN.match(key))


def parse_slot(value: str) -> dt.datetime | None:
    """A picked slot: an ISO timestamp with an offset, returned in UTC (OutOfRange: 400)."""
    return inputs.parse_moment(value, "The chosen time")


def parse_week(value: str) -> dt.date | None:
    """A week to show, by any of its days (OutOfRange: 400)."""
    return inputs.parse_day(value, "The week")


@dataclass(frozen=True)
class HoldRef:
    """Which hold a booking page is about: its appointment, booking key and display zone."""

    appointment_id: int
    key: str
    timezone: str


class FormSigner:
    """Signs the hidden fields of the booking and manage forms with the app's keys."""

    def __init__(self, secret_keys: tuple[str, ...]) -> None:
        if not secret_keys:
            raise ValueError("FormSigner needs at least one secret key")
        keys = list(reversed(secret_keys))  # itsdangerous signs with the last key
        self._booking = URLSafeTimedSerializer(keys, salt=BOOKING_SALT)
        self._csrf = URLSafeTimedSerializer(keys, salt=CSRF_SALT)

    def _load(self, serializer: URLSafeTimedSerializer, token: str, max_age: dt.timedelta) -> Any:
        if not is_canonical(token):
            return None
        try:
            return serializer.loads(token, max_age=int(max_age.total_seconds()))
        except BadData:
            return None

    def details_token(self, details: Details) -> str:
        return self._booking.dumps({"t": "details", **asdict(details)})

    def load_details(self, token: str) -> Details | None:
        payload = self._load(self._booking, token, DETAILS_MAX_AGE)
        if not isinstance(payload, dict) or payload.pop("t", None) != "details":
            return None
        try:
            details = Details(**payload)
        except TypeError:
            return None
        if not all(isinstance(v, str) for v in asdict(details).values()):
            return None
        return details if details.timezone in zone_choices() else None

    def hold_token(self, ref: HoldRef) -> str:
        return self._booking.dumps({"t": "hold", "a": ref.appointment_id, "k": ref.key,
                                    "z": ref.timezone})

    def load_hold(self, token: str) -> HoldRef | None:
        payload = self._load(self._booking, token, HOLD_TOKEN_MAX_AGE)
        if not isinstance(payload, dict) or payload.get("t") != "hold":
            return None
        appointment_id, key, zone = payload.get("a"), payload.get("k"), payload.get("z")
        if (not isinstance(appointment_id, int) or isinstance(appointment_id, bool)
                or not isinstance(key, str) or zone not in zone_choices()):
            return None
        return HoldRef(appointment_id, key, str(zone))

    def csrf_token(self, *binding: str | int) -> str:
        """A form token bound to what the form acts on (e.g. a manage link's id and version)."""
        return self._csrf.dumps(list(binding))

    def csrf_matches(self, token: str, *binding: str | int) -> bool:
        payload = self._load(self._csrf, token, CSRF_MAX_AGE)
        return isinstance(payload, list) and payload == list(binding)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def cross_origin(headers: Headers | Mapping[str, str], own_origins: set[str]) -> bool:
    """Whether the request says it came from another site.

    Browsers send `Origin: null` from pages with `Referrer-Policy: no-referrer`
    (ours), so "null" counts as no answer; the CSRF token is the real check.
    """
    own = {_origin(o) for o in own_origins}
    origin = headers.get("Origin", "")
    if origin and origin != "null":
        return _origin(origin) not in own
    referer = headers.get("Referer", "")
    if referer:
        return _origin(referer) not in own
    return False
