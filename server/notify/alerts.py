"""Email to dispatch when something needs a person (a technician can't make it to a visit)."""

from __future__ import annotations

import datetime as dt
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from server.notify.imip import MAIL_POLICY, ORGANIZER_NAME
from server.text import one_line

SUBJECT_LIMIT = 120


def _address(name: str, address: str) -> Address:
    local, _, domain = address.rpartition("@")
    return Address(name, username=local, domain=domain)


def compose(text: str, url: str, *, sender: str, recipient: str, message_id: str,
            now: dt.datetime) -> EmailMessage:
    """A plain-text alert: the text as subject (shortened) and body, and where to act on it."""
    international = not (sender.isascii() and recipient.isascii() and text.isascii())
    message = EmailMessage(policy=MAIL_POLICY.clone(utf8=True) if international else MAIL_POLICY)
    message["From"] = _address(ORGANIZER_NAME, sender)
    message["To"] = _address("Dispatch", recipient)
    headline = one_line(text)
    subject = headline if len(headline) <= SUBJECT_LIMIT else headline[:SUBJECT_LIMIT - 1] + "…"
    message["Subject"] = f"Dispatch alert: {subject}"
    message["Date"] = format_datetime(now.astimezone(dt.UTC))
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(f"{text}\n\nOpen the board to plan it: {url}\n", cte="quoted-printable")
    return message
