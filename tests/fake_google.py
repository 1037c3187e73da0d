"""A stateful Google Calendar on loopback: events insert/patch/delete/list (iCalUID, syncToken,
410 when a token is stale), an OAuth token endpoint, and a switch to answer slowly after
committing (the timeout-after-commit case)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from platformkit import Answer, Recorded, json_answer


@dataclass
class FakeGoogle:
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: list[tuple[int, str]] = field(default_factory=list)  # (change number, event id)
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))
    access_token: str = "at-1"
    refresh_token: str = "rt-1"
    refreshes: int = 0
    refresh_delay_s: float = 0.0
    grant_revoked: bool = False
    slow_after_insert_s: float = 0.0
    stale_tokens: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: Recorded) -> Answer:
        if request.path == "/token":
            return self.token(request)
        if request.header("Authorization") != f"Bearer {self.access_token}":
            return json_answer(401, {"error": {"code": 401, "message": "Invalid Credentials"}})
        parts = [unquote(p) for p in request.path.strip("/").split("/")]
        assert parts[0] == "calendars" and parts[2] == "events", request.path
        event_id = parts[3] if len(parts) > 3 else None
        with self.lock:
            if request.method == "POST":
                return self.insert(request)
            if request.method == "GET":
                return self.list(request)
            assert event_id is not None
            if event_id not in self.events:
                return json_answer(404, {"error": {"code": 404, "message": "Not Found"}})
            if request.method == "PATCH":
                self.events[event_id].update(request.json())
                self.touch(event_id)
                return json_answer(200, self.events[event_id])
            if request.method == "DELETE":
                self.events[event_id]["status"] = "cancelled"
                self.touch(event_id)
                return 204, {}, b""
        raise AssertionError(request.method)

    def touch(self, event_id: str) -> None:
        self.log.append((next(self.counter), event_id))

    def insert(self, request: Recorded) -> Answer:
        body = request.json()
        event_id = f"ev{len(self.events) + 1}"
        self.events[event_id] = {**body, "id": event_id, "status": body.get("status", "confirmed")}
        if "conferenceData" in body and request.query.get("conferenceDataVersion") == "1":
            self.events[event_id]["hangoutLink"] = f"https://meet.google.com/{event_id}-abc"
        self.touch(event_id)
        if self.slow_after_insert_s:
            delay, self.slow_after_insert_s = self.slow_after_insert_s, 0.0
            self.lock.release()
            try:
                time.sleep(delay)
            finally:
                self.lock.acquire()
        return json_answer(200, self.events[event_id])

    def list(self, request: Recorded) -> Answer:
        query = request.query
        if "iCalUID" in query:
            items = [e for e in self.events.values() if e.get("iCalUID") == query["iCalUID"]]
            return json_answer(200, {"items": items, "nextSyncToken": self.sync_token()})
        since = 0
        if "syncToken" in query:
            token = query["syncToken"]
            if token in self.stale_tokens:
                return json_answer(410, {"error": {"code": 410, "message": "Sync token is no longer valid"}})
            since = int(token.removeprefix("sync-"))
            changed = list(dict.fromkeys(e for n, e in self.log if n > since))
        else:
            changed = list(self.events)
        return json_answer(
            200, {"items": [self.events[e] for e in changed], "nextSyncToken": self.sync_token()}
        )

    def sync_token(self) -> str:
        return f"sync-{self.log[-1][0] if self.log else 0}"

    def token(self, request: Recorded) -> Answer:
        form = request.form()
        if form.get("grant_type") == "refresh_token":
            if self.grant_revoked or form.get("refresh_token") != self.refresh_token:
                return json_answer(
                    400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
                )
            time.sleep(self.refresh_delay_s)
            with self.lock:
                self.refreshes += 1
                self.access_token = f"at-{self.refreshes + 1}"
            return json_answer(
                200,
                {
                    "access_token": self.access_token,
                    "expires_in": 3599,
                    "scope": "https://www.googleapis.com/auth/calendar.events",
                    "token_type": "Bearer",
                },
            )
        if form.get("grant_type") == "authorization_code":
            assert form.get("code") == "the-code" and form.get("code_verifier"), form
            return json_answer(
                200,
                {
                    "access_token": self.access_token,
                    "refresh_token": self.refresh_token,
                    "expires_in": 3599,
                    "token_type": "Bearer",
                },
            )
        return json_answer(400, {"error": "unsupported_grant_type"})

    def move(self, event_id: str, start: str, end: str) -> None:
        """A person drags the event in Google."""
        with self.lock:
            self.events[event_id]["start"] = {"dateTime": start}
            self.events[event_id]["end"] = {"dateTime": end}
            self.touch(event_id)


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()
