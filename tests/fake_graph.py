"""A stateful Microsoft Graph calendar on loopback: events create/patch/delete, lookup by the
extended property, calendarView/delta with delta links (410 when stale), and a token endpoint
that rotates the refresh token on every use, as Microsoft's does."""

from __future__ import annotations

import itertools
import re
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from platformkit import Answer, Recorded, json_answer

EVENT = re.compile(r"^(?P<owner>/v1\.0/(?:me|users/[^/]+/calendars/[^/]+))/events(?:/(?P<id>[^/]+))?$")
DELTA = re.compile(r"^(?P<owner>/v1\.0/(?:me|users/[^/]+/calendars/[^/]+))/calendarView/delta$")


@dataclass
class FakeGraph:
    url: str = ""
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: list[tuple[int, str]] = field(default_factory=list)
    counter: itertools.count = field(default_factory=lambda: itertools.count(1))
    access_token: str = "gat-1"
    refresh_token: str = "grt-1"
    refreshes: int = 0
    stale_tokens: set[str] = field(default_factory=set)
    page_size: int = 2
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, request: Recorded) -> Answer:
        if request.path == "/token":
            return self.token(request)
        if request.header("Authorization") != f"Bearer {self.access_token}":
            return json_answer(401, {"error": {"code": "InvalidAuthenticationToken", "message": "expired"}})
        with self.lock:
            delta = DELTA.match(request.path)
            if delta:
                return self.delta(request, delta["owner"])
            match = EVENT.match(request.path)
            assert match, request.path
            event_id = unquote(match["id"]) if match["id"] else None
            if request.method == "POST":
                body = request.json()
                new_id = f"AAMk{len(self.events) + 1}="
                self.events[new_id] = {**body, "id": new_id}
                self.touch(new_id)
                return json_answer(201, self.events[new_id])
            if request.method == "GET" and "ep/value ne null" in request.query.get("$filter", ""):
                return self.listing(request, match["owner"])
            if request.method == "GET":
                wanted = re.search(r"ep/value eq '([^']*)'", request.query.get("$filter", ""))
                items = [
                    e
                    for e in self.events.values()
                    if not e.get("@removed")
                    and wanted
                    and any(p["value"] == wanted[1] for p in e.get("singleValueExtendedProperties", []))
                ]
                return json_answer(200, {"value": [{"id": e["id"]} for e in items]})
            assert event_id is not None
            if event_id not in self.events or self.events[event_id].get("@removed"):
                return json_answer(404, {"error": {"code": "ErrorItemNotFound", "message": "not found"}})
            if request.method == "PATCH":
                self.events[event_id].update(request.json())
                self.touch(event_id)
                return json_answer(200, self.events[event_id])
            if request.method == "DELETE":
                self.events[event_id]["@removed"] = {"reason": "deleted"}
                self.touch(event_id)
                return 204, {}, b""
        raise AssertionError(request.method)

    def listing(self, request: Recorded, owner: str) -> Answer:
        """Events that carry the extended property, `page_size` at a time (`$skip` in the
        next link, as Graph's paging does)."""
        selected = set(request.query.get("$select", "id").split(","))
        items = [e for e in self.events.values()
                 if not e.get("@removed") and e.get("singleValueExtendedProperties")]
        skip = int(request.query.get("$skip", "0"))
        page = [{k: v for k, v in e.items() if k in selected} for e in items[skip:skip + self.page_size]]
        body: dict[str, Any] = {"value": page}
        if skip + self.page_size < len(items):
            query = "&".join(f"{k}={quote(v)}"
                             for k, v in {**request.query, "$skip": str(skip + self.page_size)}.items())
            body["@odata.nextLink"] = f"{self.url}{owner}/events?{query}"
        return json_answer(200, body)

    def touch(self, event_id: str) -> None:
        self.log.append((next(self.counter), event_id))

    def delta(self, request: Recorded, owner: str) -> Answer:
        token = request.query.get("$deltatoken")
        if token is not None:
            if token in self.stale_tokens:
                return json_answer(410, {"error": {"code": "SyncStateNotFound", "message": "resync"}})
            changed = list(dict.fromkeys(e for n, e in self.log if n > int(token)))
        else:
            changed = list(self.events)
        latest = self.log[-1][0] if self.log else 0
        value = [
            {"id": e, "@removed": self.events[e]["@removed"]}
            if self.events[e].get("@removed")
            else {"id": e, "start": self.events[e]["start"], "end": self.events[e]["end"]}
            for e in changed
        ]
        return json_answer(
            200,
            {
                "value": value,
                "@odata.deltaLink": f"{self.url}{owner}/calendarView/delta?$deltatoken={latest}",
            },
        )

    def latest_token(self) -> str:
        return str(self.log[-1][0] if self.log else 0)

    def token(self, request: Recorded) -> Answer:
        form = request.form()
        assert (
            form.get("grant_type") == "refresh_token" and form.get("refresh_token") == self.refresh_token
        ), form
        with self.lock:
            self.refreshes += 1
            self.access_token = f"gat-{self.refreshes + 1}"
            self.refresh_token = f"grt-{self.refreshes + 1}"
        return json_answer(
            200,
            {
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "expires_in": 4500,
                "token_type": "Bearer",
            },
        )

    def move(self, event_id: str, start: str, end: str, zone: str) -> None:
        with self.lock:
            self.events[event_id]["start"] = {"dateTime": start + ".0000000", "timeZone": zone}
            self.events[event_id]["end"] = {"dateTime": end + ".0000000", "timeZone": zone}
            self.touch(event_id)
