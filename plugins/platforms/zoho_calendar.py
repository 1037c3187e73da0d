"""Zoho Calendar: visits as events in a chosen calendar. Zoho takes the event as JSON in the
`eventdata` query parameter, with times as yyyyMMdd'T'HHmmss'Z' (UTC); an update or a
delete names the event's current `etag`, which we keep beside its uid.

Settings: `calendar_uid` (required), `base_url` (https://calendar.zoho.com/api/v1),
`auth_url`/`token_url` (your Zoho data centre's accounts server). Secrets: `client_id`,
`client_secret` (then `connect`) or `access_token`/`refresh_token` (Zoho's refresh answer
carries no new refresh token: the one we have is kept).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import quote

from plugins.platforms.http import HttpConnector
from server.platforms import OAuth, Op, Rejected, Remote, Visit

ACCOUNTS = "https://accounts.zoho.com/oauth/v2"
SEPARATOR = " "  # between uid and etag in the remote id we keep


def zoho_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


class ZohoCalendar(HttpConnector):
    name = "zoho-calendar"
    default_base_url = "https://calendar.zoho.com/api/v1"
    required_settings = frozenset({"calendar_uid"})
    secret_names = frozenset({"client_id", "client_secret", "access_token", "refresh_token"})
    oauth = OAuth(
        f"{ACCOUNTS}/auth",
        f"{ACCOUNTS}/token",
        ("ZohoCalendar.event.ALL",),
        pkce=False,
        extra_authorize=(("access_type", "offline"),),
    )

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Zoho-oauthtoken {self.config.secret('access_token')}"}

    @property
    def events_path(self) -> str:
        return f"/calendars/{quote(self.config.setting('calendar_uid'), safe='')}/events"

    def eventdata(self, visit: Visit, etag: str | None = None) -> str:
        data: dict[str, Any] = {
            "title": visit.title[:255],
            "dateandtime": {
                "start": zoho_time(visit.starts_at),
                "end": zoho_time(visit.ends_at),
                "timezone": visit.timezone,
            },
            "location": visit.location[:255],
            "description": "\n\n".join(p for p in (visit.note, visit.description) if p)[:10000],
            "isallday": False,
            "isprivate": False,
        }
        if visit.technician_email:
            data["attendees"] = [{"email": visit.technician_email, "permission": 0, "attendance": 1}]
        if etag is not None:
            data["etag"] = etag
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    @staticmethod
    def remote(answer: dict[str, Any]) -> Remote:
        events = answer.get("events") or []
        if not events or "uid" not in events[0]:
            raise Rejected("zoho-calendar: the answer names no event")
        return Remote(f"{events[0]['uid']}{SEPARATOR}{events[0].get('etag', '')}")

    def push(self, op: Op, visit: Visit, remote_id: str | None) -> Remote | None:
        if op == Op.CREATE:
            answer = self.request("POST", self.events_path, params={"eventdata": self.eventdata(visit)})
            return self.remote(answer.json())
        assert remote_id is not None
        uid, _, etag = remote_id.partition(SEPARATOR)
        path = f"{self.events_path}/{quote(uid, safe='')}"
        if op == Op.CANCEL:
            response = self.client.request("DELETE", path, headers={**self.auth_headers(), "etag": etag})
            if response.status_code != 404:
                self.check_response("DELETE", path, response)
            return Remote(remote_id)
        answer = self.request("PUT", path, params={"eventdata": self.eventdata(visit, etag)})
        return self.remote(answer.json())

    def check(self) -> str:
        self.request(
            "GET", self.events_path, params={"range": json.dumps({"start": "20300101", "end": "20300102"})}
        )
        return "zoho-calendar: calendar reachable"
