"""iCloud (or any CalDAV server): visits written as calendar objects into an external
calendar with an app-specific password over HTTP Basic. Each visit is one resource named
after our UID (`<uid>.ics`), so a retry after a lost answer overwrites the same object
instead of adding another; updates carry `If-Match` with the ETag we last saw.

Settings: `calendar_url` (the calendar collection, e.g.
https://pXX-caldav.icloud.com/<id>/calendars/<calendar>/), `username` (the Apple ID).
Secrets: `app_password`. Push-only: CalDAV offers no push notifications to a server.
"""

from __future__ import annotations

import base64
import datetime as dt
from urllib.parse import quote

import icalendar

from plugins.platforms.http import HttpConnector
from server.platforms import Op, Remote, Visit

PRODID = "-//fieldcal//visits//EN"
SEPARATOR = " "  # between the resource name and its ETag in the remote id we keep


def calendar_object(visit: Visit) -> bytes:
    """One VEVENT in UTC (no VTIMEZONE needed), our UID, SEQUENCE and STATUS."""
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    event = icalendar.Event()
    event.add("uid", visit.uid)
    event.add("dtstamp", dt.datetime.now(dt.UTC).replace(microsecond=0))
    event.add("dtstart", visit.starts_at.astimezone(dt.UTC))
    event.add("dtend", visit.ends_at.astimezone(dt.UTC))
    event.add("sequence", visit.sequence)
    event.add("summary", visit.title)
    event.add("location", visit.location)
    event.add("description", "\n\n".join(p for p in (visit.note, visit.description) if p))
    event.add("status", "TENTATIVE" if visit.status == "tentative" else "CONFIRMED")
    calendar.add_component(event)
    return calendar.to_ical()


class ICloud(HttpConnector):
    name = "icloud"
    default_base_url = "https://caldav.icloud.com"
    required_settings = frozenset({"calendar_url", "username"})
    secret_names = frozenset({"app_password"})

    def auth_headers(self) -> dict[str, str]:
        pair = f"{self.config.setting('username')}:{self.config.secret('app_password')}".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}

    def href(self, uid: str) -> str:
        return self.config.setting("calendar_url").rstrip("/") + "/" + quote(f"{uid}.ics", safe="@")

    def push(self, op: Op, visit: Visit, remote_id: str | None) -> Remote | None:
        _name, _, etag = (remote_id or "").partition(SEPARATOR)
        href = self.href(visit.uid)
        if op == Op.CANCEL:
            headers = {**self.auth_headers(), **({"If-Match": etag} if etag else {})}
            response = self.client.request("DELETE", href, headers=headers)
            if response.status_code not in (404, 412):  # gone already, or changed there: leave it
                self.check_response("DELETE", href, response)
            return Remote(remote_id or visit.uid)
        headers = {"Content-Type": "text/calendar; charset=utf-8"}
        if op == Op.UPDATE and etag:
            headers["If-Match"] = etag
        elif op == Op.CREATE:
            headers["If-None-Match"] = "*"
        response = self.client.request(
            "PUT", href, content=calendar_object(visit), headers={**self.auth_headers(), **headers}
        )
        if response.status_code == 412:  # created by a try whose answer was lost, or edited there
            response = self.client.request(
                "PUT",
                href,
                content=calendar_object(visit),
                headers={**self.auth_headers(), "Content-Type": headers["Content-Type"]},
            )
        self.check_response("PUT", href, response)
        return Remote(f"{visit.uid}.ics{SEPARATOR}{response.headers.get('etag', '')}")

    def check(self) -> str:
        self.request("PROPFIND", self.config.setting("calendar_url"), headers={"Depth": "0"})
        return "icloud: calendar reachable"
