"""How the CLI shows rows: a JSON object (with an `id`) and a one-line text form."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from server import audit
from server.cli.common import iso
from server.models import Appointment, AuditEntry, Credential, Customer, Job, Team, User


def user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "login": user.login,
        "name": user.name,
        "email": user.email,
        "role": user.role,
        "timezone": user.timezone,
        "skills": list(user.skills or []),
        "teams": sorted(team.slug for team in user.teams),
        "active": user.active,
    }


def user_line(user: User) -> str:
    teams = ", ".join(sorted(team.slug for team in user.teams)) or "-"
    skills = ", ".join(user.skills or []) or "-"
    return (f"#{user.id:<4} {user.login:<12} {user.role:<10} {user.name} <{user.email}>  "
            f"{user.timezone}  teams: {teams}  skills: {skills}"
            + ("" if user.active else "  [inactive]"))


def team_json(team: Team) -> dict[str, Any]:
    return {"id": team.id, "slug": team.slug, "name": team.name,
            "members": sorted(member.login for member in team.members)}


def team_line(team: Team) -> str:
    members = ", ".join(sorted(member.login for member in team.members)) or "no members"
    return f"#{team.id:<4} {team.slug:<14} {team.name}  ({members})"


def credential_json(credential: Credential) -> dict[str, Any]:
    return {
        "id": credential.id,
        "login": credential.user.login,
        "label": credential.label,
        "created_at": iso(credential.created_at),
        "last_used_at": iso(credential.last_used_at),
        "revoked_at": iso(credential.revoked_at),
    }


def credential_line(credential: Credential) -> str:
    state = f"revoked {iso(credential.revoked_at)}" if credential.revoked_at else "active"
    used = iso(credential.last_used_at) or "never"
    return (f"#{credential.id:<4} {credential.label:<16} created {iso(credential.created_at)}  "
            f"last used {used}  {state}")


def customer_json(customer: Customer) -> dict[str, Any]:
    return {
        "id": customer.id,
        "name": customer.name,
        "email": customer.email,
        "phone": customer.phone,
        "timezone": customer.timezone,
        "sites": [
            {"id": site.id, "address": site.address, "postcode": site.postcode,
             "country": site.country, "latitude": site.latitude, "longitude": site.longitude,
             "compressor_make": site.compressor_make, "compressor_model": site.compressor_model,
             "compressor_serial": site.compressor_serial}
            for site in customer.sites
        ],
    }


def customer_line(customer: Customer) -> str:
    site = customer.sites[0] if customer.sites else None
    where = site.address.replace("\n", ", ") if site else "no site"
    if site and site.postcode:
        where += f" [{site.country} {site.postcode}]"
    machine = " ".join(p for p in (site.compressor_make, site.compressor_model) if p) if site else ""
    return f"#{customer.id:<4} {customer.name}  {where}" + (f"  [{machine}]" if machine else "")


def job_json(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "customer_id": job.customer_id,
        "customer": job.customer.name,
        "site_id": job.site_id,
        "title": job.title,
        "problem": job.problem,
        "priority": job.priority,
        "source": job.source,
        "status": job.status,
    }


def job_line(job: Job) -> str:
    return (f"#{job.id:<4} {job.status:<10} {job.priority:<7} {job.title} "
            f"— {job.customer.name} (customer #{job.customer_id})")


def appointment_json(appointment: Appointment) -> dict[str, Any]:
    job = appointment.job
    return {
        "id": appointment.id,
        "uid": appointment.uid,
        "job_id": job.id,
        "title": job.title,
        "customer_id": job.customer_id,
        "customer": job.customer.name,
        "technician": appointment.technician.login if appointment.technician else None,
        "starts_at": iso(appointment.starts_at),
        "ends_at": iso(appointment.ends_at),
        "window_start": iso(appointment.window_start),
        "window_end": iso(appointment.window_end),
        "status": appointment.status,
        "partstat": appointment.partstat,
        "job_status": job.status,
        "sequence": appointment.sequence,
    }


def local_span(start: dt.datetime, end: dt.datetime, zone_name: str) -> str:
    zone = ZoneInfo(zone_name)
    local_start, local_end = start.astimezone(zone), end.astimezone(zone)
    end_text = (f"{local_end:%H:%M}" if local_end.date() == local_start.date()
                else f"{local_end:%Y-%m-%d %H:%M}")
    return f"{local_start:%a %Y-%m-%d %H:%M}–{end_text} {zone_name}"


def appointment_line(appointment: Appointment) -> str:
    technician = appointment.technician
    zone_name = technician.timezone if technician else appointment.job.customer.timezone
    who = technician.login if technician else "(unassigned)"
    return (f"#{appointment.id:<4} {local_span(appointment.starts_at, appointment.ends_at, zone_name)}"
            f"  {who:<12} {appointment.status}/{appointment.partstat}  job #{appointment.job_id} "
            f"{appointment.job.title} — {appointment.job.customer.name}")


def audit_json(entry: AuditEntry, *, chain: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {"id": entry.id, **audit.content(entry), "at": iso(entry.at)}
    if chain:
        data.update(prev_hash=entry.prev_hash, hash=entry.hash, key_id=entry.key_id)
    return data


def audit_line(entry: AuditEntry) -> str:
    before, after = entry.before or {}, entry.after or {}
    changed = [
        f"{key}: {before.get(key)} → {after.get(key)}"
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]
    detail = "; ".join(changed) if entry.before is not None else ", ".join(
        f"{key}={value}" for key, value in sorted(after.items())
    )
    return f"{iso(entry.at)}  {entry.channel}:{entry.actor:<12} {entry.action:<26} {detail}"
