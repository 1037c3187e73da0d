"""Email intake test kit: the corpus in tests/data/mail with its expected landings, a
seeded database (a job for Paula that replies answer, one for Bo whose mail bounces),
and delivery of raw messages through each channel: SMTP, LMTP (aiosmtpd receivers on
loopback) and IMAP (a real dovecot, see imapkit.py, read by the IMAP poller).

`{JOB}` in a corpus message stands for the job the seeding made for Paula.
"""

from __future__ import annotations

import json
import smtplib
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from imapkit import Dovecot
from live import create_postgres_database, drop_postgres_database, use_audit_key
from sqlalchemy import func, select

from server import directory
from server.actions import Action
from server.actors import Actor
from server.context import Context
from server.db import Database
from server.intake.imap import ImapMailbox, ImapPoller
from server.intake.mail import message_key, parse_id
from server.intake.policy import IntakePolicy
from server.intake.receiver import IntakeController, receiver
from server.migrate import upgrade
from server.models import (
    AuditEntry,
    Customer,
    InboundMail,
    Job,
    JobMessage,
    JobPhoto,
    OutboxMessage,
    SentMail,
)

CORPUS = Path(__file__).parent / "data" / "mail"
EXPECTED: dict[str, dict[str, object]] = json.loads((CORPUS / "expected.json").read_text("utf-8"))
SERVICE = "service@cal.example.test"
ORGANIZER = "dispatch@cal.example.test"
OUR_ID = "<0123456789abcdef0123456789abcdef01234567@cal.example.test>"
BOUNCED_ID = "<bounced0123456789abcdef0123456789abcdef@cal.example.test>"
DISPATCH = Actor(name="dispatch", channel="cli", role="dispatcher")
CHANNELS = ("smtp", "imap")  # LMTP shares the SMTP handler; its own tests are in test_intake_mail.py


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MailEnv:
    database: Database
    job_id: int
    bounce_customer_id: int

    def raw(self, name: str) -> bytes:
        return (CORPUS / name).read_bytes().replace(b"{JOB}", str(self.job_id).encode())

    def landing(self, raw: bytes) -> InboundMail:
        with self.database.read() as session:
            found = session.scalars(select(InboundMail)
                                    .where(InboundMail.message_key == message_key(raw, parse_id(raw)))).one()
            session.expunge(found)
            return found

    def count(self, model: type, *where: object) -> int:
        with self.database.read() as session:
            return session.scalar(select(func.count()).select_from(model).where(*where)) or 0  # type: ignore[arg-type]


def seeded(url: str) -> MailEnv:
    database = Database(url)
    upgrade(database)
    with database.write() as session:
        ctx = Context(session, DISPATCH, ORGANIZER)
        paula = directory.add_customer(ctx, "Paula Reply", email="paula@reply.example",
                                       address="Hafenweg 2, 20457 Hamburg")
        job = directory.add_job(ctx, paula, "Leaking valve", source="web")
        bo = directory.add_customer(ctx, "Bo Unce", email="bounce.me@gone.example")
        bo_job = directory.add_job(ctx, bo, "Filter change", source="web")
        session.add(SentMail(message_id=OUR_ID, job_id=job.id, recipient=paula.email))
        session.add(SentMail(message_id=BOUNCED_ID, job_id=bo_job.id, recipient=bo.email))
        session.flush()
        return MailEnv(database, job.id, bo.id)


@contextmanager
def sibling_database(database_url: str, folder: Path) -> Iterator[str]:
    """A new empty database of the same kind as `database_url` (for a second, separate run)."""
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{folder / 'sibling.sqlite3'}"
        use_audit_key(url)
        yield url
        return
    name, url = create_postgres_database()
    use_audit_key(url)
    try:
        yield url
    finally:
        drop_postgres_database(name)


def start_receiver(database: Database, *, lmtp: bool = False,
                   policy: IntakePolicy | None = None) -> IntakeController:
    controller = receiver(database, f"127.0.0.1:{free_port()}", [SERVICE], ORGANIZER, lmtp=lmtp,
                          policy=policy)
    controller.start()
    return controller


