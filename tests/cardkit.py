"""CardDAV helpers: a strict vCard check, CardDAV REPORT bodies and answers, and vdirsyncer's
CardDAV storage driven from Python."""

from __future__ import annotations

import asyncio
import re
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import vobject
from live import LiveServer
from seeding import Account
from vdirsyncer.storage.dav import CardDAVStorage

CRLF = "\r\n"
DAV_NS = "{DAV:}"
CARD_NS = "{urn:ietf:params:xml:ns:carddav}"
CONTENT_LINE = re.compile(
    r'^(?:[A-Za-z0-9-]+\.)?[A-Za-z0-9-]+'  # [group.]name
    r'(?:;[A-Za-z0-9-]+=(?:"[^"\x00-\x1f]*"|[^";:,\x00-\x1f]*)(?:,(?:"[^"]*"|[^";:,\x00-\x1f]*))*)*'
    r':[^\x00-\x08\x0a-\x1f\x7f]*$'
)
T = TypeVar("T")


# --------------------------------------------------------------------------- strict vCard


def unfolded(text: str) -> list[str]:
    return text.replace(CRLF + " ", "").replace(CRLF + "\t", "").split(CRLF)[:-1]


def check_vcard(text: str, version: str) -> vobject.base.Component:
    """One vCard as RFC 6350 (4.0) / RFC 2426 (3.0) and RFC 6352 require it, or AssertionError;
    then parsed by vobject with validation. Returns the parsed card."""
    assert text.endswith(CRLF), "a vCard ends with CRLF"
    assert "\n" not in text.replace(CRLF, ""), "every line ends with CRLF (no bare LF)"
    assert "\r" not in text.replace(CRLF, ""), "every line ends with CRLF (no bare CR)"
    for physical in text.split(CRLF)[:-1]:
        assert len(physical.encode("utf-8")) <= 75, f"not folded at 75 octets: {physical!r}"
        assert physical, "no empty lines inside a vCard"
    lines = unfolded(text)
    assert lines[0] == "BEGIN:VCARD" and lines[-1] == "END:VCARD", lines
    assert lines[1] == f"VERSION:{version}", f"VERSION:{version} right after BEGIN: {lines[:3]}"
    names = [re.split("[;:]", line, maxsplit=1)[0].upper() for line in lines]
    for line in lines:
        assert CONTENT_LINE.match(line), f"not a content line: {line!r}"
    assert names.count("VERSION") == 1
    assert names.count("FN") >= 1, "FN is required"
    assert names.count("UID") == 1, "UID is required by CardDAV (RFC 6352 §5.1) and unique"
    assert names.count("BEGIN") == names.count("END") == 1, "one card, no nesting"
    if version == "3.0":
        assert names.count("N") == 1, "N is required in vCard 3.0"
        assert "KIND" not in names
        assert not any(line.startswith("TEL") and ":tel:" in line for line in lines), lines
        assert not any("VALUE=uri" in line for line in lines), lines
    card = vobject.readOne(text, validate=True)
    assert card.name == "VCARD"
    assert card.version.value == version
    return card


def content_lines(card: vobject.base.Component, name: str) -> list[vobject.base.ContentLine]:
    """The card's `name` lines (none when it has none)."""
    found = []
    for line in card.contents.get(name.lower(), []):
        assert isinstance(line, vobject.base.ContentLine), line
        found.append(line)
    return found


def values(card: vobject.base.Component, name: str) -> list[Any]:
    return [line.value for line in content_lines(card, name)]


# --------------------------------------------------------------------------- REPORT bodies


def multiget(hrefs: list[str], version: str | None) -> str:
    attributes = "" if version is None else f' content-type="text/vcard" version="{version}"'
    refs = "".join(f"<D:href>{urllib.parse.quote(h)}</D:href>" for h in hrefs)
    return ('<?xml version="1.0" encoding="utf-8"?>'
            '<C:addressbook-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav">'
            f"<D:prop><D:getetag/><C:address-data{attributes}/></D:prop>{refs}"
            "</C:addressbook-multiget>")


