"""How a visit is going, as its technician reports it from the day page.

The day page (a signed `day` link) has one button per step, and each step is one
domain call run as the technician through the channel `day-link`:
**On my way** → **On site** → **Done** (with a short note), or **Can't make it**,
which hands the visit back to the unassigned tray and alerts dispatch (email to the
dispatch address and every integration that takes alerts). A visit's progress is
`Appointment.progress` (a `JobStatus`: en_route, on_site, completed); the job's
status follows the latest report, as it does for a status set from a phone calendar.
"""

from __future__ import annotations

import datetime as dt
import math
from enum import StrEnum
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from server import audit, integrations, outbox
from server.actions import Action
from server.actors import Actor
from server.context import Context, operation
from server.errors import Conflict, Forbidden, InvalidInput
from server.models import Appointment, AppointmentStatus, JobStatus, PartStat, utcnow
from server.scheduling import travel
from server.scheduling.appointments import changed, snapshot
from server.text import clean_text

CHANNEL = "day-link"
DISPATCH_ALERT = "dispatch.alert"  # outbox kind: the email that tells dispatch
NOTE_LIMIT = 1000
ETA_ROUNDING_MIN = 5


class Step(StrEnum):
    """A button of the day page (the value is its URL segment)."""

    ON_MY_WAY = "on-my-way"
    ON_SITE = "on-site"
    DONE = "done"
    CANT_MAKE_IT = "cant-make-it"


REPORTS = {Step.ON_MY_WAY: JobStatus.EN_ROUTE, Step.ON_SITE: JobStatus.ON_SITE,
           Step.DONE: JobStatus.COMPLETED}
ACTIONS = {Step.ON_MY_WAY: Action.APPOINTMENT_ON_MY_WAY, Step.ON_SITE: Action.APPOINTMENT_ON_SITE,
           Step.DONE: Action.APPOINTMENT_DONE}
FOLLOWS: dict[JobStatus, frozenset[JobStatus | None]] = {
    JobStatus.EN_ROUTE: frozenset({None}),
    JobStatus.ON_SITE: frozenset({None, JobStatus.EN_ROUTE}),
    JobStatus.COMPLETED: frozenset({JobStatus.ON_SITE}),
}
WORDS = {None: "not started", JobStatus.EN_ROUTE: "on the way", JobStatus.ON_SITE: "on site",
         JobStatus.COMPLETED: "done"}
GIVE_BACK = frozenset({None, JobStatus.EN_ROUTE})  # "can't make it" before arriving only


def actor(login: str, request_id: str = "") -> Actor:
    """The technician acting through their day link."""
    return Actor(name=login, channel=CHANNEL, role="technician", request_id=request_id)


def steps(appointment: Appointment) -> tuple[Step, ...]:
    """The buttons a visit offers now, in order."""
    if appointment.status == AppointmentStatus.CANCELLED or appointment.technician_id is None:
        return ()
    return {
        None: (Step.ON_MY_WAY, Step.CANT_MAKE_IT),
        JobStatus.EN_ROUTE: (Step.ON_SITE, Step.CANT_MAKE_IT),
        JobStatus.ON_SITE: (Step.DONE,),
    }.get(appointment.progress, ())


def _theirs(ctx: Context, appointment: Appointment) -> None:
    technician = appointment.technician
    if technician is None or (technician.login != ctx.actor.name and not ctx.actor.is_dispatcher):
        raise Forbidden(f"Visit #{appointment.id} is not assigned to {ctx.actor.name}.")
    if appointment.status == AppointmentStatus.CANCELLED:
        raise Conflict(f"Visit #{appointment.id} is cancelled.")


def _note(text: str) -> str:
    note = clean_text(text)
    if len(note) > NOTE_LIMIT:
        raise InvalidInput(f"Keep the note to {NOTE_LIMIT} characters (it has {len(note)}).")
    return note


