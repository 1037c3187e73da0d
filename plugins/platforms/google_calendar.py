"""Google Calendar: a technician's visits as events in a chosen calendar, and time changes
made in Google read back with `syncToken` (410 Gone → a full resync, without duplicates).

Settings: `calendar_id` (default "primary"), `meet` ("true": remote service types get a
Google Meet link through `conferenceData`), `base_url` (https://www.googleapis.com/calendar/v3),
`auth_url`/`token_url`. Secrets: `client_id`, `client_secret` (then `fieldcal integration
connect`), or `access_token`/`refresh_token` directly; `channel_token` for push notifications.
Our UID is the event's `iCalUID` and the private extended property `fieldcal_uid`, so a retry
after a timeout finds the event the first try created.
"""

from __future__ import annotations

import datetime as dt
import hmac
from typing import Any
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

UID_PROPERTY = "fieldcal_uid"
RESYNC_DAYS_BACK = 30


def rfc3339(moment: dt.datetime, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).isoformat(timespec="seconds")


def parse_when(value: dict[str, Any] | None) -> dt.datetime | None:
    if not value or "dateTime" not in value:
        return None
    moment = dt.datetime.fromisoformat(str(value["dateTime"]).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(str(value.get("timeZone") or "UTC")))
    return moment.astimezone(dt.UTC)


def remote_of(event: dict[str, Any]) -> Remote:
    """The event's id and its Meet link, once Google has made one."""
    join = str(event.get("hangoutLink") or "")
    for entry in (event.get("conferenceData") or {}).get("entryPoints", []):
        if entry.get("entryPointType") == "video" and not join:
            join = str(entry.get("uri", ""))
    return Remote(str(event["id"]), join)


