"""Tables, help desks and boards that keep a record of each visit.

- `airtable`: one record per visit in a table, upserted on our UID (`performUpsert`,
  `typecast` off), field names from `field_*` settings; verifies Airtable's
  `X-Airtable-Content-MAC` on its pings.
- `freshdesk`: a ticket per service request, carrying the visit's time and status; the
  ticket is resolved when the job is done and closed when the visit is cancelled.
- `monday`: an item per visit on a board (GraphQL `create_item`, then
  `change_multiple_column_values`); the date column as {"date", "time"} in UTC and a status
  column following the job.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
from html import escape
from typing import Any
from urllib.parse import quote

from plugins.platforms.http import HttpConnector
from server.platforms import Inbound, InvalidSignature, Op, Rejected, Remote, Reply, Visit

AIRTABLE_FIELDS = {
    "uid": "Visit UID",
    "title": "Title",
    "start": "Start",
    "end": "End",
    "status": "Status",
    "technician": "Technician",
    "customer": "Customer",
    "address": "Address",
}


def state_of(visit: Visit) -> str:
    return "cancelled" if visit.status == "cancelled" else visit.job_status


def utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Airtable(HttpConnector):
    name = "airtable"
    default_base_url = "https://api.airtable.com"
    required_settings = frozenset({"base_id", "table"})
    optional_settings = frozenset(f"field_{key}" for key in AIRTABLE_FIELDS)
    secret_names = frozenset({"access_token", "mac_secret_base64"})

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.secret('access_token')}"}

    def field(self, key: str) -> str:
        return self.config.setting(f"field_{key}", AIRTABLE_FIELDS[key])

    def fields(self, visit: Visit) -> dict[str, str]:
        values = {
            "uid": visit.uid,
            "title": visit.title,
            "start": utc(visit.starts_at),
            "end": utc(visit.ends_at),
            "status": state_of(visit),
            "technician": visit.technician_name,
            "customer": visit.customer_name,
            "address": visit.location,
        }
        return {self.field(key): value for key, value in values.items()}

    def push(self, op: Op, visit: Visit, remote_id: str | None) -> Remote | None:
        base, table = (quote(self.config.setting(key), safe="") for key in ("base_id", "table"))
        path = f"/v0/{base}/{table}"
        body = {
            "performUpsert": {"fieldsToMergeOn": [self.field("uid")]},
            "typecast": False,
            "records": [{"fields": self.fields(visit)}],
        }
        records = self.request("PATCH", path, json=body).json().get("records") or []
        if not records:
            raise Rejected("airtable: the answer holds no record")
        return Remote(str(records[0]["id"]))

    def verify(self, request: Inbound, now: dt.datetime) -> None:
        try:
            key = base64.b64decode(self.config.secrets.get("mac_secret_base64", ""), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidSignature("airtable: the stored MAC secret is not base64") from exc
        given = request.header("X-Airtable-Content-MAC")
        expected = "hmac-sha256=" + hmac.new(key, request.body, hashlib.sha256).hexdigest()
        if not key or not given or not hmac.compare_digest(expected, given):
            raise InvalidSignature("airtable: the content MAC does not match")

    def receive(self, request: Inbound) -> Reply:
        return Reply(200, "")


FRESHDESK_STATUS = {"open": 2, "pending": 3, "resolved": 4, "closed": 5}


class Freshdesk(HttpConnector):
    name = "freshdesk"
    default_base_url = "https://example.freshdesk.com"  # your helpdesk's address goes in base_url
    optional_settings = frozenset({"priority", "group_id"})
    secret_names = frozenset({"api_key"})

    def auth_headers(self) -> dict[str, str]:
        pair = f"{self.config.secret('api_key')}:X".encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")}

    def status(self, visit: Visit) -> int:
        state = state_of(visit)
        if state == "completed":
            return FRESHDESK_STATUS["resolved"]
        if state == "cancelled":
            return FRESHDESK_STATUS["closed"]
        return FRESHDESK_STATUS["open"] if state in ("new",) else FRESHDESK_STATUS["pending"]

    def description(self, visit: Visit) -> str:
        zone_time = f"{utc(visit.starts_at)} – {utc(visit.ends_at)} (UTC)"
        lines = [
            visit.description,
            f"Visit: {zone_time}",
            f"Status: {state_of(visit).replace('_', ' ')}",
            f"Technician: {visit.technician_name or 'not assigned yet'}",
            f"Address: {visit.location}",
        ]
        return "<br>".join(escape(line) for line in lines if line)

    def ticket(self, visit: Visit) -> dict[str, Any]:
        body: dict[str, Any] = {
            "subject": visit.title,
            "description": self.description(visit),
            "status": self.status(visit),
            "tags": ["fieldcal"],
        }
        return body

    def push(self, op: Op, visit: Visit, remote_id: str | None) -> Remote | None:
        if op == Op.CREATE:
            body = {**self.ticket(visit), "priority": int(self.config.setting("priority", "2")), "source": 3}
            if visit.customer_email:
                body["email"] = visit.customer_email
            else:
                body["phone"], body["name"] = visit.customer_phone, visit.customer_name
            if self.config.setting("group_id").isdigit():
                body["group_id"] = int(self.config.setting("group_id"))
            created = self.request("POST", "/api/v2/tickets", json=body).json()
            return Remote(str(created["id"]))
        assert remote_id is not None
        self.request("PUT", f"/api/v2/tickets/{quote(remote_id, safe='')}", json=self.ticket(visit))
        return Remote(remote_id)


CREATE_ITEM = """mutation ($board: ID!, $group: String, $name: String!, $values: JSON) {
  create_item(board_id: $board, group_id: $group, item_name: $name, column_values: $values) { id }
}"""
CHANGE_VALUES = """mutation ($board: ID!, $item: ID, $values: JSON!) {
  change_multiple_column_values(board_id: $board, item_id: $item, column_values: $values) { id }
}"""


class Monday(HttpConnector):
    name = "monday"
    default_base_url = "https://api.monday.com/v2"
    required_settings = frozenset({"board_id", "date_column", "status_column"})
    optional_settings = frozenset({"group_id", "api_version"})
    secret_names = frozenset({"api_token"})

    def auth_headers(self) -> dict[str, str]:
        return {
            "Authorization": self.config.secret("api_token"),
            "API-Version": self.config.setting("api_version", "2025-04"),
        }

    def values(self, visit: Visit) -> str:
        start = visit.starts_at.astimezone(dt.UTC)
        return json.dumps(
            {
                self.config.setting("date_column"): {
                    "date": start.strftime("%Y-%m-%d"),
                    "time": start.strftime("%H:%M:%S"),
                },
                self.config.setting("status_column"): {"label": state_of(visit).replace("_", " ")},
            }
        )

    def graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        answer = self.request("POST", self.base_url, json={"query": query, "variables": variables}).json()
        if answer.get("errors"):
            raise Rejected(f"monday: {answer['errors'][0].get('message', answer['errors'][0])}")
        return dict(answer.get("data") or {})

    def push(self, op: Op, visit: Visit, remote_id: str | None) -> Remote | None:
        board = self.config.setting("board_id")
        if op == Op.CREATE:
            data = self.graphql(
                CREATE_ITEM,
                {
                    "board": board,
                    "group": self.config.setting("group_id") or None,
                    "name": visit.title,
                    "values": self.values(visit),
                },
            )
            return Remote(str(data["create_item"]["id"]))
        self.graphql(CHANGE_VALUES, {"board": board, "item": remote_id, "values": self.values(visit)})
        return Remote(str(remote_id))

    def verify(self, request: Inbound, now: dt.datetime) -> None:
        """monday's board webhooks carry no signature; only the registration challenge is
        answered, and nothing else is accepted."""
        try:
            body = json.loads(request.body or b"{}")
        except ValueError as exc:
            raise InvalidSignature("monday: not a challenge") from exc
        if not (isinstance(body, dict) and set(body) == {"challenge"}):
            raise InvalidSignature("monday: unsigned events are not accepted")

    def receive(self, request: Inbound) -> Reply:
        return Reply(
            200, json.dumps({"challenge": json.loads(request.body)["challenge"]}), "application/json"
        )
