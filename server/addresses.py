"""Postcodes and countries read from addresses as people type them (no network lookups).

Understood at least: German and French ("Alexanderplatz 1, 10178 Berlin",
"5 Rue de Rivoli, 75001 Paris"), US ("350 5th Ave, New York, NY 10118") and UK
("10 Downing St, London SW1A 2AA") addresses, each optionally ending in a country name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from server.errors import InvalidInput

COUNTRIES = ("DE", "FR", "GB", "US")
COUNTRY_NAMES = {
    "DE": ("germany", "deutschland", "de", "d", "ger"),
    "FR": ("france", "fr", "f"),
    "GB": ("united kingdom", "uk", "u.k.", "gb", "great britain", "england", "scotland", "wales",
           "northern ireland"),
    "US": ("usa", "u.s.a.", "us", "u.s.", "united states", "united states of america"),
}
COUNTRY_OF_ZONE = {
    "Europe/Berlin": "DE", "Europe/Busingen": "DE", "Europe/Paris": "FR", "Europe/London": "GB",
    "Europe/Belfast": "GB",
}
US_ZONE_PREFIXES = ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
                    "America/Phoenix", "America/Anchorage", "America/Detroit", "America/Boise",
                    "America/Indiana/", "America/Kentucky/", "America/North_Dakota/",
                    "Pacific/Honolulu", "US/")
US_STATES = frozenset(
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ "
    "NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY PR GU VI".split())
FRENCH_HINTS = re.compile(
    r"\b(rue|avenue|av\.|boulevard|bd|place|allée|allee|chemin|quai|impasse|cedex|paris|lyon|"
    r"marseille|toulouse|bordeaux|lille|nantes|strasbourg)\b", re.IGNORECASE)
GERMAN_HINTS = re.compile(
    r"(straße|strasse|str\.|weg\b|platz\b|allee\b|damm\b|ring\b|gasse\b|ufer\b|chaussee\b|"
    r"\bberlin\b|\bhamburg\b|\bmünchen\b|\bköln\b|\bpotsdam\b|\bfrankfurt\b)", re.IGNORECASE)
UK_POSTCODE = re.compile(r"\b([A-Z]{1,2}\d[A-Z\d]?)\s*(\d[A-Z]{2})\b", re.IGNORECASE)
US_ZIP = re.compile(r"\b([A-Z]{2})\.?\s+(\d{5})(?:-\d{4})?\b")
CONTINENTAL = re.compile(r"(?:\b(?:D|F|DE|FR)-)?\b(\d{5})\s+\w", re.UNICODE)
POSTCODE = re.compile(r"^[A-Z0-9][A-Z0-9 -]{1,11}$")
BARE_ZIP = re.compile(r"\b(\d{5})(?:-\d{4})?\b")


@dataclass(frozen=True)
class PostalArea:
    """Where an address is: a normalised postcode and an ISO 3166 country code ("" if unknown)."""

    postcode: str
    country: str

    @property
    def known(self) -> bool:
        return bool(self.postcode and self.country)


UNKNOWN = PostalArea("", "")


def country_of_zone(zone: str | None) -> str:
    """The country a time zone most likely means ("" if it does not say)."""
    if not zone:
        return ""
    if zone in COUNTRY_OF_ZONE:
        return COUNTRY_OF_ZONE[zone]
    return "US" if zone.startswith(US_ZONE_PREFIXES) else ""


def normalise_country(value: str) -> str:
    """An ISO code from "de", "Germany", "UK" ...; "" if it is none of the countries known here."""
    text = value.strip().lower()
    for code, names in COUNTRY_NAMES.items():
        if text == code.lower() or text in names:
            return code
    if re.fullmatch(r"[a-z]{2}", text):
        return text.upper()
    return ""


def normalise_postcode(postcode: str, country: str) -> str:
    """Upper case, single spaces; UK postcodes as "SW1A 2AA"."""
    text = " ".join(postcode.upper().split())
    if country == "GB":
        compact = text.replace(" ", "")
        if len(compact) > 3 and UK_POSTCODE.fullmatch(compact):
            return f"{compact[:-3]} {compact[-3:]}"
        return text
    return text.replace(" ", "")


def _trailing_country(parts: list[str]) -> str:
    if not parts:
        return ""
    last = parts[-1].strip().rstrip(".").lower()
    for code, names in COUNTRY_NAMES.items():
        if last in names or (last == code.lower()):
            if len(last) <= 2 and len(parts) < 2:
                return ""
            parts.pop()
            return code
    return ""


def parse_address(text: str, default_country: str = "") -> PostalArea:
    """The postcode and country of an address, or `UNKNOWN` when it names no postcode.

    `default_country` breaks ties the text leaves open (a five-digit code before a
    town is German or French); pass the customer's country, e.g. `country_of_zone(zone)`.
    """
    parts = [p.strip() for p in re.split(r"[,\n;]+", text or "") if p.strip()]
    named = _trailing_country(parts)
    body = ", ".join(parts)
    if not body:
        return UNKNOWN
    if named in ("", "GB"):
        uk = list(UK_POSTCODE.finditer(body))
        if uk and (named == "GB" or not BARE_ZIP.search(body)):
            match = uk[-1]
            return PostalArea(normalise_postcode(match.group(1) + match.group(2), "GB"), "GB")
    if named in ("", "US"):
        for match in reversed(list(US_ZIP.finditer(body))):
            if match.group(1).upper() in US_STATES:
                return PostalArea(match.group(2), "US")
        if named == "US":
            bare = BARE_ZIP.findall(body)
            return PostalArea(bare[-1], "US") if bare else PostalArea("", "US")
    continental = CONTINENTAL.findall(body)
    if continental:
        postcode = continental[-1]
        if named:
            return PostalArea(postcode, named)
        french, german = bool(FRENCH_HINTS.search(body)), bool(GERMAN_HINTS.search(body))
        if french != german:
            return PostalArea(postcode, "FR" if french else "DE")
        if default_country in ("DE", "FR"):
            return PostalArea(postcode, default_country)
        return PostalArea(postcode, "DE")
    bare = BARE_ZIP.findall(body)
    if bare and (named or default_country):
        return PostalArea(bare[-1], named or default_country)
    return PostalArea("", named) if named else UNKNOWN


@dataclass(frozen=True)
class Location:
    """A site's place: postcode and country (parsed or given) and optional coordinates."""

    postcode: str
    country: str
    latitude: float | None = None
    longitude: float | None = None


def check_coordinates(latitude: float | None, longitude: float | None) -> None:
    if (latitude is None) != (longitude is None):
        raise InvalidInput("Give both latitude and longitude, or neither.")
    if latitude is None or longitude is None:
        return
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise InvalidInput(f"{latitude},{longitude} is not a latitude,longitude pair "
                           "(e.g. 52.5219,13.4132).")


def locate(address: str, timezone: str = "", *, country: str = "", postcode: str = "",
           latitude: float | None = None, longitude: float | None = None) -> Location:
    """Where an address is: what the person gave explicitly wins over what the text says."""
    code = normalise_country(country) if country else ""
    if country and not code:
        raise InvalidInput(f"Country {country!r} is not an ISO code like DE, FR, GB or US.")
    check_coordinates(latitude, longitude)
    parsed = parse_address(address, code or country_of_zone(timezone))
    chosen_country = code or parsed.country
    if postcode:
        chosen_postcode = normalise_postcode(postcode, chosen_country)
        if not POSTCODE.match(chosen_postcode):
            raise InvalidInput(f"Postcode {postcode!r} must be letters, digits and spaces.")
    else:
        chosen_postcode = parsed.postcode
    return Location(chosen_postcode, chosen_country, latitude, longitude)
