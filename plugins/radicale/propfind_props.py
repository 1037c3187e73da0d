"""The properties a calendar listing's items are asked for, rendered as Radicale renders them.

`wanted_props` reads a PROPFIND body and accepts only a plain `<prop>` list of
properties from `ITEM_PROPS` (what CalDAV clients ask for when they list a
calendar: tests/data/propfind/); anything else (allprop, propname, an unknown
or repeated property, a malformed body) is None, and Radicale answers.

`ItemTemplate` renders one item's `<response>` for such a list exactly as
Radicale's `xml_propfind_response` does for an item of a calendar collection
without sharing or free/busy-only access: the same elements, texts and
statuses, properties in request order, the propstat of the first property's
status first. The prefixes are those the multistatus root declared.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote
from xml.etree import ElementTree as ET

import defusedxml.ElementTree as DefusedET  # type: ignore[import-untyped]  # no stubs shipped
from radicale import xmlutils

CLARK = xmlutils.make_clark
PROPFIND = CLARK("D:propfind")
PROP = CLARK("D:prop")
HREF = CLARK("D:href")

# Item properties whose values the item gives (and resourcetype, empty for items).
ETAG, LAST_MODIFIED, CONTENT_TYPE, CONTENT_LENGTH, RESOURCE_TYPE = (
    CLARK("D:getetag"), CLARK("D:getlastmodified"), CLARK("D:getcontenttype"),
    CLARK("D:getcontentlength"), CLARK("D:resourcetype"))
# Item properties whose values depend on the request, not on the item.
CURRENT_USER_PRINCIPAL, PRIVILEGES, REPORTS, OWNER, PRINCIPAL_COLLECTIONS, MAX_SIZE = (
    CLARK("D:current-user-principal"), CLARK("D:current-user-privilege-set"),
    CLARK("D:supported-report-set"), CLARK("D:owner"), CLARK("D:principal-collection-set"),
    CLARK("C:max-resource-size"))
# Collection properties a listing also asks for: an item has none of them (404).
NOT_OF_ITEMS = frozenset(CLARK(tag) for tag in (
    "D:displayname", "D:sync-token", "D:creationdate", "D:quota-available-bytes",
    "D:quota-used-bytes", "D:principal-URL", "D:add-member", "CS:getctag", "C:schedule-tag",
    "C:calendar-description", "C:calendar-timezone", "C:supported-calendar-component-set",
    "C:calendar-home-set", "C:calendar-user-address-set", "C:supported-calendar-data",
    "C:max-instances", "C:max-attendees-per-instance", "C:schedule-calendar-transp",
    "ICAL:calendar-color", "ICAL:calendar-order", "CS:source",
))
ITEM_PROPS = frozenset({
    ETAG, LAST_MODIFIED, CONTENT_TYPE, CONTENT_LENGTH, RESOURCE_TYPE, CURRENT_USER_PRINCIPAL,
    PRIVILEGES, REPORTS, OWNER, PRINCIPAL_COLLECTIONS, MAX_SIZE,
}) | NOT_OF_ITEMS
ITEM_REPORTS = ("D:expand-property", "D:principal-search-property-set",
                "D:principal-property-search")
CALENDAR_MIMETYPE = xmlutils.OBJECT_MIMETYPES["VCALENDAR"]
XMLNS = re.compile(r'\sxmlns(?::([A-Za-z0-9_.-]+))?="([^"]*)"')


def wanted_props(body: bytes) -> tuple[tuple[str, ...], ET.Element] | None:
    """The properties of a plain `<propfind><prop>...</prop></propfind>` body, if all known,
    and the parsed body."""
    if not body.strip():
        return None  # an empty body is allprop
    try:
        root = DefusedET.fromstring(body)
    except (ET.ParseError, ValueError):
        return None  # Radicale answers 400, or refuses the entities
    if root.tag != PROPFIND or len(root) != 1 or root[0].tag != PROP:
        return None
    props = tuple(element.tag for element in root[0])
    if not props or len(set(props)) != len(props) or not ITEM_PROPS.issuperset(props):
        return None
    return props, root


def declared_prefixes(document: bytes) -> dict[str, str]:
    """namespace -> prefix ("" for the default) as declared on the root of `document`."""
    head = document[:document.index(b">", document.index(b"<", document.index(b"?>") + 2))]
    return {uri: prefix or "" for prefix, uri in XMLNS.findall(head.decode("utf-8"))}


def escape(text: str) -> str:
    """ElementTree's escaping of element text."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


