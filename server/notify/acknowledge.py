"""The acknowledgement of a service request: a plain email with the link to follow it.

It answers the customer's request, so it says `Auto-Submitted: auto-replied`
(RFC 3834); its Message-ID comes from the job, so replies thread onto the job.
"""

from __future__ import annotations

import datetime as dt
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from server.models import Job
from server.notify.imip import MAIL_POLICY, ORGANIZER_NAME, message_id
from server.text import one_line


def job_message_key(job_id: int) -> str:
    """The outbox key of a job's acknowledgement (and the seed of its Message-ID)."""
    return f"email:intake:{job_id}"


def reference(job_id: int) -> str:
    """How a job is named in subjects: replies carrying it thread onto the job."""
    return f"[#J{job_id}]"


def compose(job: Job, url: str, *, sender: str, recipient: str,
            name: str, now: dt.datetime) -> EmailMessage:
    international = not (sender.isascii() and recipient.isascii())
    message = EmailMessage(policy=MAIL_POLICY.clone(utf8=True) if international else MAIL_POLICY)
    local, _, domain = sender.rpartition("@")
    message["From"] = Address(ORGANIZER_NAME, username=local, domain=domain)
    r_local, _, r_domain = recipient.rpartition("@")
    message["To"] = Address(one_line(name), username=r_local, domain=r_domain)
    message["Subject"] = f"We received your service request {reference(job.id)}"
    message["Date"] = format_datetime(now.astimezone(dt.UTC))
    message["Message-ID"] = message_id(job_message_key(job.id), sender)
    message["Auto-Submitted"] = "auto-replied"
    greeting = f"Hello {one_line(name)}," if one_line(name) else "Hello,"
    body = (
        f"{greeting}\n\n"
        f"thank you: we received your service request {reference(job.id)}\n"
        f"  {job.title}\n\n"
        "A dispatcher will plan a visit and you will get an invitation for it.\n"
        f"Follow your request here (the visit appears once it is booked):\n{url}\n\n"
        "You can answer this email to add anything; please keep the reference in the subject.\n"
    )
    message.set_content(body, cte="quoted-printable")
    return message
