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

What is told (a self-booking hold, and its expiry, tell nobody):
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
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server import outbox
from server.actors import Actor
from server.config import Settings
from server.context import Context
from server.db import Database
from server.errors import InvalidInput
from server.links import LinkSigner
from server.models import Appointment, AppointmentStatus, JobStatus, OutboxMessage, User, utcnow
from server.notify import imip
from server.notify.imip import Letter, Method
from server.notify.smtp import SmtpTarget
from server.scheduling.booking import manage_link
from server.worker import Delivery, Handler, PermanentFailure

log = logging.getLogger("fieldcal.notify")

CHANGED = "appointment.changed"
REMINDER = "appointment.reminder"
EMAIL = "email"

ACTOR = Actor(name="notify", channel="worker", role="system")
CUSTOMER = "customer"

CUSTOMER_CHANGES = {
    "appointment.book": "confirmed",
    "appointment.confirm": "confirmed",
    "appointment.reschedule": "moved",
    "appointment.reassign": "updated",
}
TECHNICIANS_NOT_TOLD = {"appointment.accept", "appointment.status", "appointment.hold.expire"}


@dataclass(frozen=True)
class Mail:
    """One decision: tell `to` (CUSTOMER or a technician's login) with `method`."""

    to: str
    method: Method
    change: str  # a headline of imip.CUSTOMER_HEADLINES / TECHNICIAN_HEADLINES


def _customer_sees(snap: dict[str, Any] | None) -> bool:
    return snap is not None and snap.get("status") == AppointmentStatus.CONFIRMED


def _technician_sees(snap: dict[str, Any] | None, self_booked: bool) -> bool:
    """Confirmed visits, and tentative ones a dispatcher pencilled in (not a customer's hold)."""
    if snap is None:
        return False
    status = snap.get("status")
    return status == AppointmentStatus.CONFIRMED or (
        status == AppointmentStatus.TENTATIVE and not self_booked)


def plan(appointment: Appointment, payload: dict[str, Any]) -> list[Mail]:
    """Who hears of one `appointment.changed` row, and how."""
    action = str(payload.get("action", ""))
    before = payload.get("before")
    after = payload.get("after") or {}
    if action == "appointment.hold.expire":
        return []
    mails: list[Mail] = []
    cancelled = appointment.status == AppointmentStatus.CANCELLED

    if cancelled:
        if _customer_sees(before) or _customer_sees(after):
            mails.append(Mail(CUSTOMER, Method.CANCEL, "cancelled"))
    elif appointment.status == AppointmentStatus.CONFIRMED and _customer_sees(after):
        change = CUSTOMER_CHANGES.get(action)
        if action == "appointment.status":
            on_the_way = JobStatus.EN_ROUTE
            if after.get("job_status") == on_the_way and (before or {}).get("job_status") != on_the_way:
                change = "on_the_way"
        if change is not None:
            mails.append(Mail(CUSTOMER, Method.REQUEST, change))

    if action in TECHNICIANS_NOT_TOLD:
        return mails
    self_booked = appointment.booking_key is not None
    current_snap = {"status": appointment.status}
    current = (appointment.technician.login if appointment.technician is not None and not cancelled
               and _technician_sees(current_snap, self_booked) else None)
    was = before.get("technician") if _technician_sees(before, self_booked) else None
    now = after.get("technician") if _technician_sees(after, self_booked) else None
    moved = before is not None and (before.get("starts_at"), before.get("ends_at")) != (
        after.get("starts_at"), after.get("ends_at"))
    for login in dict.fromkeys(x for x in (was, now) if x):
        if login == current:
            change = "assigned" if login != was else ("moved" if moved else "updated")
            mails.append(Mail(login, Method.REQUEST, change))
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
        handlers: dict[str, Handler] = {CHANGED: self.on_changed, REMINDER: self.on_reminder}
        if self.smtp is not None:
            handlers[EMAIL] = self.on_email
        return handlers

    # -- step 1: compose and queue -------------------------------------------------------

    def on_changed(self, delivery: Delivery) -> None:
        with self._context() as ctx:
            appointment = self._appointment(ctx.session, delivery)
            for mail in plan(appointment, delivery.payload):
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
            notice = imip.customer_notice(appointment, "reminder", manage_url,
                                          business_phone=self.settings.business_phone)
            event = imip.customer_event(appointment, self.settings.organizer, manage_url)
            draft = Draft(customer.email, customer.name, notice, imip.calendar_text(event, None), None)
            self._queue(ctx.session, draft, f"{EMAIL}:{delivery.idempotency_key}", appointment, delivery)

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
            notice = imip.customer_notice(appointment, mail.change, manage_url,
                                          business_phone=self.settings.business_phone)
            event = imip.customer_event(appointment, organizer, manage_url)
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

