"""Jobber (GraphQL): our visits created there as jobs, and visits moved there read back.

- push: `jobCreate(input: JobCreateAttributes!)` on the property Jobber knows our customer by
  (`properties` mapping, else `property_id`), with the title, instructions (the exact local
  time and our UID), the invoicing strategy and schedule the account uses (settings; the
  contract does not list their values) and `timeframe.startAt`, the visit's local date. The
  visit Jobber made for it (`job.visits`) is the remote object.
- read back: Jobber's `VISIT_UPDATE` webhook (`X-Jobber-Hmac-SHA256`: base64 HMAC-SHA256 of the
  raw body with the app's OAuth client secret) names the visit; we read it (`visit(id)`:
  `startAt`/`endAt`) and a new time becomes a reschedule request through the domain, as the
  integration, so the rules apply and the change is never pushed back to Jobber. Visits
  fieldcal did not create are not imported: the read we hold types no client, property or
  address for a visit, so there is nothing to book it for (they are acknowledged and left).

What the schema we hold does not allow, and what happens instead: it has no mutation that
edits or cancels a visit. A time change made here is compared with the visit in Jobber (read
first); when they differ, or the visit was cancelled here, the push is refused with a message
naming the Jobber visit, so dispatch is alerted to change it there by hand. The same goes
for a move made in Jobber that our rules refused.

Who owns what: fieldcal owns a visit's time, technician and status once the visit is ours;
a move in Jobber is a request that the rules may refuse. Jobber owns the job's own record:
its title, instructions, notes, line items and invoicing are never written after creation.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from plugins.platforms.http import HttpConnector
from plugins.platforms.intake import parse_mapping, parse_time
from server.platforms import (
    Inbound,
    InvalidSignature,
    OAuth,
    Op,
    RateLimited,
    Rejected,
    Remote,
    RemoteChange,
    Reply,
    Visit,
)

JOB_CREATE = """mutation CreateJob($input: JobCreateAttributes!) {
  jobCreate(input: $input) {
    job { id visits(first: 1) { nodes { id } } }
    userErrors { message }
  }
}"""
VISIT = """query Visit($id: EncodedId!) {
  visit(id: $id) { id startAt endAt }
}"""
VISIT_UPDATE = "VISIT_UPDATE"
HEADER = "X-Jobber-Hmac-SHA256"
OAUTH_BASE = "https://api.getjobber.com/api/oauth"


class Jobber(HttpConnector):
    name = "jobber"
    default_base_url = "https://api.getjobber.com/api/graphql"
    required_settings = frozenset({"invoicing_type", "invoicing_schedule"})
    optional_settings = frozenset({"property_id", "properties", "api_version"})
    secret_names = frozenset({"client_id", "client_secret", "access_token", "refresh_token"})
    oauth = OAuth(f"{OAUTH_BASE}/authorize", f"{OAUTH_BASE}/token", ())

    @classmethod
    def validate_settings(cls, settings: Mapping[str, str], secrets: Mapping[str, str]) -> None:
        super().validate_settings(settings, secrets)
        parse_mapping("jobber", "properties", str(settings.get("properties", "")))

    def auth_headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.config.secret('access_token')}"}
        if self.config.setting("api_version"):
            headers["X-JOBBER-GRAPHQL-VERSION"] = self.config.setting("api_version")
        return headers

    def graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        answer = self.request("POST", self.base_url, json={"query": query, "variables": variables}).json()
        errors = answer.get("errors") or []
        if errors:
            message = (
                str(errors[0].get("message", errors[0])) if isinstance(errors[0], dict) else str(errors[0])
            )
            throttled = any(
                isinstance(e, dict) and (e.get("extensions") or {}).get("code") == "THROTTLED" for e in errors
            )
            if throttled:  # the query-cost bucket is empty: it refills at a documented rate
                raise RateLimited(f"jobber: {message}", 30.0)
            raise Rejected(f"jobber: {message}")
        return dict(answer.get("data") or {})

    def property_of(self, visit: Visit) -> str:
        mapped = parse_mapping("jobber", "properties", self.config.setting("properties"))
        found = mapped.get(str(visit.customer_id)) or self.config.setting("property_id")
        if not found:
            raise Rejected(
                f"jobber: customer #{visit.customer_id} ({visit.customer_name}) has no Jobber property; "
                f"add {visit.customer_id}=PROPERTY_ID to the `properties` setting (or set "
                "property_id), then `integration retry`"
            )
        return found

    def job_input(self, visit: Visit) -> dict[str, Any]:
        zone = ZoneInfo(visit.timezone)
        start, end = visit.starts_at.astimezone(zone), visit.ends_at.astimezone(zone)
        when = f"{start:%Y-%m-%d %H:%M}–{end:%H:%M} ({visit.timezone})"
        lines = [
            when,
            visit.description,
            visit.location,
            f"Technician: {visit.technician_name or 'unassigned'}",
            f"fieldcal visit {visit.uid}",
        ]
        return {
            "propertyId": self.property_of(visit),
            "title": visit.title,
            "instructions": "\n".join(line for line in lines if line.strip()),
            "invoicing": {
                "invoicingType": self.config.setting("invoicing_type"),
                "invoicingSchedule": self.config.setting("invoicing_schedule"),
            },
            "timeframe": {"startAt": start.date().isoformat()},
        }

    def push(self, op: Op, visit: Visit, remote_id: str | None) -> Remote | None:
        if op == Op.CREATE:
            created = self.graphql(JOB_CREATE, {"input": self.job_input(visit)})["jobCreate"]
            if created.get("userErrors"):
                raise Rejected(f"jobber: the job was refused: {created['userErrors'][0].get('message')}")
            job = created.get("job") or {}
            nodes = ((job.get("visits") or {}).get("nodes")) or []
            if not nodes:
                raise Rejected(f"jobber: job {job.get('id')} was created without a visit")
            return Remote(str(nodes[0]["id"]))
        assert remote_id is not None
        if op == Op.CANCEL:
            raise Rejected(
                f"jobber: visit {visit.uid} was cancelled here, but the published schema has no "
                f"mutation that cancels a visit: cancel Jobber visit {remote_id} by hand"
            )
        there = self.visit(remote_id)
        if there.starts_at is not None and (there.starts_at, there.ends_at) != (
            visit.starts_at,
            visit.ends_at,
        ):
            zone = ZoneInfo(visit.timezone)
            wanted = (
                f"{visit.starts_at.astimezone(zone):%Y-%m-%d %H:%M}–{visit.ends_at.astimezone(zone):%H:%M}"
            )
            raise Rejected(
                f"jobber: visit {remote_id} is at another time there, and the published schema has no "
                f"mutation that moves a visit: move it to {wanted} ({visit.timezone}) in Jobber"
                + (f". {visit.note}" if visit.note else "")
            )
        return Remote(remote_id)

    def visit(self, visit_id: str) -> RemoteChange:
        found = self.graphql(VISIT, {"id": visit_id}).get("visit")
        if not isinstance(found, dict) or str(found.get("id")) != visit_id:
            return RemoteChange(visit_id, "", None, None, deleted=False)
        starts = parse_time("jobber", found["startAt"]) if found.get("startAt") else None
        ends = parse_time("jobber", found["endAt"]) if found.get("endAt") else None
        return RemoteChange(visit_id, "", starts, ends)

    def verify(self, request: Inbound, now: dt.datetime) -> None:
        """Jobber signs the raw body with the app's client secret; it sends no timestamp, so
        a replay is harmless rather than refused (the visit is read again, as it is now)."""
        secret = self.config.secrets.get("client_secret", "")
        given = request.header(HEADER)
        if not secret or not given:
            raise InvalidSignature("jobber: the request is not signed")
        expected = base64.b64encode(hmac.new(secret.encode(), request.body, hashlib.sha256).digest()).decode()
        if not hmac.compare_digest(expected, given):
            raise InvalidSignature("jobber: the signature does not match")

    def receive(self, request: Inbound) -> Reply:
        try:
            event = json.loads(request.body)["data"]["webHookEvent"]
            topic, item = str(event["topic"]), str(event["itemId"])
        except (ValueError, KeyError, TypeError):
            return Reply(400, "not a Jobber webhook event\n")
        if topic != VISIT_UPDATE:
            return Reply(200, "ignored\n")
        change = self.visit(item)
        if change.starts_at is None or change.ends_at is None:
            return Reply(200, "no time there\n")
        return Reply(200, "read\n", changes=(change,))
