"""`mailto:` addresses in a principal's calendar-user-address-set.

Radicale lists only the principal's URL there. iOS, macOS and Thunderbird match
an event's ATTENDEE (`mailto:<email>`) against this set to know the event is
the user's own invitation (and show Accept/Decline), so each person's email is
added beside the URL.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET  # our own multistatus answer, parsed back
from urllib.parse import unquote

from sqlalchemy import select

from plugins.radicale.state import reading
from server.db import Database
from server.models import User

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
ADDRESS_SET = f"{{{CALDAV}}}calendar-user-address-set"
HREF = f"{{{DAV}}}href"


def _login_of(href: str) -> str:
    segments = [s for s in unquote(href).split("/") if s]
    return segments[-1] if segments else ""


def with_mailto(body: bytes, database: Database) -> bytes:
    """The multistatus `body` with `mailto:` beside each principal URL in the address sets."""
    root = ET.fromstring(body)
    sets = [(element, _login_of(element.findtext(HREF) or ""))
            for element in root.iter(ADDRESS_SET) if element.find(HREF) is not None]
    logins = {login for _, login in sets if login}
    if not logins:
        return body
    with reading(database) as session:
        emails = {login: email for login, email in session.execute(
            select(User.login, User.email).where(User.login.in_(logins)))}
    changed = False
    for element, login in sets:
        email = emails.get(login)
        if email:
            ET.SubElement(element, HREF).text = f"mailto:{email}"
            changed = True
    if not changed:
        return body
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
