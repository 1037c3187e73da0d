"""Time zones a customer picks from: current IANA names only, common ones first, and guesses.

The list is the zones of the tz database's zone.tab (one canonical name per
zone, no legacy links such as US/Eastern or Asia/Calcutta) plus UTC. A zone is
guessed from what the browser reports (a legacy name is mapped to its current
one) or, without JavaScript, from the country at the end of the site's address
(US addresses by their state code); otherwise the business's zone is used.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import lru_cache
from importlib.resources import files
from zoneinfo import ZoneInfo

COMMON = (
    "Europe/London", "Europe/Dublin", "Europe/Lisbon", "Europe/Paris", "Europe/Brussels",
    "Europe/Amsterdam", "Europe/Berlin", "Europe/Zurich", "Europe/Vienna", "Europe/Rome",
    "Europe/Madrid", "Europe/Warsaw", "Europe/Stockholm", "Europe/Helsinki", "Europe/Athens",
    "America/New_York", "America/Chicago", "America/Denver", "America/Phoenix",
    "America/Los_Angeles", "America/Anchorage", "Pacific/Honolulu", "America/Toronto",
    "America/Vancouver", "America/Mexico_City", "America/Sao_Paulo", "Asia/Dubai",
    "Asia/Kolkata", "Asia/Singapore", "Asia/Tokyo", "Australia/Sydney", "Pacific/Auckland", "UTC",
)
COUNTRY_ALIASES = {
    "usa": "US", "u.s.a.": "US", "u.s.": "US", "us": "US", "united states of america": "US",
    "uk": "GB", "u.k.": "GB", "united kingdom": "GB", "great britain": "GB", "england": "GB",
    "scotland": "GB", "wales": "GB", "northern ireland": "GB",
    "deutschland": "DE", "österreich": "AT", "osterreich": "AT", "schweiz": "CH", "suisse": "CH",
    "svizzera": "CH", "nederland": "NL", "the netherlands": "NL", "holland": "NL",
    "belgique": "BE", "belgië": "BE", "españa": "ES", "italia": "IT", "polska": "PL",
    "danmark": "DK", "sverige": "SE", "norge": "NO", "suomi": "FI", "česko": "CZ",
    "czech republic": "CZ", "luxembourg": "LU", "éire": "IE",
}
US_STATES = {
    "America/New_York": "CT DE DC FL GA IN KY MA MD ME MI NC NH NJ NY OH PA RI SC VA VT WV",
    "America/Chicago": "AL AR IA IL KS LA MN MO MS ND NE OK SD TN TX WI",
    "America/Denver": "CO ID MT NM UT WY",
    "America/Phoenix": "AZ",
    "America/Los_Angeles": "CA NV OR WA",
    "America/Anchorage": "AK",
    "Pacific/Honolulu": "HI",
}
US_STATE_AND_ZIP = re.compile(r"\b([A-Z]{2})\s+\d{5}(?:-\d{4})?\b")


def _tzdata(name: str) -> str:
    return (files("tzdata.zoneinfo") / name).read_text(encoding="utf-8")


def _rows(name: str) -> list[list[str]]:
    return [line.split("\t") for line in _tzdata(name).splitlines()
            if line and not line.startswith("#")]


@lru_cache(maxsize=1)
def zone_choices() -> tuple[str, ...]:
    """UTC and every current zone name, sorted."""
    return ("UTC", *sorted({row[2] for row in _rows("zone.tab")}))


@lru_cache(maxsize=1)
def _links() -> dict[str, str]:
    """Legacy name -> current name, from the tz database's link lines."""
    found = {}
    for line in _tzdata("tzdata.zi").splitlines():
        if line.startswith("L "):
            _, target, name = line.split()
            found[name] = target
    return found


def canonical(name: str) -> str | None:
    """The current zone name for a name a browser reports (current or legacy), or None."""
    choices = set(zone_choices())
    name = name.strip()
    for _ in range(3):  # links may point at links
        if name in choices:
            return name
        name = _links().get(name, "")
    return None


def grouped(business_zone: str) -> list[tuple[str, list[str]]]:
    """(group label, zones): the business's zone and common zones first, then all of them."""
    choices = zone_choices()
    common = [z for z in dict.fromkeys((business_zone, *COMMON)) if z in choices]
    return [("Common time zones", common), ("All time zones", list(choices))]


def zone_label(name: str) -> str:
    return name.replace("_", " ")


@lru_cache(maxsize=1)
def _countries() -> dict[str, str]:
    """Country name (lower case) -> ISO code, from the tz database's iso3166.tab and aliases."""
    names = {row[1].strip().lower(): row[0] for row in _rows("iso3166.tab")}
    names.update({code.lower(): code for code in names.values() if code != "US"})
    names.update(COUNTRY_ALIASES)
    return names


@lru_cache(maxsize=1)
def _zones_by_country() -> dict[str, list[str]]:
    zones: dict[str, list[str]] = {}
    for row in _rows("zone.tab"):
        zones.setdefault(row[0], []).append(row[2])
    return zones


def from_address(address: str) -> str | None:
    """A zone for an address whose last line or part names a country with one clock time, or
    a US state with its ZIP code; None when the address does not tell."""
    text = address.strip()
    if not text:
        return None
    state = US_STATE_AND_ZIP.findall(text)
    if state:
        for zone, codes in US_STATES.items():
            if state[-1] in codes.split():
                return zone
    last = re.split(r"[,\n]", text)[-1].strip().strip(".").lower()
    code = _countries().get(last)
    if code is None:
        return None
    zones = _zones_by_country().get(code, [])
    return zones[0] if zones and _same_clock(zones) else None


def _same_clock(zones: list[str]) -> bool:
    """Whether the zones keep the same time all year (e.g. Europe/Berlin and Europe/Busingen)."""
    probes = [dt.datetime(dt.date.today().year, month, 15, 12, tzinfo=dt.UTC) for month in (1, 7)]
    return len({tuple(p.astimezone(ZoneInfo(z)).utcoffset() for p in probes) for z in zones}) == 1
