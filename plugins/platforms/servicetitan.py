"""ServiceTitan: each visit pushed as a ServiceTitan job with one appointment.

- create: `POST /jpm/v2/tenant/{tenant}/jobs` with the appointment (start/end in UTC), the
  job's business unit, job type, campaign and priority from settings, and the customer and
  location ServiceTitan knows our customer by (`customers` mapping, else `customer_id` and
  `location_id`); our UID rides in `externalData` when `application_guid` is set;
- a time change: `PATCH /jpm/v2/tenant/{tenant}/appointments/{id}/reschedule`;
- a technician change, when `technicians` maps our logins to ServiceTitan technician ids:
  `POST /dispatch/v2/tenant/{tenant}/appointment-assignments/unassign-technicians`, then
  `.../assign-technicians`.

Auth: an OAuth client-credentials token (`client_id`, `client_secret`, fetched from the
token endpoint, renewed when it expires or is refused) plus the `ST-App-Key` header.

Push-only, and why: the published contract (Job Planning and Dispatch fragments) offers
creating jobs and appointments, rescheduling and (un)assigning, but no operation that reads a
job or an appointment and none that cancels one, and ServiceTitan says subscriptions to its
webhooks are restricted while "V2 webhooks" are developed (no signature scheme published).
So nothing is imported from ServiceTitan, a retry cannot look a job up by our UID, and a
cancelled visit cannot be cancelled there: its technicians are unassigned and the push is
refused with a message naming the job, so dispatch is alerted to cancel it by hand.

The remote id we keep records what ServiceTitan was last told ("J/A/T/start-end": job,
appointment, technician, epoch seconds), so an update sends only what changed.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from html import escape
from typing import Any

import httpx

from plugins.platforms.http import HttpConnector
from plugins.platforms.intake import parse_mapping
from server.errors import InvalidInput
from server.platforms import Grant, OAuth, Op, Rejected, Remote, Transient, Visit

NUMERIC_SETTINGS = ("tenant", "business_unit_id", "job_type_id", "campaign_id", "customer_id", "location_id")
UID_KEY = "fieldcal_uid"
TOKEN_URL = "https://auth.servicetitan.io/connect/token"


def utc(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Pushed:
    """What ServiceTitan holds for a visit, as our remote id records it."""

    job_id: int
    appointment_id: int
    technician_id: int  # 0: none assigned by us
    starts_at: int  # epoch seconds
    ends_at: int

    def remote_id(self) -> str:
        return f"{self.job_id}/{self.appointment_id}/{self.technician_id}/{self.starts_at}-{self.ends_at}"

    @classmethod
    def parse(cls, remote_id: str) -> Pushed:
        try:
            job, appointment, technician, span = remote_id.split("/")
            start, end = span.split("-")
            return cls(int(job), int(appointment), int(technician), int(start), int(end))
        except ValueError as exc:
            raise Rejected(f"servicetitan: {remote_id!r} is not a reference this connector made") from exc


def _mapping(text: str, setting: str, shape: str) -> dict[str, str]:
    try:
        return parse_mapping("servicetitan", setting, text)
    except InvalidInput as exc:
        raise InvalidInput(f"servicetitan: {setting} entries look like {shape}") from exc


class ServiceTitan(HttpConnector):
    name = "servicetitan"
    default_base_url = "https://api.servicetitan.io"
    required_settings = frozenset({"tenant", "business_unit_id", "job_type_id", "campaign_id"})
    optional_settings = frozenset(
        {"priority", "customers", "customer_id", "location_id", "technicians", "application_guid"}
    )
    secret_names = frozenset({"app_key", "client_id", "client_secret"})
    oauth = OAuth(TOKEN_URL, TOKEN_URL, (), pkce=False, grant=Grant.CLIENT_CREDENTIALS)

    @classmethod
    def validate_settings(cls, settings: Mapping[str, str], secrets: Mapping[str, str]) -> None:
        super().validate_settings(settings, secrets)
        for key in NUMERIC_SETTINGS:
            if key in settings and not str(settings[key]).isdigit():
                raise InvalidInput(
                    f"servicetitan: {key} must be ServiceTitan's numeric id, not {settings[key]!r}"
                )
        if ("customer_id" in settings) != ("location_id" in settings):
            raise InvalidInput(
                "servicetitan: set customer_id and location_id together (the default customer)"
            )
        for key, value in _mapping(
            str(settings.get("customers", "")), "customers", "OUR_CUSTOMER_ID=CUSTOMER_ID/LOCATION_ID"
        ).items():
            customer, _, location = value.partition("/")
            if not (key.isdigit() and customer.isdigit() and location.isdigit()):
                raise InvalidInput(
                    f"servicetitan: customers entry {key}={value} must be "
                    "OUR_CUSTOMER_ID=CUSTOMER_ID/LOCATION_ID (numbers)"
                )
        for login, technician in _mapping(
            str(settings.get("technicians", "")), "technicians", "LOGIN=TECHNICIAN_ID"
        ).items():
            if not technician.isdigit():
                raise InvalidInput(f"servicetitan: technician id for {login} must be a number")
        if settings.get("application_guid"):
            try:
                uuid.UUID(str(settings["application_guid"]))
            except ValueError as exc:
                raise InvalidInput("servicetitan: application_guid must be your app's GUID") from exc

    def auth_headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.config.secret('access_token')}",
            "ST-App-Key": self.config.secret("app_key"),
        }

    @property
    def tenant(self) -> str:
        return self.config.setting("tenant")

    def customer_of(self, visit: Visit) -> tuple[int, int]:
        mapped = _mapping(self.config.setting("customers"), "customers", "").get(str(visit.customer_id))
        if mapped:
            customer, _, location = mapped.partition("/")
            return int(customer), int(location)
        if self.config.setting("customer_id"):
            return int(self.config.setting("customer_id")), int(self.config.setting("location_id"))
        raise Rejected(
            f"servicetitan: customer #{visit.customer_id} ({visit.customer_name}) has no ServiceTitan "
            f"customer and location; add {visit.customer_id}=CUSTOMER_ID/LOCATION_ID to the "
            "`customers` setting (or set customer_id and location_id), then `integration retry`"
        )

    def technician_of(self, visit: Visit) -> int:
        mapped = _mapping(self.config.setting("technicians"), "technicians", "")
        return int(mapped.get(visit.technician_login, "0"))

    def job(self, visit: Visit, technician_id: int) -> dict[str, Any]:
        customer, location = self.customer_of(visit)
        appointment: dict[str, Any] = {"start": utc(visit.starts_at), "end": utc(visit.ends_at)}
        if technician_id:
            appointment["technicianIds"] = [technician_id]
        lines = [visit.title, visit.description, visit.location, f"fieldcal visit {visit.uid}"]
        body: dict[str, Any] = {
            "customerId": customer,
            "locationId": location,
            "businessUnitId": int(self.config.setting("business_unit_id")),
            "jobTypeId": int(self.config.setting("job_type_id")),
            "priority": self.config.setting("priority", "Normal"),
            "campaignId": int(self.config.setting("campaign_id")),
            "appointments": [appointment],
            "summary": "<br>".join(escape(line) for line in lines if line.strip()),
        }
        if self.config.setting("application_guid"):
            body["externalData"] = {
                "applicationGuid": self.config.setting("application_guid"),
                "externalData": [{"key": UID_KEY, "value": visit.uid}],
            }
        return body

    def push(self, op: Op, visit: Visit, remote_id: str | None) -> Remote | None:
        technician = self.technician_of(visit)
        span = (int(visit.starts_at.timestamp()), int(visit.ends_at.timestamp()))
        if op == Op.CREATE:
            return Remote(self.create(visit, technician, span).remote_id())
        assert remote_id is not None
        pushed = Pushed.parse(remote_id)
        if op == Op.CANCEL:
            if pushed.technician_id:
                self.assignment("unassign", pushed.appointment_id, pushed.technician_id)
            raise Rejected(
                f"servicetitan: visit {visit.uid} was cancelled, but the published API offers no "
                f"cancel: cancel job {pushed.job_id} in ServiceTitan"
                + (" (its technician was unassigned)" if pushed.technician_id else "")
            )
        if (pushed.starts_at, pushed.ends_at) != span:
            self.request(
                "PATCH",
                f"/jpm/v2/tenant/{self.tenant}/appointments/{pushed.appointment_id}/reschedule",
                json={"start": utc(visit.starts_at), "end": utc(visit.ends_at)},
            )
        if self.config.setting("technicians") and technician != pushed.technician_id:
            if pushed.technician_id:
                self.assignment("unassign", pushed.appointment_id, pushed.technician_id)
            if technician:
                self.assignment("assign", pushed.appointment_id, technician)
        else:
            technician = pushed.technician_id
        return Remote(
            replace(pushed, technician_id=technician, starts_at=span[0], ends_at=span[1]).remote_id()
        )

    def create(self, visit: Visit, technician: int, span: tuple[int, int]) -> Pushed:
        try:
            answer = self.request(
                "POST", f"/jpm/v2/tenant/{self.tenant}/jobs", json=self.job(visit, technician)
            )
        except Transient as exc:
            if isinstance(exc.__cause__, httpx.ReadTimeout | httpx.RemoteProtocolError):
                # sent, answer lost: ServiceTitan may hold the job, and it cannot be looked up
                raise Rejected(
                    f"servicetitan: the answer to creating the job for visit {visit.uid} was lost; "
                    f"look for a job carrying {UID_KEY}={visit.uid} in ServiceTitan before "
                    "`integration retry`"
                ) from exc
            raise
        job = answer.json()
        return Pushed(int(job["id"]), int(job["firstAppointmentId"]), technician, *span)

    def assignment(self, kind: str, appointment_id: int, technician_id: int) -> None:
        self.request(
            "POST",
            f"/dispatch/v2/tenant/{self.tenant}/appointment-assignments/{kind}-technicians",
            json={"jobAppointmentId": appointment_id, "technicianIds": [technician_id]},
        )

    def check(self) -> str:
        """Dispatch's capacity for the next day: an authenticated read the contract offers."""
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        self.request(
            "POST",
            f"/dispatch/v2/tenant/{self.tenant}/capacity",
            json={
                "startsOnOrAfter": utc(now),
                "endsOnOrBefore": utc(now + dt.timedelta(days=1)),
                "businessUnitIds": [int(self.config.setting("business_unit_id"))],
                "skillBasedAvailability": False,
            },
        )
        return f"servicetitan: tenant {self.tenant} reachable"