def query(text: str, version: str | None, prop: str = "FN") -> str:
    attributes = "" if version is None else f' content-type="text/vcard" version="{version}"'
    return ('<?xml version="1.0" encoding="utf-8"?>'
            '<C:addressbook-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav">'
            f"<D:prop><D:getetag/><C:address-data{attributes}/></D:prop>"
            f'<C:filter><C:prop-filter name="{prop}">'
            f'<C:text-match collation="i;unicode-casemap" match-type="contains">{text}'
            "</C:text-match></C:prop-filter></C:filter></C:addressbook-query>")


def card_sync(token: str = "", *, data: bool = False) -> str:
    extra = "<C:address-data/>" if data else ""
    return ('<?xml version="1.0" encoding="utf-8"?>'
            '<D:sync-collection xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav">'
            f"<D:sync-token>{token}</D:sync-token><D:sync-level>1</D:sync-level>"
            f"<D:prop><D:getetag/>{extra}</D:prop></D:sync-collection>")


@dataclass(frozen=True)
class CardResponse:
    href: str
    status: int
    etag: str
    data: str


def card_responses(body: bytes) -> dict[str, CardResponse]:
    """href (unquoted) -> the response, from a 207 multistatus."""
    found: dict[str, CardResponse] = {}
    for response in ET.fromstring(body).iter(f"{DAV_NS}response"):
        href = urllib.parse.unquote(response.findtext(f"{DAV_NS}href", default=""))
        status_text = response.findtext(f"{DAV_NS}status") or ""
        etag = data = ""
        for propstat in response.iter(f"{DAV_NS}propstat"):
            if " 200 " in (propstat.findtext(f"{DAV_NS}status") or ""):
                etag = propstat.findtext(f".//{DAV_NS}getetag") or etag
                data = propstat.findtext(f".//{CARD_NS}address-data") or data
                status_text = status_text or "HTTP/1.1 200 OK"
        found[href] = CardResponse(href, int(status_text.split()[1]) if status_text else 0,
                                   etag, data.replace("\r\n", "\n").replace("\n", CRLF))
    return found


# --------------------------------------------------------------------------- vdirsyncer


def run(make: Callable[[aiohttp.TCPConnector], Awaitable[T]]) -> T:
    """Run one vdirsyncer coroutine with a connector of its own."""
    async def main() -> T:
        connector = aiohttp.TCPConnector(limit_per_host=4)
        try:
            return await make(connector)
        finally:
            await connector.close()
    return asyncio.run(main())


def storage(live: LiveServer, account: Account, connector: aiohttp.TCPConnector, *,
            url: str | None = None, vcard4: bool = False) -> CardDAVStorage:
    return CardDAVStorage(url=url or live.url(f"/dav/{account.login}/customers/"),
                          username=account.login, password=account.password,
                          connector=connector, use_vcard_4=vcard4)


def discovered(live: LiveServer, account: Account) -> list[dict[str, Any]]:
    async def go(connector: aiohttp.TCPConnector) -> list[dict[str, Any]]:
        return [found async for found in CardDAVStorage.discover(
            url=live.dav, username=account.login, password=account.password,
            connector=connector)]
    return run(go)


def listing(live: LiveServer, account: Account) -> dict[str, str]:
    """href -> etag, as vdirsyncer lists the book."""
    async def go(connector: aiohttp.TCPConnector) -> dict[str, str]:
        return {href: etag async for href, etag in storage(live, account, connector).list()}
    return run(go)


def fetched(live: LiveServer, account: Account, hrefs: list[str], *, vcard4: bool = False
            ) -> dict[str, tuple[str, str]]:
    """href -> (card text, etag), through vdirsyncer's addressbook-multiget."""
    async def go(connector: aiohttp.TCPConnector) -> dict[str, tuple[str, str]]:
        store = storage(live, account, connector, vcard4=vcard4)
        return {href: (item.raw, etag)
                async for href, item, etag in store.get_multi(hrefs)}
    return run(go)
