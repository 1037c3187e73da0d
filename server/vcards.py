"""vCards of customers: built as vCard 4.0 (RFC 6350), given as 3.0 (RFC 2426) on request.

A card carries what a technician on the road needs in the phone's contacts: the
customer's name (FN, N, ORG), phone (TEL), email, every site as an ADR, and the
equipment at the sites as the NOTE. The text is CRLF-terminated, folded at 75
octets, and depends only on the rows it is made from, so its ETag changes exactly
when they do. The 4.0 text is stored; the 3.0 text is derived from it line by line
(the only lines that differ are the ones this module writes differently).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass

from server.contentlines import CRLF, fold
from server.contentlines import escape_text as escape

PRODID = "-//fieldcal//fieldcal customers//EN"
VERSIONS = ("4.0", "3.0")
DEFAULT_VERSION = "4.0"
UID_NAMESPACE = uuid.UUID("6f3d1d62-3c1e-5b7e-9a53-0f1e1dca1a01")
CARD_HREF = re.compile(r"^customer-(\d+)\.vcf$")
TEL_URI = "VALUE=uri"


@dataclass(frozen=True)
class CardSite:
    address: str
    postcode: str
    country: str
    compressor_make: str
    compressor_model: str
    compressor_serial: str

    @property
    def equipment(self) -> str:
        """'Kaeser SK 22 (serial KS-0042)', or '' when nothing is on record."""
        named = " ".join(p for p in (self.compressor_make, self.compressor_model) if p)
        if self.compressor_serial:
            named = f"{named} (serial {self.compressor_serial})".strip()
        return named


@dataclass(frozen=True)
class CardData:
    customer_id: int
    created_at: dt.datetime
    name: str
    email: str
    phone: str
    sites: tuple[CardSite, ...]


def href_of(customer_id: int) -> str:
    return f"customer-{customer_id}.vcf"


def customer_of(href: str) -> int | None:
    """The customer id a card href names, if it is one."""
    found = CARD_HREF.match(href)
    return int(found.group(1)) if found else None


def uid_of(customer_id: int, created_at: dt.datetime) -> str:
    """Stable for the customer's life; two installations' customers with one id still differ."""
    stamp = created_at.replace(tzinfo=None).isoformat(timespec="microseconds")
    return f"urn:uuid:{uuid.uuid5(UID_NAMESPACE, f'customer/{customer_id}/{stamp}')}"


def unfold(text: str) -> list[str]:
    return text.replace(CRLF + " ", "").replace(CRLF + "\t", "").split(CRLF)


def tel_uri(phone: str) -> str | None:
    """A `tel:` URI (RFC 3966 global number) for a phone number, when it is one."""
    digits = re.sub(r"[\s().\-/]", "", phone)
    if re.fullmatch(r"\+\d{4,20}", digits):
        return f"tel:{digits}"
    return None


def _equipment_note(sites: tuple[CardSite, ...]) -> str:
    lines = []
    for site in sites:
        if site.equipment:
            where = site.address.splitlines()[0] if site.address else "site"
            lines.append(f"{where}: {site.equipment}")
    if not lines:
        return "Equipment: none on record."
    return "Equipment:\n" + "\n".join(lines)


def render(card: CardData) -> str:
    """The customer's vCard 4.0."""
    lines = [
        "BEGIN:VCARD",
        "VERSION:4.0",
        f"PRODID:{PRODID}",
        f"UID:{uid_of(card.customer_id, card.created_at)}",
        f"FN:{escape(card.name)}",
        f"N:{escape(card.name)};;;;",
        f"ORG:{escape(card.name)}",
    ]
    if card.phone:
        uri = tel_uri(card.phone)
        if uri is not None:
            lines.append(f"TEL;{TEL_URI};TYPE=work,voice:{uri}")
        else:
            lines.append(f"TEL;TYPE=work,voice:{escape(card.phone)}")
    if card.email:
        lines.append(f"EMAIL;TYPE=work:{escape(card.email)}")
    for site in card.sites:
        lines.append("ADR;TYPE=work:;;" + ";".join(
            (escape(site.address), "", "", escape(site.postcode), escape(site.country))))
    lines.append(f"NOTE:{escape(_equipment_note(card.sites))}")
    lines.append("END:VCARD")
    return CRLF.join(fold(line) for line in lines) + CRLF


def _as_vcard3(line: str) -> str:
    name, _, value = line.partition(":")
    if line == "VERSION:4.0":
        return "VERSION:3.0"
    if name.startswith("TEL;"):
        params = [p for p in name.split(";")[1:] if p != TEL_URI]
        params = [p.upper() if p.startswith("TYPE=") else p for p in params]
        if value.startswith("tel:"):
            value = value[len("tel:"):]
        return ";".join(["TEL", *params]) + ":" + value
    if name.startswith(("EMAIL;", "ADR;")):
        head, *params = name.split(";")
        if head == "EMAIL":
            params.append("TYPE=INTERNET")
        return ";".join([head, *(p.upper() for p in params)]) + ":" + value
    return line


def as_version(text: str, version: str) -> str:
    """A card of this module (4.0) in `version`: 4.0 as it is, 3.0 converted."""
    if version == "4.0":
        return text
    if version != "3.0":
        raise ValueError(f"vCard version {version!r} is not served; ask for 4.0 or 3.0")
    lines = [line for line in unfold(text) if line]
    return CRLF.join(fold(_as_vcard3(line)) for line in lines) + CRLF
