"""Email in: store the raw message first, then read it and act in one domain call.

The SMTP/LMTP receiver and the IMAP poller both:
1. `store_raw`: store the bytes (own transaction; a duplicate Message-ID is stored once).
   If this fails the caller must not acknowledge the message (SMTP 451, IMAP leaves it
   unread).
2. `read_stored` → `process(ctx, mail, policy)`: a message above the size limit, or
   from a sender past the hourly rate (IntakePolicy), is refused; a delivery report of
   our mail → the customer's address is marked undeliverable (audited) and dispatch
   alerted; an auto-reply or list mail → ignored
   (never answered); a reply to our mail (In-Reply-To/References, or `[#J<job>]` in
   the subject from the job's customer) → a customer message on that job; anything
   else from a person → a new job through `requests.receive` (acknowledged).
If step 2 fails, the message stays `pending` and `process_pending` reads it again.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from server import audit, integrations, ratelimit
from server.actions import Action
from server.actors import Actor
from server.context import Context, operation
from server.db import Database
from server.errors import InvalidInput
from server.intake.attachments import attach, sort_attachments
from server.intake.mailparse import JOB_REFERENCE, Parsed, parse, report_details, trim_reply
from server.intake.policy import SENDER_WINDOW, IntakePolicy
from server.intake.requests import ServiceRequest, receive
from server.models import Customer, InboundMail, Job, JobMessage, SentMail, utcnow

log = logging.getLogger("fieldcal.intake")

PENDING, JOB, REPLY, IGNORED, BOUNCE, REFUSED = (
    "pending", "job", "reply", "ignored", "bounce", "refused")


@dataclass(frozen=True)
class Outcome:
    mail_id: int
    outcome: str
    job_id: int | None = None
    note: str = ""


def message_key(raw: bytes, message_id: str) -> str:
    basis = message_id.encode("utf-8") if message_id else raw
    return hashlib.sha256(basis).hexdigest()


def store(session: Session, raw: bytes, channel: str, envelope_from: str = "") -> tuple[InboundMail, bool]:
    """The raw message, stored once per Message-ID: (row, stored now?)."""
    try:
        message_id = parse_id(raw)
    except (ValueError, LookupError):
        message_id = ""
    key = message_key(raw, message_id)
    found = session.scalars(select(InboundMail).where(InboundMail.message_key == key)).first()
    if found is not None:
        return found, False
    mail = InboundMail(message_key=key, message_id=message_id[:500], channel=channel,
                       envelope_from=envelope_from[:320], raw=raw, outcome=PENDING, note="")
    try:
        with session.begin_nested():
            session.add(mail)
            session.flush()
    except IntegrityError:  # the same message, stored by a concurrent delivery just now
        found = session.scalars(select(InboundMail).where(InboundMail.message_key == key)).one()
        return found, False
    return mail, True


def parse_id(raw: bytes) -> str:
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
    for line in head.decode("latin-1").splitlines():
        if line.lower().startswith("message-id:"):
            value = line.split(":", 1)[1].strip()
            return value if value.startswith("<") and value.endswith(">") else ""
    return ""


def _finish(mail: InboundMail, outcome: str, note: str = "", job_id: int | None = None) -> Outcome:
    mail.outcome, mail.note, mail.job_id = outcome, note[:2000], job_id
    return Outcome(mail.id, outcome, job_id, note)


def _job_answered(session: Session, parsed: Parsed) -> Job | None:
    if parsed.references:
        sent = session.scalars(select(SentMail).where(SentMail.message_id.in_(parsed.references[:50]))
                               .order_by(SentMail.id.desc())).first()
        if sent is not None:
            return session.get(Job, sent.job_id)
    match = JOB_REFERENCE.search(parsed.subject)
    if match and parsed.sender:
        job = session.get(Job, int(match.group(1)))
        if job is not None and job.customer.email.lower() == parsed.sender:
            return job
    return None


def _bounce(ctx: Context, mail: InboundMail) -> Outcome:
    permanent, recipients, originals = report_details(mail.raw)
    if not permanent:
        return _finish(mail, BOUNCE, "a delay or success report: nothing to do")
    sent = ctx.session.scalars(select(SentMail).where(SentMail.message_id.in_(originals or ("",)))).all()
    if not sent:  # anyone can write a report: only one about our own message marks an address
        return _finish(mail, BOUNCE, "a permanent failure of a message we did not send")
    addresses = {s.recipient.lower() for s in sent} & set(recipients) or {s.recipient.lower() for s in sent}
    marked = []
    for customer in ctx.session.scalars(select(Customer).where(func.lower(Customer.email).in_(addresses))):
        if customer.email_undeliverable_at is None:
            customer.email_undeliverable_at = utcnow()
            audit.record(ctx.session, ctx.actor, Action.CUSTOMER_EMAIL_UNDELIVERABLE, "customer",
                         customer.id, after={"email": customer.email})
            integrations.queue_alert(
                ctx.session, f"Email to customer {customer.name} ({customer.email}) bounced "
                f"permanently; please find another way to reach them.", f"bounce:{mail.id}:{customer.id}")
        marked.append(customer.id)
    return _finish(mail, BOUNCE, f"permanent failure; customers marked undeliverable: {marked}",
                   sent[0].job_id)


def _over_rate(ctx: Context, sender: str, policy: IntakePolicy) -> str:
    """Why this sender's message is not read now ("" when it is within the limit)."""
    try:
        ratelimit.hit(ctx.session, f"intake-mail:{sender}", policy.sender_rate, SENDER_WINDOW)
    except ratelimit.RateLimited:
        return f"more than {policy.sender_rate} messages within an hour from {sender}; not read"
    return ""


