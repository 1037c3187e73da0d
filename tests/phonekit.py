"""Seed data and page readers for the phone intake tests (/console/new): two crews that serve
their own postcodes, a service only they can do, and a returning customer."""

from __future__ import annotations

import html
import re
import secrets
from dataclasses import dataclass

from bookkit import technician
from seeding import domain

from server import directory
from server.db import Database
from server.scheduling import areas, capacity

WEEKDAYS_8_TO_5 = {d: [("08:00", "17:00")] for d in range(5)}
AROUND_THE_CLOCK = {d: [("00:00", "23:59")] for d in range(7)}
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
OFFER = re.compile(r'name="slot" value="([^"]+)" id="offer-\d+">([^<]+)</button>')


@dataclass(frozen=True)
class PhoneSeed:
    service: str  # slug; 60 minutes, 15 minutes after each visit
    windowed: str  # slug; the same work with arrival windows 08:00-12:00 / 13:00-17:00
    service_name: str
    berlin: str  # technician name (Europe/Berlin, weekdays 08-17, serves DE 10…)
    new_york: str  # technician name (every hour of every day, serves US 100…)
    customer_id: int
    site_id: int
    customer_name: str
    customer_email: str
    customer_phone: str


def seed_phone(db: Database) -> PhoneSeed:
    tag = secrets.token_hex(3)
    skill = f"phone-{tag}"
    with domain(db) as ctx:
        berlin = technician(ctx, f"pb-{tag}", f"Bernd Berliner{tag}", "Europe/Berlin", [skill],
                            WEEKDAYS_8_TO_5)
        new_york = technician(ctx, f"pn-{tag}", f"Nora Yorker{tag}", "America/New_York", [skill],
                              AROUND_THE_CLOCK)
        areas.add_service_area(ctx, technician=berlin, country="DE", postcode_prefix="10")
        areas.add_service_area(ctx, technician=new_york, country="US", postcode_prefix="100")
        name = f"Compressor repair {tag}"
        capacity.add_service_type(ctx, f"phone-{tag}", name, duration_minutes=60,
                                  buffer_after_minutes=15, skills=[skill], min_notice_minutes=60,
                                  horizon_days=28)
        capacity.add_service_type(ctx, f"phone-w-{tag}", f"Survey {tag}", duration_minutes=60,
                                  skills=[skill], min_notice_minutes=60, horizon_days=28,
                                  arrival_windows=["08:00-12:00", "13:00-17:00"])
        email = f"pfannkuch-{tag}@example.test"
        phone = f"+49 30 98{secrets.randbelow(10**6):06d}"
        customer = directory.add_customer(
            ctx, f"Brigitte Pfannkuch{tag}", email=email, phone=phone, timezone="Europe/Berlin",
            address="Pfannkuchstraße 3\n10115 Berlin", compressor_make="Atlas Copco",
            compressor_model="GA 30")
        ctx.session.flush()
        site_id = customer.sites[0].id
        return PhoneSeed(f"phone-{tag}", f"phone-w-{tag}", name, berlin.name, new_york.name,
                         customer.id, site_id, customer.name, email, phone)


def hidden_fields(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in HIDDEN.findall(page)}


def offers(page: str) -> list[tuple[str, str]]:
    """(value, label) of each offered time on a slots page."""
    return [(html.unescape(v), html.unescape(label)) for v, label in OFFER.findall(page)]


def new_caller(service: str, /, **changes: str) -> dict[str, str]:
    form = {"customer": "", "site": "", "name": "Greta Hahn", "phone": "+49 30 1112223",
            "email": f"greta-{secrets.token_hex(4)}@example.test", "timezone": "Europe/Berlin",
            "address": "Werkstraße 5\n10115 Berlin", "make": "Kaeser", "model": "SK 22",
            "serial": "KS-9911", "problem": "Trips after five minutes; the display shows E42.",
            "urgency": "high", "service": service}
    form.update(changes)
    return form