class GoogleCalendar(HttpConnector):
    name = "google-calendar"
    listing = True
    default_base_url = "https://www.googleapis.com/calendar/v3"
    optional_settings = frozenset({"calendar_id", "meet"})
    secret_names = frozenset({"client_id", "client_secret", "access_token", "refresh_token", "channel_token"})
    oauth = OAuth("https://accounts.google.com/o/oauth2/v2/auth", "https://oauth2.googleapis.com/token",
                  ("https://www.googleapis.com/auth/calendar.events",),
                  extra_authorize=(("access_type", "offline"), ("prompt", "consent")))

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.secret('access_token')}"}

    @property
    def events_path(self) -> str:
        return f"/calendars/{quote(self.config.setting('calendar_id', 'primary'), safe='')}/events"

    def wants_meet(self, visit: Visit) -> bool:
        return visit.remote and self.config.setting("meet") == "true"

    def event(self, visit: Visit) -> dict[str, Any]:
        body: dict[str, Any] = {
            "summary": visit.title,
            "description": "\n\n".join(part for part in (visit.note, visit.description) if part),
            "location": visit.location,
            "start": {"dateTime": rfc3339(visit.starts_at, visit.timezone), "timeZone": visit.timezone},
            "end": {"dateTime": rfc3339(visit.ends_at, visit.timezone), "timeZone": visit.timezone},
            "status": "tentative" if visit.status == "tentative" else "confirmed",
            "sequence": visit.sequence,
            "extendedProperties": {"private": {UID_PROPERTY: visit.uid}},
        }
        if visit.technician_email:
            body["attendees"] = [{"email": visit.technician_email, "displayName": visit.technician_name}]
        if self.wants_meet(visit):
            body["conferenceData"] = {"createRequest": {"requestId": f"{visit.uid}-{visit.sequence}",
                                                        "conferenceSolutionKey": {"type": "hangoutsMeet"}}}
        return body

    def push(self, op: Op, visit: Visit, remote_id: str | None) -> Remote | None:
        params = {"sendUpdates": "none"}
        if self.wants_meet(visit):
            params["conferenceDataVersion"] = "1"
        if op == Op.CANCEL:
            assert remote_id is not None
            response = self.client.request("DELETE", f"{self.events_path}/{quote(remote_id, safe='')}",
                                           params={"sendUpdates": "none"}, headers=self.auth_headers())
            if response.status_code not in (404, 410):  # already gone is what we wanted
                self.check_response("DELETE", self.events_path, response)
            return Remote(remote_id)
        if op == Op.CREATE:
            body = {**self.event(visit), "iCalUID": visit.uid}
            return remote_of(self.request("POST", self.events_path, params=params, json=body).json())
        assert remote_id is not None
        updated = self.request("PATCH", f"{self.events_path}/{quote(remote_id, safe='')}", params=params,
                               json=self.event(visit)).json()
        return remote_of({"id": remote_id, **updated})

    def find(self, visit: Visit) -> str | None:
        found = self.request("GET", self.events_path, params={"iCalUID": visit.uid, "showDeleted": "false"})
        items = [i for i in found.json().get("items", []) if i.get("status") != "cancelled"]
        return str(items[0]["id"]) if items else None

    def pull(self, cursor: str) -> Pulled:
        """events.list with the sync token; 410 (token expired) → a full listing."""
        params: dict[str, str] = {"syncToken": cursor} if cursor else {}
        full = not cursor
        if cursor:
            response = self.client.request("GET", self.events_path, params=params,
                                           headers=self.auth_headers())
            if response.status_code == 410:
                params, full = {}, True
            else:
                self.check_response("GET", self.events_path, response)
        if full:
            since = dt.datetime.now(dt.UTC) - dt.timedelta(days=RESYNC_DAYS_BACK)
            params = {"timeMin": since.isoformat(timespec="seconds"), "singleEvents": "true",
                      "showDeleted": "true"}
        changes: list[RemoteChange] = []
        while True:
            page = self.request("GET", self.events_path, params=params).json()
            for item in page.get("items", []):
                uid = str((item.get("extendedProperties") or {}).get("private", {}).get(UID_PROPERTY)
                          or item.get("iCalUID") or "")
                changes.append(RemoteChange(str(item["id"]), uid, parse_when(item.get("start")),
                                            parse_when(item.get("end")), item.get("status") == "cancelled"))
            if page.get("nextPageToken"):
                params = {k: v for k, v in params.items() if k != "pageToken"} | {
                    "pageToken": str(page["nextPageToken"])}
                continue
            if not page.get("nextSyncToken"):
                raise Rejected("google-calendar: events.list ended without a nextSyncToken")
            return Pulled(tuple(changes), str(page["nextSyncToken"]), full)

    def list_objects(self, since: dt.datetime) -> list[Listed]:
        """events.list from `since` (single events, deleted ones left out), ours only."""
        params = {"timeMin": since.astimezone(dt.UTC).isoformat(timespec="seconds"), "singleEvents": "true",
                  "showDeleted": "false"}
        found: list[Listed] = []
        while True:
            page = self.request("GET", self.events_path, params=params).json()
            for item in page.get("items", []):
                uid = str((item.get("extendedProperties") or {}).get("private", {}).get(UID_PROPERTY) or "")
                if uid and item.get("status") != "cancelled":
                    found.append(Listed(str(item["id"]), uid, parse_when(item.get("start")),
                                        parse_when(item.get("end"))))
            if not page.get("nextPageToken"):
                return found
            params = {**params, "pageToken": str(page["nextPageToken"])}

    def check(self) -> str:
        self.request("GET", self.events_path, params={"maxResults": "1"})
        return f"google-calendar: calendar {self.config.setting('calendar_id', 'primary')} reachable"

    def verify(self, request: Inbound, now: dt.datetime) -> None:
        """Google's push notifications are not signed: the channel token we set must match."""
        expected = self.config.secrets.get("channel_token", "")
        given = request.header("X-Goog-Channel-Token")
        if not expected or not given or not hmac.compare_digest(expected, given):
            raise InvalidSignature("google-calendar: unknown channel token")

    def receive(self, request: Inbound) -> Reply:
        """`sync` opens a channel; `exists`/`not_exists` mean: read the changes back."""
        return Reply(200, "", pull=request.header("X-Goog-Resource-State") in ("exists", "not_exists"))
