"""Generated data for bench/reports.py: 100,000 visits, their audit trail and outbox, bulk-inserted.

40 technicians (Berlin and New York, 4 teams), weekday hours 08:00-17:00, leave and
holidays; visits every 2 hours 06:00-18:00 UTC (never overlapping, with a 15 min buffer
and 30 min travel); one job in ten gets a second visit. Audit entries (book, cancel,
on site, completed) and outbox rows are inserted directly with unique stand-in hashes: the
reports read them, nobody verifies this chain. What every report must answer is counted
while generating (`Expected`).
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, insert

from server.db import Database
from server.integrations import PUSH
from server.models import (
    Appointment,
    AuditEntry,
    Customer,
    Integration,
    Job,
    OutboxMessage,
    ServiceType,
    Team,
    TeamMember,
    TimeOff,
    User,
    WorkingHours,
)

TECHNICIANS = 40
TEAMS = 4
CUSTOMERS = 2000
SLOTS_PER_DAY = 7  # 06:00, 08:00, ... 18:00 UTC
ZONES = ("Europe/Berlin", "America/New_York")
CHANNELS = ("api", "web", "cli", "caldav")
BATCH = 5000
START = dt.datetime(2030, 1, 7, tzinfo=dt.UTC)  # a Monday


@dataclass
class Expected:
    visits: int = 0
    live: int = 0  # not cancelled
    cancelled: int = 0
    completed_entries: int = 0
    attended: int = 0  # live visits with an on-site or completed entry
    windows: int = 0  # live visits with an arrival window
    jobs: int = 0
    completed_jobs: int = 0
    outbox: int = 0
    end: dt.datetime = START
    job_visits: dict[int, int] = field(default_factory=dict)


def _bulk(database: Database, table: Table | Any, rows: list[dict[str, Any]]) -> None:
    target = table.__table__ if hasattr(table, "__table__") else table
    for first in range(0, len(rows), BATCH):
        with database.write() as session:
            session.execute(insert(target), rows[first:first + BATCH])


def _people(database: Database) -> list[int]:
    now = START - dt.timedelta(days=30)
    _bulk(database, Team, [{"id": t + 1, "slug": f"team-{t}", "name": f"Team {t}", "road_factor": 1.3,
                            "speed_kmh": 40.0} for t in range(TEAMS)])
    _bulk(database, User, [{"id": n + 1, "login": f"tech{n:02d}", "name": f"Tech {n}",
                            "email": f"tech{n}@bench.test", "role": "technician",
                            "timezone": ZONES[n % 2], "skills": [], "active": True, "created_at": now}
                           for n in range(TECHNICIANS)])
    _bulk(database, TeamMember, [{"team_id": n % TEAMS + 1, "user_id": n + 1} for n in range(TECHNICIANS)])
    _bulk(database, WorkingHours, [{"technician_id": n + 1, "weekday": d, "starts": "08:00", "ends": "17:00"}
                                   for n in range(TECHNICIANS) for d in range(5)])
    leave = [{"technician_id": n + 1, "starts_at": START + dt.timedelta(days=100 + n),
              "ends_at": START + dt.timedelta(days=110 + n), "reason": "leave"} for n in range(TECHNICIANS)]
    holidays = [{"technician_id": None, "starts_at": START + dt.timedelta(days=d),
                 "ends_at": START + dt.timedelta(days=d + 1), "reason": "holiday"}
                for d in range(30, 360, 45)]
    _bulk(database, TimeOff, leave + holidays)
    _bulk(database, ServiceType, [{"id": 1, "slug": "repair", "name": "Repair", "description": "",
                                   "duration_minutes": 60, "buffer_before_minutes": 0,
                                   "buffer_after_minutes": 15, "travel_minutes": 30, "skills": [],
                                   "min_notice_minutes": 0, "horizon_days": 400, "arrival_windows": [],
                                   "window_capacity": 0, "active": True, "remote": False}])
    _bulk(database, Customer, [{"id": c + 1, "name": f"Customer {c}", "email": f"c{c}@bench.test",
                                "phone": "", "timezone": ZONES[c % 2], "created_at": now}
                               for c in range(CUSTOMERS)])
    return list(range(1, TECHNICIANS + 1))


class _Trail:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, at: dt.datetime, channel: str, action: str, appointment_id: int,
            after: dict[str, Any] | None = None) -> None:
        n = len(self.rows)
        self.rows.append({"at": at, "actor": "bench", "channel": channel, "action": action,
                          "entity": "appointment", "entity_id": str(appointment_id), "before": None,
                          "after": after, "request_id": "", "prev_hash": f"{n:064x}",
                          "hash": f"{n + 1:064x}", "key_id": None})


def generate(database: Database, visits: int) -> Expected:
    rng = random.Random(4)
    technicians = _people(database)
    expected = Expected()
    jobs: list[dict[str, Any]] = []
    appointments: list[dict[str, Any]] = []
    trail = _Trail()
    job_status: dict[int, str] = {}
    per_day = len(technicians) * SLOTS_PER_DAY
    for k in range(visits):
        technician = technicians[k % len(technicians)]
        slot = (k // len(technicians)) % SLOTS_PER_DAY
        day = k // per_day
        starts = START + dt.timedelta(days=day, hours=6 + 2 * slot)
        ends = starts + dt.timedelta(hours=1)
        if k % 10 == 9 and jobs:
            job_id = jobs[-1]["id"]
        else:
            job_id = len(jobs) + 1
            created = starts - dt.timedelta(hours=rng.randrange(2, 240))
            jobs.append({"id": job_id, "customer_id": rng.randrange(CUSTOMERS) + 1, "site_id": None,
                         "title": "Service", "problem": "", "priority": "normal", "source": "phone",
                         "status": "scheduled", "created_at": created, "updated_at": created})
        cancelled = rng.random() < 0.08
        window = rng.random() < 0.3
        appointment_id = k + 1
        appointments.append({
            "id": appointment_id, "uid": f"bench-{k}@fieldcal", "job_id": job_id,
            "technician_id": technician, "starts_at": starts, "ends_at": ends,
            "window_start": starts - dt.timedelta(minutes=30) if window else None,
            "window_end": starts + dt.timedelta(minutes=30) if window else None,
            "blocked_from": starts, "blocked_until": ends + dt.timedelta(minutes=45),
            "service_type_id": 1, "status": "cancelled" if cancelled else "confirmed",
            "partstat": "ACCEPTED", "sequence": 0, "created_at": starts - dt.timedelta(days=3),
            "updated_at": starts})
        channel = CHANNELS[k % len(CHANNELS)]
        trail.add(starts - dt.timedelta(days=3), channel, "appointment.book", appointment_id)
        expected.visits += 1
        if cancelled:
            expected.cancelled += 1
            trail.add(starts - dt.timedelta(days=1), channel, "appointment.cancel", appointment_id)
            continue
        expected.live += 1
        expected.windows += window
        expected.job_visits[job_id] = expected.job_visits.get(job_id, 0) + 1
        roll = rng.random()
        if roll < 0.9:
            expected.attended += 1
            arrival = starts + dt.timedelta(minutes=rng.randrange(-40, 40))
            trail.add(arrival, "caldav", "appointment.status", appointment_id, {"job_status": "on_site"})
            if roll < 0.75:
                trail.add(ends, "caldav", "appointment.status", appointment_id, {"job_status": "completed"})
                expected.completed_entries += 1
                job_status[job_id] = "completed"
        expected.end = max(expected.end, ends)
    for job in jobs:
        job["status"] = job_status.get(job["id"], job["status"])
    expected.jobs = len(jobs)
    expected.completed_jobs = sum(1 for j in jobs if j["status"] == "completed"
                                  and expected.job_visits.get(j["id"], 0) > 0)
    _bulk(database, Job, jobs)
    _bulk(database, Appointment, appointments)
    _bulk(database, AuditEntry, trail.rows)
    _bulk(database, Integration, [{"id": 1, "platform": "slack", "name": "Bench", "scope": "all",
                                   "settings": {}, "secrets": "", "status": "active",
                                   "created_by": "bench", "created_at": START, "last_error": "",
                                   "sync_cursor": ""}])
    statuses = ("sent", "sent", "sent", "pending", "dead")
    outbox = [{"kind": PUSH, "payload": {"integration_id": 1, "appointment_id": n + 1},
               "idempotency_key": f"push:1:{n}", "status": statuses[n % len(statuses)],
               "attempts": 1 + n % 3, "next_attempt_at": START, "last_error": "",
               "created_at": START + dt.timedelta(minutes=n)} for n in range(visits // 2)]
    _bulk(database, OutboxMessage, outbox)
    expected.outbox = len(outbox)
    return expected
