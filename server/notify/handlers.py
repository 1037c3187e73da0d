"""Outbox handlers: which email goes to whom for each change, and sending it.

Two steps, each an outbox message of its own:

1. `appointment.changed` / `appointment.reminder` (database only, no network):
   decide the recipients, compose each message once and queue it as an `email`
   row whose idempotency key names (appointment, SEQUENCE, METHOD, recipient).
   The finished message is stored in that row, so a retry sends the same bytes
   with the same Message-ID, and two changes that leave the same state to tell
   queue one message, not two.
2. `email`: hand the stored message to the SMTP server. Failures are retried by
   the worker with backoff; a recipient refused with 5xx is dead-lettered.

What is told (a self-booking hold, its expiry, and any change to a visit that has
already ended tell nobody):
- the customer (if they have an address): REQUEST when a visit is confirmed
  (booked confirmed, or a hold confirmed), moved, given another technician, or
  the technician is on the way; CANCEL when a visit they were told of is cancelled.
- technicians: REQUEST when a visit is assigned to them or moved/changed while
  theirs; CANCEL when it is cancelled, reassigned away or declined. Their own
  answers (accept, job status) are not mailed back: their phone already has them.
Every message renders the visit as it is when composed, with its current
SEQUENCE, so a late message never undoes a newer one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from server import integrations, outbox
from server.actions import PROGRESS_ACTIONS, Action, AppointmentChange, AppointmentSnapshot, MalformedRecord
from server.actors import Actor
from server.config import Settings
from server.context import Context
from server.db import Database
from server.errors import InvalidInput
from server.intake.requests import ACKNOWLEDGE
from server.integrations import VIDEO_LINK
from server.links import LinkSigner
from server.models import (
    Appointment,
    AppointmentStatus,
    Job,
    JobStatus,
    OutboxMessage,
    SentMail,
    ShareLink,
    User,
    utcnow,
)
from server.notify import acknowledge, alerts, imip, video
from server.notify.imip import Letter, Method
from server.notify.smtp import SmtpTarget
from server.scheduling import progress
from server.scheduling.booking import manage_link
from server.worker import Delivery, Handler, PermanentFailure, RetryLater

log = logging.getLogger("fieldcal.notify")

CHANGED = AppointmentChange.KIND
REMINDER = "appointment.reminder"
EMAIL = "email"

ACTOR = Actor(name="notify", channel="worker", role="system")
CUSTOMER = "customer"
VIDEO_RECHECK = dt.timedelta(seconds=30)

CUSTOMER_CHANGES = {
    Action.APPOINTMENT_BOOK: "confirmed",
    Action.APPOINTMENT_CONFIRM: "confirmed",
    Action.APPOINTMENT_RESCHEDULE: "moved",
    Action.APPOINTMENT_REASSIGN: "updated",
}
TECHNICIANS_NOT_TOLD = {Action.APPOINTMENT_ACCEPT, Action.APPOINTMENT_HOLD_EXPIRE, *PROGRESS_ACTIONS}


@dataclass(frozen=True)
class Mail:
    """One decision: tell `to` (CUSTOMER or a technician's login) with `method`."""

    to: str
    method: Method
    change: str  # a headline of imip.CUSTOMER_HEADLINES / TECHNICIAN_HEADLINES


def _customer_sees(snap: AppointmentSnapshot | None) -> bool:
    return snap is not None and snap.status == AppointmentStatus.CONFIRMED


def _technician_sees(status: str | None, self_booked: bool) -> bool:
    """Confirmed visits, and tentative ones a dispatcher pencilled in (not a customer's hold)."""
    return status == AppointmentStatus.CONFIRMED or (
        status == AppointmentStatus.TENTATIVE and not self_booked)


def plan(appointment: Appointment, change: AppointmentChange, now: dt.datetime) -> list[Mail]:
    """Who hears of one `appointment.changed` row, and how.

    Nobody hears of a visit that has ended by the time the message is composed
    (records of past work, a late worker): an invitation or a cancellation for
    something that is over only confuses.
    """
    action, before, after = change.action, change.before, change.after
    if action is Action.APPOINTMENT_HOLD_EXPIRE or appointment.ends_at <= now:
        return []
    mails: list[Mail] = []
    cancelled = appointment.status == AppointmentStatus.CANCELLED

    if cancelled:
        if _customer_sees(before) or _customer_sees(after):
            mails.append(Mail(CUSTOMER, Method.CANCEL, "cancelled"))
    elif appointment.status == AppointmentStatus.CONFIRMED and _customer_sees(after):
        headline = CUSTOMER_CHANGES.get(action)
        if action in PROGRESS_ACTIONS:
            on_the_way = JobStatus.EN_ROUTE
            if (after.job_status == on_the_way and (before is None or before.job_status != on_the_way)
                    and appointment.progress == on_the_way):  # not if they gave it back since
                headline = "on_the_way"
        if headline is not None:
            mails.append(Mail(CUSTOMER, Method.REQUEST, headline))

    if action in TECHNICIANS_NOT_TOLD:
        return mails
    self_booked = appointment.booking_key is not None
    current = (appointment.technician.login if appointment.technician is not None and not cancelled
               and _technician_sees(appointment.status, self_booked) else None)
    was = before.technician if before is not None and _technician_sees(before.status, self_booked) else None
    new = after.technician if _technician_sees(after.status, self_booked) else None
    moved = before is not None and (before.starts_at, before.ends_at) != (after.starts_at, after.ends_at)
    for login in dict.fromkeys(x for x in (was, new) if x):
        if login == current:
            headline = "assigned" if login != was else ("moved" if moved else "updated")
            mails.append(Mail(login, Method.REQUEST, headline))
        else:
            mails.append(Mail(login, Method.CANCEL, "cancelled" if cancelled else "removed"))
    return mails


@dataclass(frozen=True)
class Draft:
    """A message before it has its Message-ID (which comes from its outbox key)."""

    recipient: str
    name: str
    notice: imip.Notice
    calendar: str
    method: Method | None


def _digest(text: str) -> str:
    return hashlib.sha256(text.lower().encode("utf-8")).hexdigest()[:16]


@dataclass
class Notifier:
    settings: Settings
    database: Database
    signer: LinkSigner
    smtp: SmtpTarget | None = None
    clock: Callable[[], dt.datetime] = utcnow

    @classmethod
    def from_settings(cls, settings: Settings, database: Database) -> Notifier:
        smtp = SmtpTarget.parse(settings.smtp_url) if settings.smtp_url else None
        return cls(settings, database, LinkSigner(settings.require_secret_keys()), smtp)

    def handlers(self) -> dict[str, Handler]:
        """Composing always runs; sending only with an SMTP server (else `email` rows wait)."""
        handlers: dict[str, Handler] = {CHANGED: self.on_changed, REMINDER: self.on_reminder,
                                        ACKNOWLEDGE: self.on_acknowledge, VIDEO_LINK: self.on_video_link,
                                        progress.DISPATCH_ALERT: self.on_dispatch_alert}
        if self.smtp is not None:
            handlers[EMAIL] = self.on_email
        return handlers

    # -- step 1: compose and queue -------------------------------------------------------

    def on_changed(self, delivery: Delivery) -> None:
        with self._context() as ctx:
            appointment = self._appointment(ctx.session, delivery)
            try:
                change = AppointmentChange.from_payload(delivery.payload)
            except MalformedRecord as exc:
                raise PermanentFailure(str(exc)) from exc
            for mail in plan(appointment, change, self.clock()):
                draft = self._draft(ctx, appointment, mail)
                if draft is not None:
                    key = (f"{EMAIL}:{appointment.id}:{appointment.sequence}:{mail.method.value}:"
                           f"{_digest(draft.recipient)}")
                    self._queue(ctx.session, draft, key, appointment, delivery)

    def on_reminder(self, delivery: Delivery) -> None:
        with self._context() as ctx:
            appointment = self._appointment(ctx.session, delivery)
            payload = delivery.payload
            customer = appointment.job.customer
            if (appointment.status != AppointmentStatus.CONFIRMED
                    or appointment.starts_at.isoformat() != payload.get("starts_at")
                    or appointment.starts_at <= self.clock() or not customer.email):
                log.info("reminder %s for appointment %s no longer applies (cancelled, moved or past)",
                         delivery.id, appointment.id)
                return
            manage_url = self._manage_url(ctx, appointment)
            join = integrations.join_url(ctx.session, appointment.id)
            notice = imip.customer_notice(appointment, "reminder", manage_url,
                                          business_phone=self.settings.business_phone,
                                          business_email=self.settings.business_email, video_url=join)
            event = imip.customer_event(appointment, self.settings.organizer, manage_url, join)
            draft = Draft(customer.email, customer.name, notice, imip.calendar_text(event, None), None)
            self._queue(ctx.session, draft, f"{EMAIL}:{delivery.idempotency_key}", appointment, delivery)

    def on_acknowledge(self, delivery: Delivery) -> None:
        """Compose a service request's acknowledgement and queue it as an `email` row."""
        payload = delivery.payload
        with self._context() as ctx:
            job = ctx.session.get(Job, payload.get("job_id")) if isinstance(
                payload.get("job_id"), int) else None
            link = ctx.session.get(ShareLink, payload.get("link_id")) if isinstance(
                payload.get("link_id"), int) else None
            recipient = str(payload.get("to") or "")
            if job is None or link is None or not recipient:
                raise PermanentFailure(f"acknowledgement {delivery.id} names no job, link or address")
            key = acknowledge.job_message_key(job.id)
            if ctx.session.scalars(select(OutboxMessage.id)
                                   .where(OutboxMessage.idempotency_key == key)).first():
                return
            url = f"{self.settings.base_url}/s/{self.signer.dumps(link)}"
            sender = self.settings.sender
            message = acknowledge.compose(job, url, sender=sender, recipient=recipient,
                                          name=str(payload.get("name") or ""), now=self.clock())
            outbox.enqueue(ctx.session, EMAIL, {
                "from": sender, "to": recipient, "subject": str(message["Subject"]),
                "method": None, "message_id": str(message["Message-ID"]), "job_id": job.id,
                "source": delivery.idempotency_key, "message": message.as_string(),
            }, idempotency_key=key)
            ctx.session.add(SentMail(message_id=str(message["Message-ID"]), job_id=job.id,
                                     recipient=recipient))

    def on_video_link(self, delivery: Delivery) -> None:
        """A remote visit's meeting link arrived: a follow-up, unless the customer's messages
        already carry it or none has told them of the visit yet (see server.notify.video)."""
        with self._context() as ctx:
            appointment = self._appointment(ctx.session, delivery)
            customer = appointment.job.customer
            url = integrations.join_url(ctx.session, appointment.id)
            if (appointment.status != AppointmentStatus.CONFIRMED or appointment.ends_at <= self.clock()
                    or not customer.email or not url):
                return
            said = video.told(ctx.session, appointment, customer.email, url)
            if said is video.Told.NOT_YET and video.change_unfinished(ctx.session, appointment):
                raise RetryLater(f"visit {appointment.id}: its change is still being composed", VIDEO_RECHECK)
            if said is not video.Told.WITHOUT_LINK:
                return
            draft = self._draft(ctx, appointment, Mail(CUSTOMER, Method.REQUEST, "video_link"))
            if draft is not None:
                key = (f"{EMAIL}:{appointment.id}:{appointment.sequence}:video:{_digest(url)}:"
                       f"{_digest(customer.email)}")
                self._queue(ctx.session, draft, key, appointment, delivery)

    def on_dispatch_alert(self, delivery: Delivery) -> None:
        """Compose the email that tells dispatch (e.g. a technician can't make it) and queue it."""
        payload = delivery.payload
        text = str(payload.get("text") or "")
        if not text:
            raise PermanentFailure(f"dispatch alert {delivery.id} has no text")
        with self._context() as ctx:
            key = f"{EMAIL}:{delivery.idempotency_key}"
            if ctx.session.scalars(select(OutboxMessage.id)
                                   .where(OutboxMessage.idempotency_key == key)).first():
                return
            sender, recipient = self.settings.sender, self.settings.organizer
            url = f"{self.settings.base_url}/console/board"
            message = alerts.compose(text, url, sender=sender, recipient=recipient,
                                     message_id=imip.message_id(key, sender), now=self.clock())
            outbox.enqueue(ctx.session, EMAIL, {
                "from": sender, "to": recipient, "subject": str(message["Subject"]), "method": None,
                "message_id": str(message["Message-ID"]), "source": delivery.idempotency_key,
                "appointment_id": payload.get("appointment_id"), "message": message.as_string(),
            }, idempotency_key=key)

    @contextmanager
    def _context(self) -> Iterator[Context]:
        with self.database.write() as session:
            yield Context(session, ACTOR, self.settings.organizer)

    def _appointment(self, session: Session, delivery: Delivery) -> Appointment:
        appointment_id = delivery.payload.get("appointment_id")
        appointment = session.get(Appointment, appointment_id) if isinstance(appointment_id, int) else None
        if appointment is None:
            raise PermanentFailure(f"no appointment #{appointment_id}")
        return appointment

    def _manage_url(self, ctx: Context, appointment: Appointment) -> str | None:
        try:
            link = manage_link(ctx, appointment)
        except InvalidInput as exc:  # e.g. the visit ended too long ago for a live link
            log.info("no manage link for appointment %s: %s", appointment.id, exc.message)
            return None
        return f"{self.settings.base_url}/m/{self.signer.dumps(link)}"

    def _draft(self, ctx: Context, appointment: Appointment, mail: Mail) -> Draft | None:
        organizer = self.settings.organizer
        if mail.to == CUSTOMER:
            customer = appointment.job.customer
            if not customer.email:
                return None
            manage_url = self._manage_url(ctx, appointment) if mail.method is Method.REQUEST else None
            join = integrations.join_url(ctx.session, appointment.id) if mail.method is Method.REQUEST else ""
            eta = (progress.estimated_arrival(ctx.session, appointment) if mail.change == "on_the_way"
                   else None)
            notice = imip.customer_notice(appointment, mail.change, manage_url,
                                          business_phone=self.settings.business_phone,
                                          business_email=self.settings.business_email, video_url=join,
                                          eta=eta)
            event = imip.customer_event(appointment, organizer, manage_url, join)
            return Draft(customer.email, customer.name, notice,
                         imip.calendar_text(event, mail.method), mail.method)
        technician = ctx.session.scalars(select(User).where(User.login == mail.to)).first()
        if technician is None or not technician.email:
            return None
        notice = imip.technician_notice(appointment, technician, mail.change)
        event = imip.technician_event(appointment, technician, organizer)
        return Draft(technician.email, technician.name, notice,
                     imip.calendar_text(event, mail.method), mail.method)

    def _queue(self, session: Session, draft: Draft, key: str, appointment: Appointment,
               source: Delivery) -> None:
        """Compose once and queue; an existing row with the same key wins (nothing is rebuilt)."""
        if len(key) > 200:
            key = f"{EMAIL}:{hashlib.sha256(key.encode('utf-8')).hexdigest()}"
        if session.scalars(select(OutboxMessage.id).where(OutboxMessage.idempotency_key == key)).first():
            return  # composed already (a retry, or an earlier change that left the same state)
        sender = self.settings.sender
        letter = Letter(sender=sender, recipient=draft.recipient, recipient_name=draft.name,
                        notice=draft.notice, calendar=draft.calendar, method=draft.method,
                        message_id=imip.message_id(key, sender), date=self.clock())
        message = imip.compose(letter)
        queued = outbox.enqueue(session, EMAIL, {
            "from": letter.sender,
            "to": letter.recipient,
            "subject": letter.notice.subject,
            "method": letter.method.value if letter.method else None,
            "message_id": letter.message_id,
            "appointment_id": appointment.id,
            "source": source.idempotency_key,
            "message": message.as_string(),
        }, idempotency_key=key)
        session.add(SentMail(message_id=letter.message_id, job_id=appointment.job_id,
                             recipient=letter.recipient))
        session.flush()
        log.debug("outbox %s (%s): email %s queued as outbox %s", source.id, source.kind,
                 letter.method.value if letter.method else "reminder", queued.id)

    # -- step 2: send -------------------------------------------------------------------------

    def on_email(self, delivery: Delivery) -> None:
        if self.smtp is None:  # not registered without SMTP; kept for direct callers
            raise PermanentFailure("no SMTP server configured")
        payload = delivery.payload
        message = payload.get("message")
        if not isinstance(message, str) or not payload.get("to") or not payload.get("from"):
            raise PermanentFailure("email row without a message, sender or recipient")
        self.smtp.send(str(payload["from"]), str(payload["to"]), message.encode("utf-8"))