def send(controller: IntakeController, raw: bytes, rcpt: str = SERVICE) -> None:
    """Deliver as a mail server would: SMTP, or LMTP when the receiver speaks it."""
    kind = smtplib.LMTP if controller.lmtp else smtplib.SMTP
    with kind(controller.hostname, controller.port, timeout=30) as client:
        client.sendmail("sender@relay.example", [rcpt], raw)


def poller_for(dovecot: Dovecot, database: Database, folder: str, *, scheme: str = "imaps",
               policy: IntakePolicy | None = None, interval_s: float = 60.0) -> ImapPoller:
    return ImapPoller(database, ImapMailbox.parse(dovecot.url(scheme, folder)), organizer=ORGANIZER,
                      interval_s=interval_s, policy=policy, ssl_context=dovecot.ssl_context())


def deliver_all(channel: str, env: MailEnv, raws: list[bytes], dovecot: Dovecot, folder: str) -> None:
    """Every message through `channel`, in order."""
    if channel == "imap":
        dovecot.deliver(*raws, mailbox=folder)
        taken = poller_for(dovecot, env.database, folder).poll_once()
        assert (taken.taken, taken.left_unread) == (len(raws), 0)
        assert dovecot.unseen(folder) == 0, "each message is flagged \\Seen once it is stored"
        return
    controller = start_receiver(env.database, lmtp=channel == "lmtp")
    try:
        for raw in raws:
            send(controller, raw)
    finally:
        controller.stop()


def check_landing(env: MailEnv, name: str, landed: InboundMail, channel: str) -> None:
    expected = EXPECTED[name]
    assert landed.outcome == expected["outcome"], (name, landed.note)
    assert landed.raw == env.raw(name) or "duplicate_of" in expected, "the raw message is kept as it came"
    assert landed.channel == channel
    if "note" in expected:
        assert str(expected["note"]) in landed.note, (name, landed.note)
    with env.database.read() as session:
        audited = session.scalars(select(AuditEntry).where(
            AuditEntry.action == Action.INTAKE_MAIL.value, AuditEntry.entity_id == str(landed.id))).one()
        assert audited.channel == "email", "everything that arrives is audited"
        if expected["outcome"] == "job":
            job = session.get(Job, landed.job_id)
            assert job is not None and job.source == "email", name
            assert job.id != env.job_id
            if "contains" in expected:
                assert str(expected["contains"]) in f"{job.title}\n{job.problem}", (name, job.problem)
            if "absent" in expected:
                assert str(expected["absent"]) not in job.problem, (name, job.problem)
            assert "<iframe" not in job.problem and "onerror" not in job.problem, "no markup kept"
            if "sender" in expected:
                assert job.customer.email == expected["sender"]
            if "sender_name" in expected:
                assert job.customer.name == expected["sender_name"]
            photos = session.scalar(select(func.count()).select_from(JobPhoto)
                                    .where(JobPhoto.job_id == job.id))
            assert photos == expected.get("photos", 0), name
            assert session.scalars(select(OutboxMessage).where(
                OutboxMessage.idempotency_key == f"intake.acknowledge:{job.id}")).first(), \
                "a person's request is acknowledged"
        elif expected["outcome"] == "reply":
            assert landed.job_id == env.job_id, name
            message = session.scalars(select(JobMessage).where(JobMessage.inbound_id == landed.id)).one()
            assert message.body == expected["body"], (name, message.body)
            assert message.sender == "paula@reply.example"
        elif expected["outcome"] == "bounce" and "undeliverable" in expected:
            customer = session.scalars(select(Customer).where(
                Customer.email == expected["undeliverable"])).one()
            assert customer.email_undeliverable_at is not None
            assert session.scalars(select(AuditEntry).where(
                AuditEntry.action == Action.CUSTOMER_EMAIL_UNDELIVERABLE.value,
                AuditEntry.entity_id == str(customer.id))).one(), "the marking is audited"
        if expected["outcome"] in ("ignored", "refused"):
            assert landed.job_id is None
