"""Task boards and a CRM's activities: each visit as a task that moves with the job.

- `trello`: a card (fields as query parameters); a list per job status (`list_<status>`
  settings, falling back to `list_id`), so the card moves when the job does.
- `clickup`: a task in `list_id`; `due_date`/`start_date` as integer Unix milliseconds; the
  task's status follows the job through `status_<status>` settings.
- `asana`: a task in a project (`project_<team slug>` or `project`), `due_at`/`start_at` in UTC,
  our UID as its `external.gid`; completed when the job is done or the visit cancelled.
- `pipedrive`: an activity with `due_date`, `due_time` (HH:MM, UTC) and `duration` (HH:MM);
  marked done when the job is done or the visit cancelled.

Push-only: the published contracts cover creating and updating these objects; nothing a
person changes there is read back (the job's status is ours).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar
from urllib.parse import quote

from plugins.platforms.http import HttpConnector
from server.platforms import Op, Remote, Visit

FINISHED = ("completed", "cancelled")


def job_state(visit: Visit) -> str:
    return "cancelled" if visit.status == "cancelled" else visit.job_status


def text_of(visit: Visit) -> str:
    parts = [
        visit.note,
        visit.description,
        visit.location,
        f"Customer: {visit.customer_name} {visit.customer_phone}",
        f"Technician: {visit.technician_name or 'unassigned'}",
        f"fieldcal visit {visit.uid}",
    ]
    return "\n".join(p for p in parts if p.strip())


def title_of(visit: Visit) -> str:
    return f"[cancelled] {visit.title}" if visit.status == "cancelled" else visit.title


class Trello(HttpConnector):
    name = "trello"
    default_base_url = "https://api.trello.com/1"
    required_settings = frozenset({"list_id"})
    optional_settings = frozenset(
        {f"list_{s}" for s in ("new", "scheduled", "dispatched", "en_route", "on_site", *FINISHED)}
    )
    secret_names = frozenset({"api_key", "api_token"})

    def auth_params(self) -> dict[str, str]:
        return {"key": self.config.secret("api_key"), "token": self.config.secret("api_token")}

    def card(self, visit: Visit) -> dict[str, str]:
        state = job_state(visit)
        return {
            "name": title_of(visit),
            "desc": text_of(visit),
            "due": visit.starts_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
            "idList": self.config.setting(f"list_{state}") or self.config.setting("list_id"),
            "dueComplete": "true" if state == "completed" else "false",
        }

    def push(self, op: Op, visit: Visit, remote_id: str | None) -> Remote | None:
        if op == Op.CREATE:
            created = self.request("POST", "/cards", params={**self.card(visit), **self.auth_params()}).json()
            return Remote(str(created["id"]))
        assert remote_id is not None
        fields = self.card(visit)
        if op == Op.CANCEL and not self.config.setting("list_cancelled"):
            fields["closed"] = "true"  # no list for cancelled visits: archive the card
        self.request("PUT", f"/cards/{quote(remote_id, safe='')}", params={**fields, **self.auth_params()})
        return Remote(remote_id)


class ClickUp(HttpConnector):
    name = "clickup"
    default_base_url = "https://api.clickup.com/api"
    required_settings = frozenset({"list_id"})
    optional_settings = frozenset(
        {f"status_{s}" for s in ("new", "scheduled", "dispatched", "en_route", "on_site", *FINISHED)}
    )
    secret_names = frozenset({"api_token"})

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": self.config.secret("api_token")}

    def task(self, visit: Visit) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": title_of(visit),
            "description": text_of(visit),
            "start_date": int(visit.starts_at.timestamp() * 1000),
            "start_date_time": True,
            "due_date": int(visit.ends_at.timestamp() * 1000),
            "due_date_time": True,
        }
        status = self.config.setting(f"status_{job_state(visit)}")
        if status:
            body["status"] = status
        return body

    def push(self, op: Op, visit: Visit, remote_id: str | None) -> Remote | None:
        if op == Op.CREATE:
            list_id = quote(self.config.setting("list_id"), safe="")
            created = self.request("POST", f"/v2/list/{list_id}/task", json=self.task(visit)).json()
            return Remote(str(created["id"]))
        assert remote_id is not None
        body = self.task(visit)
        if op == Op.CANCEL and "status" not in body:
            body["archived"] = True
        self.request("PUT", f"/v2/task/{quote(remote_id, safe='')}", json=body)
        return Remote(remote_id)


class Asana(HttpConnector):
    name = "asana"
    default_base_url = "https://app.asana.com/api/1.0"
    optional_settings = frozenset({"project", "workspace"})
    secret_names = frozenset({"access_token"})
    team_prefix: ClassVar[str] = "project_"

    @classmethod
    def validate_settings(cls, settings: Any, secrets: Any) -> None:
        team_projects = {k for k in settings if k.startswith(cls.team_prefix)}
        super().validate_settings({k: v for k, v in settings.items() if k not in team_projects}, secrets)

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.secret('access_token')}"}

    def project(self, visit: Visit) -> str:
        for slug in visit.team_slugs:
            if self.config.setting(f"{self.team_prefix}{slug}"):
                return self.config.setting(f"{self.team_prefix}{slug}")
        return self.config.setting("project")

    def task(self, visit: Visit) -> dict[str, Any]:
        return {
            "name": title_of(visit),
            "notes": text_of(visit),
            "start_at": visit.starts_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
            "due_at": visit.ends_at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
            "completed": job_state(visit) in FINISHED,
        }

    def push(self, op: Op, visit: Visit, remote_id: str | None) -> Remote | None:
        if op == Op.CREATE:
            data = {**self.task(visit), "external": {"gid": visit.uid, "data": str(visit.appointment_id)}}
            project = self.project(visit)
            if project:
                data["projects"] = [project]
            elif self.config.setting("workspace"):
                data["workspace"] = self.config.setting("workspace")
            created = self.request("POST", "/tasks", json={"data": data}).json()
            return Remote(str(created["data"]["gid"]))
        assert remote_id is not None
        self.request("PUT", f"/tasks/{quote(remote_id, safe='')}", json={"data": self.task(visit)})
        return Remote(remote_id)


class Pipedrive(HttpConnector):
    name = "pipedrive"
    default_base_url = "https://api.pipedrive.com/v1"
    optional_settings = frozenset({"activity_type", "user_id"})
    secret_names = frozenset({"api_token"})

    def activity(self, visit: Visit) -> dict[str, Any]:
        start = visit.starts_at.astimezone(dt.UTC)
        minutes = int((visit.ends_at - visit.starts_at).total_seconds() // 60)
        body: dict[str, Any] = {
            "subject": title_of(visit),
            "type": self.config.setting("activity_type", "meeting"),
            "due_date": start.strftime("%Y-%m-%d"),
            "due_time": start.strftime("%H:%M"),
            "duration": f"{minutes // 60:02d}:{minutes % 60:02d}",
            "location": visit.location,
            "public_description": visit.description,
            "note": text_of(visit),
            "done": 1 if job_state(visit) in FINISHED else 0,
            "busy_flag": visit.status != "cancelled",
        }
        if self.config.setting("user_id").isdigit():
            body["user_id"] = int(self.config.setting("user_id"))
        return body

    def push(self, op: Op, visit: Visit, remote_id: str | None) -> Remote | None:
        auth = {"api_token": self.config.secret("api_token")}
        if op == Op.CREATE:
            created = self.request("POST", "/activities", params=auth, json=self.activity(visit)).json()
            return Remote(str(created["data"]["id"]))
        assert remote_id is not None
        self.request(
            "PUT", f"/activities/{quote(remote_id, safe='')}", params=auth, json=self.activity(visit)
        )
        return Remote(remote_id)
