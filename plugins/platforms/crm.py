"""CRMs: each visit as the CRM's own meeting/event record, found again by our id.

- `salesforce`: an `Event` upserted by an External ID field (`PATCH
  /sobjects/Event/{field}/{our uid}`: creates or updates, so a retry never duplicates);
  `StartDateTime`/`EndDateTime` in UTC; the customer's Contact/Account referenced by their
  external id fields when configured (WhoId/WhatId resolved by Salesforce).
- `hubspot`: a meeting (`/crm/v3/objects/meetings`) with `hs_timestamp` and start/end in UTC,
  associated with the contact found by the customer's email; our UID in a custom property,
  searched for before creating.
- `zoho-crm`: an `Events` record (Event_Title, Start_DateTime, End_DateTime with offsets).

Push-only: the CRM records the visit; the schedule is ours.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import quote

from plugins.platforms.http import HttpConnector
from server.platforms import Op, Rejected, Remote, Visit


def utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def body_text(visit: Visit) -> str:
    return "\n\n".join(
        p for p in (visit.note, visit.description, f"Technician: {visit.technician_name}") if p
    )


class Salesforce(HttpConnector):
    name = "salesforce"
    default_base_url = "https://login.salesforce.com"  # the org's instance URL goes in base_url
    required_settings = frozenset({"external_id_field"})
    optional_settings = frozenset({"api_version", "contact_external_field", "account_external_field"})
    secret_names = frozenset({"access_token", "refresh_token", "client_id", "client_secret"})

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.secret('access_token')}"}

    def path(self, uid: str) -> str:
        version = self.config.setting("api_version", "v60.0")
        field = quote(self.config.setting("external_id_field"), safe="")
        return f"/services/data/{version}/sobjects/Event/{field}/{quote(uid, safe='')}"

    def event(self, visit: Visit) -> dict[str, Any]:
        body: dict[str, Any] = {
            "Subject": visit.title[:255],
            "Location": visit.location[:255],
            "Description": body_text(visit),
            "StartDateTime": utc(visit.starts_at),
            "EndDateTime": utc(visit.ends_at),
            "IsAllDayEvent": False,
            "ShowAs": "Free" if visit.status == "cancelled" else "Busy",
        }
        if visit.status == "cancelled":
            body["Subject"] = f"[cancelled] {visit.title}"[:255]
        contact_field = self.config.setting("contact_external_field")
        if contact_field:
            body["Who"] = {"attributes": {"type": "Contact"}, contact_field: str(visit.customer_id)}
        account_field = self.config.setting("account_external_field")
        if account_field:
            body["What"] = {"attributes": {"type": "Account"}, account_field: str(visit.customer_id)}
        return body

    def push(self, op: Op, visit: Visit, remote_id: str | None) -> Remote | None:
        response = self.request("PATCH", self.path(visit.uid), json=self.event(visit))
        answer = response.json() if response.content else {}
        return Remote(str(answer.get("id") or remote_id or visit.uid))


class HubSpot(HttpConnector):
    name = "hubspot"
    default_base_url = "https://api.hubapi.com"
    optional_settings = frozenset({"uid_property", "contact_association_type"})
    secret_names = frozenset({"access_token"})

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.secret('access_token')}"}

    @property
    def uid_property(self) -> str:
        return self.config.setting("uid_property", "fieldcal_uid")

    def properties(self, visit: Visit) -> dict[str, str]:
        return {
            "hs_timestamp": utc(visit.starts_at),
            "hs_meeting_title": visit.title,
            "hs_meeting_body": body_text(visit),
            "hs_meeting_start_time": utc(visit.starts_at),
            "hs_meeting_end_time": utc(visit.ends_at),
            "hs_meeting_location": visit.location,
            "hs_meeting_outcome": "CANCELED" if visit.status == "cancelled" else "SCHEDULED",
            self.uid_property: visit.uid,
        }

    def search(self, object_type: str, prop: str, value: str) -> str | None:
        body = {
            "filterGroups": [{"filters": [{"propertyName": prop, "operator": "EQ", "value": value}]}],
            "limit": 1,
        }
        results = self.request("POST", f"/crm/v3/objects/{object_type}/search", json=body).json()
        found = results.get("results") or []
        return str(found[0]["id"]) if found else None

    def push(self, op: Op, visit: Visit, remote_id: str | None) -> Remote | None:
        if op == Op.CREATE:
            existing = self.search("meetings", self.uid_property, visit.uid)
            if existing is not None:
                return self.push(Op.UPDATE, visit, existing)
            body: dict[str, Any] = {"properties": self.properties(visit)}
            contact = self.search("contacts", "email", visit.customer_email) if visit.customer_email else None
            if contact is not None:
                kind = int(self.config.setting("contact_association_type", "200"))
                body["associations"] = [
                    {
                        "to": {"id": contact},
                        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": kind}],
                    }
                ]
            created = self.request("POST", "/crm/v3/objects/meetings", json=body).json()
            return Remote(str(created["id"]))
        assert remote_id is not None
        self.request(
            "PATCH",
            f"/crm/v3/objects/meetings/{quote(remote_id, safe='')}",
            json={"properties": self.properties(visit)},
        )
        return Remote(remote_id)

    def find(self, visit: Visit) -> str | None:
        return self.search("meetings", self.uid_property, visit.uid)


class ZohoCrm(HttpConnector):
    name = "zoho-crm"
    default_base_url = "https://www.zohoapis.com"
    secret_names = frozenset({"access_token", "refresh_token", "client_id", "client_secret"})

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Zoho-oauthtoken {self.config.secret('access_token')}"}

    def record(self, visit: Visit) -> dict[str, Any]:
        return {
            "Event_Title": visit.title,
            "Start_DateTime": visit.starts_at.astimezone(dt.UTC).isoformat(),
            "End_DateTime": visit.ends_at.astimezone(dt.UTC).isoformat(),
            "Venue": visit.location,
            "Description": body_text(visit),
        }

    def push(self, op: Op, visit: Visit, remote_id: str | None) -> Remote | None:
        if op == Op.CREATE:
            answer = self.request("POST", "/crm/v8/Events", json={"data": [self.record(visit)]}).json()
            return Remote(self.record_id(answer))
        assert remote_id is not None
        path = f"/crm/v8/Events/{quote(remote_id, safe='')}"
        if op == Op.CANCEL:
            self.request("DELETE", path)
            return Remote(remote_id)
        self.request("PUT", path, json={"data": [self.record(visit)]})
        return Remote(remote_id)

    @staticmethod
    def record_id(answer: dict[str, Any]) -> str:
        rows = answer.get("data") or []
        if not rows or rows[0].get("status") == "error":
            raise Rejected(f"zoho-crm: the record was not created: {rows[0] if rows else answer}")
        return str(rows[0]["details"]["id"])