def _audited(ctx: Context, mail: InboundMail, outcome: Outcome) -> Outcome:
    audit.record(ctx.session, ctx.actor, Action.INTAKE_MAIL, "inbound_mail", mail.id,
                 after={"channel": mail.channel, "outcome": outcome.outcome, "job": outcome.job_id,
                        "note": outcome.note[:300]})
    return outcome


@operation
def process(ctx: Context, mail: InboundMail, policy: IntakePolicy | None = None) -> Outcome:
    """Read one stored message and act on it (see the module's description); every message
    read is audited (`intake.mail`, with its outcome)."""
    if mail.outcome != PENDING:
        return Outcome(mail.id, mail.outcome, mail.job_id, mail.note)
    return _audited(ctx, mail, _read(ctx, mail, policy or IntakePolicy()))


def _read(ctx: Context, mail: InboundMail, policy: IntakePolicy) -> Outcome:
    if len(mail.raw) > policy.max_message_bytes:
        return _finish(mail, REFUSED, f"larger than {policy.max_message_bytes} bytes")
    parsed = parse(mail.raw)
    if parsed.is_report:
        return _bounce(ctx, mail)
    if parsed.automatic:
        return _finish(mail, IGNORED, parsed.automatic)
    if not parsed.sender:
        return _finish(mail, REFUSED, "no sender address")
    limited = _over_rate(ctx, parsed.sender, policy)
    if limited:
        return _finish(mail, REFUSED, limited)
    found = sort_attachments(parsed.attachments, policy)
    job = _job_answered(ctx.session, parsed)
    if job is not None:
        body = trim_reply(parsed.text) or parsed.text[:4000]
        message = JobMessage(job_id=job.id, inbound_id=mail.id, sender=parsed.sender,
                             subject=parsed.subject[:500], body=body[:20000])
        ctx.session.add(message)
        attach(ctx.session, job.id, mail.id, found, with_photos=True)
        ctx.session.flush()
        audit.record(ctx.session, ctx.actor, Action.JOB_MESSAGE, "job", job.id,
                     after={"message": message.id, "sender": parsed.sender, "mail": mail.id,
                            "photos": len(found.photos), "files": len(found.files)})
        return _finish(mail, REPLY, found.note, job.id)
    problem = "\n\n".join(p for p in (parsed.subject, trim_reply(parsed.text) or parsed.text) if p)
    request = ServiceRequest(source="email", name=parsed.sender_name or parsed.sender.split("@")[0],
                             email=parsed.sender, problem=problem[:4000] or "(no text)",
                             photos=found.photos)
    received = receive(ctx, request)
    attach(ctx.session, received.job.id, mail.id, found, with_photos=False)
    return _finish(mail, JOB, found.note, received.job.id)


def actor_for(channel: str) -> Actor:
    return Actor(name=f"intake-{channel}", channel="email", role="system")


def store_raw(database: Database, raw: bytes, channel: str, envelope_from: str = "") -> int:
    """Store the message as it came, committed on its own; its id. A database error reaches
    the caller, who must then not acknowledge the message (SMTP 451, IMAP leaves it unread)."""
    with database.write() as session:
        mail, fresh = store(session, raw, channel, envelope_from)
        if not fresh:
            log.info("mail %s: already stored (a duplicate delivery)", mail.id)
        return mail.id


def store_refused(database: Database, head: bytes, channel: str, note: str) -> int:
    """Keep the headers of a message that is not taken in whole (too large), as refused."""
    with database.write() as session:
        mail, fresh = store(session, head, channel)
        if fresh:
            _audited(Context(session, actor_for(channel), ""), mail, _finish(mail, REFUSED, note))
        return mail.id


def take_in(database: Database, raw: bytes, channel: str, envelope_from: str = "",
            organizer: str = "", policy: IntakePolicy | None = None) -> Outcome:
    """Store (committed on its own), then process. Database errors reach the caller."""
    return process_stored(database, store_raw(database, raw, channel, envelope_from), channel,
                          organizer, policy)


def read_stored(database: Database, mail_id: int, channel: str, organizer: str = "",
                policy: IntakePolicy | None = None) -> Outcome | None:
    """Process a stored message; None if the database failed (it stays pending, read again later)."""
    try:
        outcome = process_stored(database, mail_id, channel, organizer, policy)
    except SQLAlchemyError as exc:
        log.warning("inbound mail %s stored but not yet read (%s); read again later",
                    mail_id, type(exc).__name__)
        return None
    log.info("inbound mail %s (%s): %s %s", mail_id, channel, outcome.outcome, outcome.job_id or "")
    return outcome


def process_stored(database: Database, mail_id: int, channel: str, organizer: str = "",
                   policy: IntakePolicy | None = None) -> Outcome:
    with database.write() as session:
        # Locked: the poller and the retry of pending mail may read one message at once,
        # and the second must find it read, not make a second job.
        mail = session.get(InboundMail, mail_id, with_for_update=True, populate_existing=True)
        assert mail is not None
        ctx = Context(session, actor_for(channel), organizer)
        try:
            return process(ctx, mail, policy)
        except InvalidInput as exc:  # what the sender wrote cannot become a request
            return _audited(ctx, mail, _finish(mail, REFUSED, exc.message))


def process_pending(database: Database, organizer: str = "", limit: int = 50,
                    policy: IntakePolicy | None = None) -> int:
    """Read again what was stored but not yet read (processing failed or was interrupted)."""
    with database.read() as session:
        ids = list(session.scalars(select(InboundMail.id).where(InboundMail.outcome == PENDING)
                                   .order_by(InboundMail.id).limit(limit)))
    for mail_id in ids:
        process_stored(database, mail_id, "retry", organizer, policy)
    return len(ids)