def _report(ctx: Context, appointment: Appointment, step: Step, note: str = "") -> Appointment:
    _theirs(ctx, appointment)
    to = REPORTS[step]
    if appointment.progress == to:
        return appointment  # a second tap: nothing new to tell
    if appointment.progress not in FOLLOWS[to]:
        raise Conflict(f"Visit #{appointment.id} is {WORDS[appointment.progress]}; "
                       f"it cannot be marked {WORDS[to]} now.")
    before = snapshot(appointment)
    now = utcnow()
    appointment.progress, appointment.progress_at = to, now
    if note:
        appointment.progress_note = note
    appointment.job.status, appointment.job.updated_at = to, now
    changed(ctx, appointment, ACTIONS[step], before)
    if note:
        audit.record(ctx.session, ctx.actor, Action.APPOINTMENT_NOTE, "appointment", appointment.id,
                     after={"note": note})
    return appointment


@operation
def on_my_way(ctx: Context, appointment: Appointment) -> Appointment:
    """The technician sets out; the customer is emailed (with an estimated arrival if known)."""
    return _report(ctx, appointment, Step.ON_MY_WAY)


@operation
def on_site(ctx: Context, appointment: Appointment) -> Appointment:
    return _report(ctx, appointment, Step.ON_SITE)


@operation
def done(ctx: Context, appointment: Appointment, note: str = "") -> Appointment:
    """The visit's work is finished; `note` (optional) says what was done or is still open."""
    return _report(ctx, appointment, Step.DONE, _note(note))


@operation
def cant_make_it(ctx: Context, appointment: Appointment, reason: str = "") -> Appointment:
    """The technician cannot come: the visit goes back to the unassigned tray, dispatch is alerted."""
    _theirs(ctx, appointment)
    if appointment.progress not in GIVE_BACK:
        raise Conflict(f"Visit #{appointment.id} is {WORDS[appointment.progress]} already; "
                       "call dispatch instead.")
    reason = _note(reason)
    technician = appointment.technician
    assert technician is not None  # checked by _theirs
    before = snapshot(appointment)
    freed = (technician, appointment.starts_at, appointment.ends_at)
    appointment.technician_id = None
    appointment.partstat = PartStat.NEEDS_ACTION
    appointment.progress, appointment.progress_at = None, None
    job = appointment.job
    if job.status in (JobStatus.DISPATCHED, JobStatus.EN_ROUTE):
        job.status, job.updated_at = JobStatus.SCHEDULED, utcnow()
    changed(ctx, appointment, Action.APPOINTMENT_CANT_MAKE_IT, before, freed=freed)
    if reason:
        audit.record(ctx.session, ctx.actor, Action.APPOINTMENT_NOTE, "appointment", appointment.id,
                     after={"note": reason})
    local = appointment.starts_at.astimezone(ZoneInfo(technician.timezone))
    text = (f"{technician.name} can't make it: visit #{appointment.id} “{job.title}” for "
            f"{job.customer.name}, {local:%a %d %b %H:%M} ({technician.timezone}), is back in the "
            "unassigned tray." + (f" Reason: {reason}" if reason else ""))
    key = f"cant-make-it:{appointment.id}:{appointment.sequence}"
    integrations.queue_alert(ctx.session, text, key)
    outbox.enqueue(ctx.session, DISPATCH_ALERT,
                   {"appointment_id": appointment.id, "technician": technician.login, "text": text},
                   idempotency_key=f"{DISPATCH_ALERT}:{key}")
    return appointment


def estimated_arrival(session: Session, appointment: Appointment) -> dt.datetime | None:
    """When a technician on the way should arrive: the drive from the previous visit's site,
    counted from the moment they set out (rounded up to 5 minutes). None unless both sites
    have coordinates."""
    technician = appointment.technician
    if (appointment.progress != JobStatus.EN_ROUTE or appointment.progress_at is None
            or technician is None):
        return None
    here = travel.visit_point(appointment)
    previous, _ = travel.neighbours(session, technician, appointment.starts_at, appointment.ends_at,
                                    exclude_id=appointment.id)
    there = travel.visit_point(previous) if previous is not None else None
    if here is None or there is None:
        return None
    minutes = travel.model_for(technician).minutes(there, here)
    arrival = appointment.progress_at + dt.timedelta(minutes=minutes)
    step = ETA_ROUNDING_MIN * 60
    return dt.datetime.fromtimestamp(math.ceil(arrival.timestamp() / step) * step, dt.UTC)
