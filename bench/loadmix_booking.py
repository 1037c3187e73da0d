"""The booking page's whole journey in the load mix, as a customer's browser makes it:
details → the first week's free times → hold one → the hold page → confirm.

Each journey is a new customer (own email and phone) at an address of its own
(`X-Forwarded-For`, believed because the bench server trusts loopback as its proxy), so
neither the per-address limits nor one contact's open hold stand in the way: what is
measured is the pages' work, not the abuse guards."""

from __future__ import annotations

import html
import random
import re

import httpx

from server import directory
from server.context import Context
from server.models import Role
from server.scheduling import capacity

SERVICE = "loadmix-repair"
TECHNICIANS = ("page-anna", "page-ben", "page-cem")  # enough free times for a knee search
EVERY_DAY = {day: [("07:00", "19:00")] for day in range(7)}
SERVER_ENV = {"FIELDCAL_TRUSTED_PROXIES": "127.0.0.1"}
_HIDDEN = r'<input type="hidden" name="{}" value="([^"]*)"'
_SLOT = re.compile(r'name="slot" value="([^"]+)"')
_HELD = re.compile(r"/book/hold/[^/?#\s]+$")


def seed(ctx: Context) -> None:
    """Three technicians working every day and the service customers book on the page."""
    for login in TECHNICIANS:
        user = directory.add_user(ctx, login, name=login.replace("-", " ").title(),
                                  email=f"{login}@bench.test", role=Role.TECHNICIAN,
                                  timezone="Europe/Berlin", skills=["loadmix-screw"])
        capacity.set_working_hours(ctx, user, EVERY_DAY)
    capacity.add_service_type(ctx, SERVICE, "Compressor repair", duration_minutes=30,
                              skills=["loadmix-screw"], min_notice_minutes=60, horizon_days=60)


def _hidden(page: str, name: str) -> str:
    found = re.search(_HIDDEN.format(name), page)
    return html.unescape(found.group(1)) if found else ""


def journey(client: httpx.Client, base: str, number: int, rng: random.Random) -> bool:
    """True when the customer ends on the confirmation page."""
    own = {"X-Forwarded-For": f"10.{number >> 16 & 255}.{number >> 8 & 255}.{number & 255}"}
    form = {"problem": "Trips after ten minutes under load.", "make": "Kaeser", "model": "SK 22",
            "address": "Hauptstraße 1\n10115 Berlin", "name": f"Page Customer {number}",
            "email": f"page{number}@bench.test", "phone": f"+49 30 8{number:07d}",
            "timezone": "Europe/Berlin"}
    picker = client.post(f"{base}/book/{SERVICE}/details", data=form, headers=own)
    slots = _SLOT.findall(picker.text)
    if picker.status_code != 200 or not slots:
        return False
    hold = client.post(f"{base}/book/{SERVICE}/hold", headers=own, data={
        "details": _hidden(picker.text, "details"), "key": _hidden(picker.text, "key"),
        "slot": html.unescape(rng.choice(slots))})
    location = hold.headers.get("Location", "")
    if hold.status_code != 303 or not _HELD.search(location):
        return hold.status_code == 409  # the time was just taken: the page offers others
    held_url = location if location.startswith("http") else base + location
    held = client.get(held_url, headers=own)
    if held.status_code != 200:
        return False
    confirmed = client.post(held_url + "/confirm", headers=own,
                            data={"csrf": _hidden(held.text, "csrf")})
    return confirmed.status_code == 303 and "/book/confirmed/" in confirmed.headers.get("Location", "")
