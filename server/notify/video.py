"""A remote visit's video link (Meet, Zoom) and the customer's email.

The link comes from a platform push, which the worker makes after the change that caused
it, so the confirmation is usually composed before the link exists. What is sent:
- every customer message composed while a link exists carries it (text, HTML, and the
  invitation's CONFERENCE and DESCRIPTION);
- when a link arrives (or changes) after the customer was told of the visit by a message
  without it, one follow-up goes out: an iMIP REQUEST of the same visit (same UID and
  SEQUENCE, a newer DTSTAMP) whose words say "here is the link to join";
- nothing is sent when a message already carried this link, when the customer has not
  been told of the visit yet (the message that tells them will carry it), for a visit
  that is not confirmed, cancelled or over, or for a customer without an address.
"""

from __future__ import annotations

import enum
from email import message_from_string, policy
from email.message import EmailMessage

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.actions import AppointmentChange
from server.models import Appointment, OutboxMessage

UNFINISHED = ("pending", "sending")


class Told(enum.Enum):
    NOT_YET = "not yet"  # no message to the customer about this visit (yet)
    WITHOUT_LINK = "without the link"
    WITH_LINK = "with the link"


def _text_of(raw: str) -> str:
    parsed = message_from_string(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    part = parsed.get_body(preferencelist=("plain",))
    return str(part.get_content()) if part is not None else ""


def told(session: Session, appointment: Appointment, recipient: str, url: str) -> Told:
    """Whether the customer's messages about this visit (composed so far) carry `url`."""
    rows = session.scalars(select(OutboxMessage).where(
        OutboxMessage.kind == "email", OutboxMessage.idempotency_key.like(f"email:{appointment.id}:%")))
    found = Told.NOT_YET
    for row in rows:
        payload = row.payload or {}
        if str(payload.get("to", "")).lower() != recipient.lower() or payload.get("method") != "REQUEST":
            continue
        if url in _text_of(str(payload.get("message", ""))):
            return Told.WITH_LINK
        found = Told.WITHOUT_LINK
    return found


def change_unfinished(session: Session, appointment: Appointment) -> bool:
    """Whether a change of the visit waits to be composed (its message will carry the link)."""
    return session.scalars(select(OutboxMessage.id).where(
        OutboxMessage.kind == AppointmentChange.KIND, OutboxMessage.status.in_(UNFINISHED),
        OutboxMessage.idempotency_key.like(f"appointment:{appointment.id}:%"))).first() is not None