def _literal(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


@dataclass(frozen=True)
class Request:
    """What an item's response depends on besides the item."""

    base_prefix: str
    collection_path: str
    user: str
    write: bool
    raw_permissions: str
    encoding: str
    max_resource_size: int


class UnknownPrefix(LookupError):
    """A namespace the multistatus root does not declare (Radicale's tree would declare it)."""


class ItemTemplate:
    """One `<response>` per item of a calendar, from (href, etag, component, [modified, length])."""

    def __init__(self, props: Sequence[str], request: Request, prefixes: Mapping[str, str]) -> None:
        self._prefixes = prefixes
        self._request = request
        self.needs_modified = LAST_MODIFIED in props
        self.needs_length = CONTENT_LENGTH in props
        self.href_prefix = quote(f"{request.base_prefix}/{request.collection_path}/")
        groups: dict[int, list[str]] = {}
        for tag in props:
            status, rendered = self._render(tag)
            groups.setdefault(status, []).append(rendered)
        propstats = "".join(
            f"<{self._q(PROPSTAT)}><{self._q(PROP)}>{''.join(parts)}</{self._q(PROP)}>"
            f"<{self._q(STATUS)}>{_literal(xmlutils.make_response(status))}</{self._q(STATUS)}>"
            f"</{self._q(PROPSTAT)}>"
            for status, parts in groups.items())
        self._format = (f"<{self._q(RESPONSE)}><{self._q(HREF)}>{{href}}</{self._q(HREF)}>"
                        f"{propstats}</{self._q(RESPONSE)}>").format

    def _q(self, clark: str) -> str:
        namespace, _, local = clark[1:].partition("}")
        if namespace not in self._prefixes:
            raise UnknownPrefix(namespace)
        prefix = self._prefixes[namespace]
        return f"{prefix}:{local}" if prefix else local

    def _element(self, clark: str, inner: str) -> str:
        name = self._q(clark)
        return f"<{name}>{inner}</{name}>" if inner else f"<{name} />"

    def _href(self, path: str) -> str:
        return self._element(HREF, _literal(escape(xmlutils.make_href(self._request.base_prefix, path))))

    def _render(self, tag: str) -> tuple[int, str]:
        request = self._request
        fields = {ETAG: "{etag}", LAST_MODIFIED: "{modified}", CONTENT_TYPE: "{content_type}",
                  CONTENT_LENGTH: "{length}"}
        if tag in fields:
            return 200, self._element(tag, fields[tag])
        if tag == RESOURCE_TYPE:
            return 200, self._element(tag, "")
        if tag == CURRENT_USER_PRINCIPAL:
            return 200, self._element(tag, self._href(f"/{request.user}/"))
        if tag == PRINCIPAL_COLLECTIONS:
            return 200, self._element(tag, self._href("/"))
        if tag == OWNER:
            owner = request.collection_path.split("/", 1)[0]
            return 200, self._element(tag, self._href(f"/{owner}/") if owner else "")
        if tag == MAX_SIZE:
            return 200, self._element(tag, str(request.max_resource_size))
        if tag == PRIVILEGES:
            privileges = ["D:read"]
            if request.write:
                privileges += ["D:all", "D:write"]
                if "l" not in request.raw_permissions:
                    privileges.append("D:write-properties")
                privileges.append("D:write-content")
            return 200, self._element(tag, "".join(
                self._element(PRIVILEGE, self._element(CLARK(name), "")) for name in privileges))
        if tag == REPORTS:
            return 200, self._element(tag, "".join(
                self._element(SUPPORTED_REPORT, self._element(REPORT, self._element(CLARK(name), "")))
                for name in ITEM_REPORTS))
        return 404, self._element(tag, "")

    def render(self, href: str, etag: str, component: str, modified: str, length: str) -> bytes:
        """The response of one item (`modified` and `length` only when they were asked for)."""
        content_type = f"{CALENDAR_MIMETYPE};charset={self._request.encoding}"
        if component:
            content_type += f";component={component}"
        return self._format(
            href=escape(self.href_prefix + quote(href)), etag=escape(etag),
            modified=escape(modified), content_type=escape(content_type), length=length,
        ).encode("utf-8")

RESPONSE, PROPSTAT, STATUS = CLARK("D:response"), CLARK("D:propstat"), CLARK("D:status")
PRIVILEGE, SUPPORTED_REPORT, REPORT = (
    CLARK("D:privilege"), CLARK("D:supported-report"), CLARK("D:report"))
