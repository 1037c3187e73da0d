"""Zoom: a meeting for every remote visit (video triage), created, moved and deleted with
the visit; its join link reaches the customer's page. Visits on site make no meeting.

Settings: `user_id` (default "me"), `base_url` (https://api.zoom.us/v2), `auth_url`/`token_url`.
Secrets: `client_id`, `client_secret` (then `connect`) or `access_token`/`refresh_token`;
`secret_token` to verify Zoom's event notifications (`x-zm-signature`, v0 HMAC-SHA256) and
answer its `endpoint.url_validation` handshake.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from typing import Any
from urllib.parse import quote

from plugins.platforms.http import HttpConnector
from server.platforms import Inbound, InvalidSignature, OAuth, Op, Remote, Reply, Visit

TOLERANCE_S = 300
SCHEDULED = 2


def zoom_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def sign(secret: str, text: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), text, hashlib.sha256).hexdigest()


class Zoom(HttpConnector):
    name = "zoom"
    default_base_url = "https://api.zoom.us/v2"
    optional_settings = frozenset({"user_id"})
    secret_names = frozenset({"client_id", "client_secret", "access_token", "refresh_token",
                              "secret_token"})
    oauth = OAuth("https://zoom.us/oauth/authorize", "https://zoom.us/oauth/token",
                  ("meeting:write:meeting",))

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.secret('access_token')}"}

    def meeting(self, visit: Visit) -> dict[str, Any]:
        minutes = max(1, int((visit.ends_at - visit.starts_at).total_seconds() // 60))
        return {"topic": visit.title[:200], "type": SCHEDULED, "start_time": zoom_time(visit.starts_at),
                "duration": minutes, "timezone": visit.timezone, "agenda": visit.description[:2000]}

    def push(self, op: Op, visit: Visit, remote_id: str | None) -> Remote | None:
        if op == Op.CREATE:
            if not visit.remote:
                return None  # only remote visits meet by video
            user = quote(self.config.setting("user_id", "me"), safe="")
            created = self.request("POST", f"/users/{user}/meetings", json=self.meeting(visit)).json()
            return Remote(str(created["id"]), str(created.get("join_url", "")))
        assert remote_id is not None
        path = f"/meetings/{quote(remote_id, safe='')}"
        if op == Op.CANCEL or not visit.remote:
            response = self.client.request("DELETE", path, headers=self.auth_headers())
            if response.status_code != 404:
                self.check_response("DELETE", path, response)
            return Remote(remote_id)
        self.request("PATCH", path, json=self.meeting(visit))
        return Remote(remote_id)

    def check(self) -> str:
        user = quote(self.config.setting("user_id", "me"), safe="")
        self.request("GET", f"/users/{user}/meetings", params={"page_size": "1"})
        return "zoom: meetings reachable"

    def verify(self, request: Inbound, now: dt.datetime) -> None:
        secret = self.config.secrets.get("secret_token", "")
        stamp = request.header("x-zm-request-timestamp")
        given = request.header("x-zm-signature")
        if not secret or not stamp.isdigit() or not given:
            raise InvalidSignature("zoom: the request is not signed")
        if abs(now.timestamp() - int(stamp)) > TOLERANCE_S:
            raise InvalidSignature("zoom: the request's timestamp is too old")
        expected = "v0=" + sign(secret, b"v0:" + stamp.encode("ascii") + b":" + request.body)
        if not hmac.compare_digest(expected, given):
            raise InvalidSignature("zoom: the signature does not match")

    def receive(self, request: Inbound) -> Reply:
        try:
            event = json.loads(request.body or b"{}")
        except ValueError:
            return Reply(400, "the body is not JSON")
        if isinstance(event, dict) and event.get("event") == "endpoint.url_validation":
            plain = str((event.get("payload") or {}).get("plainToken", ""))
            encrypted = sign(self.config.secrets.get("secret_token", ""), plain.encode("utf-8"))
            answer = {"plainToken": plain, "encryptedToken": encrypted}
            return Reply(200, json.dumps(answer), "application/json")
        return Reply(200, "")
