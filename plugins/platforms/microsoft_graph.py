"""Microsoft Graph (Outlook / Exchange): visits as events in the signed-in user's calendar
(`microsoft-graph`, /me/events) or in a shared calendar of a mailbox (`office365`,
/users/{id}/calendars/{id}/events, e.g. one calendar per team), and changes read back with
`calendarView/delta`.

Graph's `dateTimeTimeZone` is a local time without an offset plus a zone name: we send the
technician's local wall time and their IANA zone, and read back what Graph sends in its zone.
Our UID rides in a single-value extended property (and `transactionId` on create), so a retry
after a lost answer finds the event instead of creating another.

Settings: `base_url` (https://graph.microsoft.com/v1.0), `auth_url`/`token_url` (default: the
"common" tenant's endpoints); office365 also `user_id` and `calendar_id`. Secrets: `client_id`,
`client_secret` (then `connect`) or `access_token`/`refresh_token`; `client_state` for
change notifications.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
from typing import Any, ClassVar
from urllib.parse import quote
from zoneinfo import ZoneInfo

from plugins.platforms.http import HttpConnector
from server.platforms import (
    Inbound,
    InvalidSignature,
    Listed,
    OAuth,
    Op,
    Pulled,
    Rejected,
    Remote,
    RemoteChange,
    Reply,
    Visit,
)

UID_PROPERTY = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name FieldcalUid"
DELTA_WINDOW = (dt.timedelta(days=30), dt.timedelta(days=365))
LOGIN = "https://login.microsoftonline.com/common/oauth2/v2.0"


def wall_time(moment: dt.datetime, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).replace(tzinfo=None).isoformat(timespec="seconds")


def parse_when(value: dict[str, Any] | None) -> dt.datetime | None:
    if not value or not value.get("dateTime"):
        return None
    text = str(value["dateTime"])[:19]  # Graph adds 7 fractional digits
    zone = str(value.get("timeZone") or "UTC")
    try:
        tz = ZoneInfo(zone)
    except (KeyError, ValueError):
        tz = ZoneInfo("UTC")
    return dt.datetime.fromisoformat(text).replace(tzinfo=tz).astimezone(dt.UTC)


def typed(kind: str, **fields: Any) -> dict[str, Any]:
    return {"@odata.type": f"#microsoft.graph.{kind}", **fields}


class MicrosoftGraph(HttpConnector):
    name = "microsoft-graph"
    listing = True
    default_base_url = "https://graph.microsoft.com/v1.0"
    secret_names = frozenset({"client_id", "client_secret", "access_token", "refresh_token", "client_state"})
    oauth = OAuth(f"{LOGIN}/authorize", f"{LOGIN}/token", ("offline_access", "Calendars.ReadWrite"))
    calendar_path: ClassVar[str] = "/me"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.secret('access_token')}"}

    @property
    def owner(self) -> str:
        return self.calendar_path

    @property
    def events_path(self) -> str:
        return f"{self.owner}/events"

    def event(self, visit: Visit) -> dict[str, Any]:
        """The event; every object names its `@odata.type`, as the published contract requires."""
        body: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.event",
            "subject": visit.title,
            "body": typed("itemBody", contentType="text",
                          content="\n\n".join(p for p in (visit.note, visit.description) if p)),
            "start": typed("dateTimeTimeZone", dateTime=wall_time(visit.starts_at, visit.timezone),
                           timeZone=visit.timezone),
            "end": typed("dateTimeTimeZone", dateTime=wall_time(visit.ends_at, visit.timezone),
                         timeZone=visit.timezone),
            "location": typed("location", displayName=visit.location),
            "showAs": "tentative" if visit.status == "tentative" else "busy",
            "singleValueExtendedProperties": [typed("singleValueLegacyExtendedProperty", id=UID_PROPERTY,
                                                    value=visit.uid)],
        }
        if visit.technician_email:
            address = typed("emailAddress", address=visit.technician_email, name=visit.technician_name)
            body["attendees"] = [typed("attendee", type="required", emailAddress=address)]
        return body

    def push(self, op: Op, visit: Visit, remote_id: str | None) -> Remote | None:
        if op == Op.CREATE:
            created = self.request(
                "POST", self.events_path, json={**self.event(visit), "transactionId": visit.uid[:255]}
            ).json()
            return Remote(str(created["id"]))
        assert remote_id is not None
        path = f"{self.events_path}/{quote(remote_id, safe='')}"
        if op == Op.CANCEL:
            response = self.client.request("DELETE", path, headers=self.auth_headers())
            if response.status_code != 404:
                self.check_response("DELETE", path, response)
            return Remote(remote_id)
        updated = self.request("PATCH", path, json=self.event(visit)).json()
        return Remote(str(updated.get("id", remote_id)))

    def find(self, visit: Visit) -> str | None:
        uid = visit.uid.replace("'", "''")
        found = self.request(
            "GET",
            self.events_path,
            params={
                "$filter": "singleValueExtendedProperties/Any("
                f"ep: ep/id eq '{UID_PROPERTY}' and ep/value eq '{uid}')",
                "$select": "id",
            },
        )
        items = found.json().get("value", [])
        return str(items[0]["id"]) if items else None

    def list_objects(self, since: dt.datetime) -> list[Listed]:
        """The events carrying our UID property (`$filter` on it, `$select` bringing it back),
        every page, ending after `since`. Times are read in the zone Graph names."""
        params = {
            "$filter": "singleValueExtendedProperties/Any("
                       f"ep: ep/id eq '{UID_PROPERTY}' and ep/value ne null)",
            "$select": "id,start,end,isCancelled,singleValueExtendedProperties",
        }
        found: list[Listed] = []
        page = self.request("GET", self.events_path, params=params).json()
        while True:
            for item in page.get("value", []):
                uid = next((str(p.get("value", "")) for p in item.get("singleValueExtendedProperties") or []
                            if str(p.get("id", "")).lower() == UID_PROPERTY.lower()), "")
                ends = parse_when(item.get("end"))
                if uid and not item.get("isCancelled") and (ends is None or ends > since):
                    found.append(Listed(str(item["id"]), uid, parse_when(item.get("start")), ends))
            if not page.get("@odata.nextLink"):
                return found
            page = self.request("GET", str(page["@odata.nextLink"])).json()

    def pull(self, cursor: str) -> Pulled:
        full = not cursor
        url = cursor
        if cursor:
            first = self.client.request("GET", cursor, headers=self.auth_headers())
            if first.status_code == 410:
                full = True
            else:
                page = self.check_response("GET", "delta", first).json()
        if full:
            now = dt.datetime.now(dt.UTC)
            page = self.request(
                "GET",
                f"{self.owner}/calendarView/delta",
                params={
                    "startDateTime": (now - DELTA_WINDOW[0]).isoformat(timespec="seconds"),
                    "endDateTime": (now + DELTA_WINDOW[1]).isoformat(timespec="seconds"),
                },
            ).json()
        changes: list[RemoteChange] = []
        while True:
            for item in page.get("value", []):
                removed = "@removed" in item
                changes.append(
                    RemoteChange(
                        str(item["id"]),
                        "",
                        None if removed else parse_when(item.get("start")),
                        None if removed else parse_when(item.get("end")),
                        removed,
                    )
                )
            if page.get("@odata.nextLink"):
                url = str(page["@odata.nextLink"])
                page = self.request("GET", url).json()
                continue
            if not page.get("@odata.deltaLink"):
                raise Rejected(f"{self.name}: delta ended without a deltaLink")
            return Pulled(tuple(changes), str(page["@odata.deltaLink"]), full)

    def check(self) -> str:
        self.request("GET", self.events_path, params={"$top": "1", "$select": "id"})
        return f"{self.name}: calendar reachable"

    def verify(self, request: Inbound, now: dt.datetime) -> None:
        if request.query.get("validationToken"):
            return  # the subscription handshake carries no body to verify; it only echoes
        expected = self.config.secrets.get("client_state", "")
        try:
            notifications = json.loads(request.body or b"{}").get("value", [])
        except (ValueError, AttributeError) as exc:
            raise InvalidSignature(f"{self.name}: the body is not a notification") from exc
        if (
            not expected
            or not notifications
            or not all(
                isinstance(n, dict) and hmac.compare_digest(str(n.get("clientState", "")), expected)
                for n in notifications
            )
        ):
            raise InvalidSignature(f"{self.name}: clientState does not match")

    def receive(self, request: Inbound) -> Reply:
        token = request.query.get("validationToken")
        if token:
            return Reply(200, token, "text/plain")
        return Reply(202, "", pull=True)


class Office365(MicrosoftGraph):
    name = "office365"
    required_settings = frozenset({"user_id", "calendar_id"})

    @property
    def owner(self) -> str:
        user = quote(self.config.setting("user_id"), safe="")
        calendar = quote(self.config.setting("calendar_id"), safe="")
        return f"/users/{user}/calendars/{calendar}"
