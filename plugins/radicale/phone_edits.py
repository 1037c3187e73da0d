"""What a technician's CalDAV client may change on a job, and how each change is applied.

A client sends back the whole event. Only these differences count:
the technician's own ATTENDEE PARTSTAT (accept/decline), DTSTART/DTEND (a
reschedule, overlap rule applies), STATUS:CANCELLED (= decline) and
X-FIELDCAL-JOB-STATUS (job progress). Anything else is ignored, and the
stored rendering is what the client gets back.
"""

from __future__ import annotations

from server import scheduling
from server.context import Context
from server.errors import Conflict, InvalidInput
from server.ical import ParsedObject, as_utc
from server.models import Appointment, JobStatus, PartStat


def _partstat_of(obj: ParsedObject, email: str) -> str | None:
    attendees = obj.main.get("attendee")
    if attendees is None:
        return None
    for attendee in attendees if isinstance(attendees, list) else [attendees]:
        if str(attendee).lower().removeprefix("mailto:") == email.lower():
            return str(attendee.params.get("PARTSTAT", "")).upper() or None
    return None


def apply(ctx: Context, appointment: Appointment, obj: ParsedObject) -> Appointment:
    """Apply a client's edited copy of a job event; returns the appointment as it now is."""
    if obj.uid != appointment.uid:
        raise Conflict(f"This job's UID is {appointment.uid!r}; it cannot be changed.")
    event = obj.main
    technician = appointment.technician
    email = technician.email if technician else ""
    job_status_before = str(appointment.job.status)

    if str(event.get("status", "")).upper() == "CANCELLED" or _partstat_of(obj, email) == "DECLINED":
        return scheduling.decline(ctx, appointment)

    start, end = event.get("dtstart"), event.get("dtend")
    if start is not None:
        starts_at = as_utc(start.dt)
        if end is not None:
            ends_at = as_utc(end.dt)
        elif event.get("duration") is not None:
            ends_at = starts_at + event.get("duration").dt
        else:
            ends_at = starts_at + (appointment.ends_at - appointment.starts_at)
        if (starts_at, ends_at) != (appointment.starts_at, appointment.ends_at):
            scheduling.reschedule(ctx, appointment, starts_at, ends_at)

    partstat = _partstat_of(obj, email)
    if partstat in (PartStat.ACCEPTED, PartStat.TENTATIVE) and partstat != appointment.partstat:
        scheduling.accept(ctx, appointment, PartStat(partstat))

    progress = event.get("x-fieldcal-job-status")
    # Only a status the client changed counts: accepting may itself have moved the job on.
    if progress is not None and str(progress).strip().lower() != job_status_before:
        try:
            status = JobStatus(str(progress).strip().lower())
        except ValueError as exc:
            raise InvalidInput(f"Unknown job status {str(progress)!r}.") from exc
        scheduling.set_status(ctx, appointment, status)
    return appointment
