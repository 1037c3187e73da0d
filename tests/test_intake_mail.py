"""Email in: the corpus in tests/data/mail through SMTP, LMTP and IMAP, duplicates, faults.

Each message in the corpus has its expected landing in tests/data/mail/expected.json:
a new job (with its text, sender, photos), a customer message on a job (trimmed
text), ignored (auto-replies, lists), a bounce (marks the customer's address), or
refused. The same table is checked for every channel, each into a database of its own;
IMAP is a real dovecot on loopback (imapkit.py), read by the IMAP poller.
"""

from __future__ import annotations

import smtplib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapkit import Dovecot, dovecot  # noqa: F401  (the module's IMAP server)
from inboundkit import (
    CHANNELS,
    CORPUS,
    DISPATCH,
    EXPECTED,
    ORGANIZER,
    SERVICE,
    MailEnv,
    check_landing,
    deliver_all,
    seeded,
    send,
    sibling_database,
    start_receiver,
)
from sqlalchemy import func, select

from server import integrations
from server.context import Context
from server.db import Database
from server.intake import mail as intake_mail
from server.intake.policy import IntakePolicy
from server.intake.receiver import IntakeController
from server.models import Customer, InboundMail, Job, JobFile, JobPhoto, OutboxMessage
from server.vault import Vault

AWAY = "postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=2"


@pytest.fixture(scope="module")
def mail_env(database_url: str) -> Iterator[MailEnv]:
    env = seeded(database_url)
    yield env
    env.database.dispose()


@pytest.fixture(scope="module")
def smtp_in(mail_env: MailEnv) -> Iterator[IntakeController]:
    controller = start_receiver(mail_env.database)
    yield controller
    controller.stop()


def test_the_corpus_is_big_enough() -> None:
    assert len(EXPECTED) >= 30
    assert {p.name for p in CORPUS.glob("*.eml")} == set(EXPECTED)


@pytest.mark.parametrize("channel", CHANNELS)
def test_every_corpus_message_lands_as_expected(channel: str, database_url: str, tmp_path: Path,
                                                dovecot: Dovecot) -> None:  # noqa: F811
    with sibling_database(database_url, tmp_path) as url:
        env = seeded(url)
        try:
            jobs_before = env.count(Job)
            names = sorted(EXPECTED)
            deliver_all(channel, env, [env.raw(name) for name in names], dovecot,
                        f"corpus-{channel}-{tmp_path.name}")
            for name in names:
                check_landing(env, name, env.landing(env.raw(name)), channel)
            new_jobs = sum(1 for e in EXPECTED.values() if e["outcome"] == "job" and "duplicate_of" not in e)
            assert env.count(Job) - jobs_before == new_jobs
            acks = env.count(OutboxMessage, OutboxMessage.kind == "intake.acknowledge")
            assert acks == new_jobs, "auto-replies, bounces and replies are never answered"
            duplicate = env.landing(env.raw("21_duplicate_of_01.eml"))
            original = env.landing(env.raw("01_plain.eml"))
            assert duplicate.id == original.id and duplicate.job_id == original.job_id
            assert env.count(InboundMail) == len(names) - 1
        finally:
            env.database.dispose()


def test_mail_for_other_addresses_is_refused(smtp_in: IntakeController) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(smtp_in, b"From: a@b.example\r\nSubject: x\r\n\r\nhi\r\n", "someone@else.example")
    assert refused.value.recipients["someone@else.example"][0] == 550


@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
def test_database_away_answers_4xx_and_the_retry_stores_once(mail_env: MailEnv, lmtp: bool) -> None:
    message_id = f"<retry-{'lmtp' if lmtp else 'smtp'}@retry.example>"
    sender = f"rita.{'lmtp' if lmtp else 'smtp'}@retry.example"
    raw = (f"From: Rita Retry <{sender}>\r\nTo: {SERVICE}\r\nSubject: Compressor overheats\r\n"
           f"Message-ID: {message_id}\r\n\r\nIt overheats every afternoon.\r\n").encode()
    away = Database(AWAY)
    down = start_receiver(away, lmtp=lmtp)
    try:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(down, raw)
        assert refused.value.smtp_code == 451
    finally:
        down.stop()
        away.dispose()
    assert mail_env.count(InboundMail, InboundMail.message_id == message_id) == 0
    up = start_receiver(mail_env.database, lmtp=lmtp)
    try:
        send(up, raw)  # the sending server tries again (twice: its first 250 was lost)
        send(up, raw)
    finally:
        up.stop()
    assert mail_env.landing(raw).outcome == "job"
    assert mail_env.count(InboundMail, InboundMail.message_id == message_id) == 1
    with mail_env.database.read() as session:
        assert session.scalar(select(func.count()).select_from(Job).join(Customer)
                              .where(Customer.email == sender)) == 1


def test_lmtp_answers_once_per_recipient_and_stores_once(mail_env: MailEnv) -> None:
    lmtp = start_receiver(mail_env.database, lmtp=True)
    lmtp.handler.addresses = frozenset({SERVICE, "repairs@cal.example.test"})
    raw = (b"From: Lena Two <lena@two.example>\r\nTo: service@cal.example.test, repairs@cal.example.test\r\n"
           b"Subject: Dryer alarm\r\nMessage-ID: <two-rcpt@two.example>\r\n\r\nThe dryer alarm beeps.\r\n")
    try:
        with smtplib.LMTP(lmtp.hostname, lmtp.port, timeout=30) as client:
            client.ehlo_or_helo_if_needed()
            assert client.mail("relay@two.example")[0] == 250
            assert client.rcpt(SERVICE)[0] == 250
            assert client.rcpt("repairs@cal.example.test")[0] == 250
            assert client.rcpt("nobody@cal.example.test")[0] == 550
            first = client.data(raw)
            second = client.getreply()
            assert first[0] == 250 and second[0] == 250, (first, second)
    finally:
        lmtp.stop()
    assert mail_env.count(InboundMail, InboundMail.message_id == "<two-rcpt@two.example>") == 1
    assert mail_env.landing(raw).channel == "lmtp" and mail_env.landing(raw).outcome == "job"


def test_a_message_above_the_size_limit_is_refused_with_552(mail_env: MailEnv) -> None:
    controller = start_receiver(mail_env.database, policy=IntakePolicy(max_message_bytes=4096))
    raw = (b"From: big@large.example\r\nSubject: Huge\r\nMessage-ID: <huge@large.example>\r\n\r\n"
           + b"x" * 70 + b"\r\n") * 100
    try:
        with pytest.raises((smtplib.SMTPSenderRefused, smtplib.SMTPDataError)) as refused:
            send(controller, raw)
        assert refused.value.smtp_code == 552
        send(controller, b"From: small@large.example\r\nSubject: Small\r\n"
                         b"Message-ID: <small@large.example>\r\n\r\nA short one.\r\n")
    finally:
        controller.stop()
    assert mail_env.count(InboundMail, InboundMail.message_id == "<huge@large.example>") == 0
    assert mail_env.count(InboundMail, InboundMail.message_id == "<small@large.example>") == 1


def test_one_sender_gets_at_most_the_rate_of_messages_read(mail_env: MailEnv) -> None:
    controller = start_receiver(mail_env.database, policy=IntakePolicy(sender_rate=3))
    raws = [(f"From: Flo Od <flo@flood.example>\r\nSubject: Request {n}\r\n"
             f"Message-ID: <flood-{n}@flood.example>\r\n\r\nCompressor {n} is broken.\r\n").encode()
            for n in range(5)]
    try:
        for raw in raws:
            send(controller, raw)
    finally:
        controller.stop()
    outcomes = [mail_env.landing(raw) for raw in raws]
    assert [m.outcome for m in outcomes] == ["job"] * 3 + ["refused"] * 2
    assert "more than 3 messages within an hour from flo@flood.example" in outcomes[-1].note
    assert all(m.raw == raw for m, raw in zip(outcomes, raws, strict=True)), "kept as they came"
    with mail_env.database.read() as session:
        assert session.scalar(select(func.count()).select_from(Job).join(Customer)
                              .where(Customer.email == "flo@flood.example")) == 3


def test_the_allow_list_keeps_other_attachment_types_as_files(mail_env: MailEnv) -> None:
    controller = start_receiver(mail_env.database, policy=IntakePolicy(attachment_types=("application/pdf",)))
    raw = mail_env.raw("05_photos_and_pdf.eml").replace(b"Message-ID: <", b"Message-ID: <allowed.")
    assert raw != mail_env.raw("05_photos_and_pdf.eml")
    try:
        send(controller, raw)
    finally:
        controller.stop()
    landed = mail_env.landing(raw)
    assert landed.outcome == "job" and "manual.pdf" not in landed.note, landed.note
    assert mail_env.count(JobPhoto, JobPhoto.job_id == landed.job_id) == 2, "images stay photos"
    with mail_env.database.read() as session:
        kept = session.scalars(select(JobFile).where(JobFile.job_id == landed.job_id)).one()
        assert (kept.filename, kept.content_type, kept.inbound_id) == ("manual.pdf", "application/pdf",
                                                                       landed.id)
        assert kept.data.startswith(b"%PDF")


def test_a_permanent_bounce_of_our_mail_alerts_dispatch(mail_env: MailEnv, smtp_in: IntakeController) -> None:
    with mail_env.database.write() as session:
        ctx = Context(session, DISPATCH, ORGANIZER)
        integrations.add(ctx, Vault((Vault.new_key(),)), "slack", "Dispatch room",
                         settings={"channel": "C0DISPATCH"},
                         secrets={"bot_token": "xoxb-test", "signing_secret": "s" * 32})
    send(smtp_in, mail_env.raw("18_dsn_permanent.eml"))
    landed = mail_env.landing(mail_env.raw("18_dsn_permanent.eml"))
    assert landed.outcome == "bounce"
    with mail_env.database.read() as session:
        bo = session.get(Customer, mail_env.bounce_customer_id)
        assert bo is not None and bo.email_undeliverable_at is not None
        alerts = session.scalars(select(OutboxMessage).where(OutboxMessage.kind == integrations.ALERT)).all()
        assert len(alerts) == 1 and "bounce.me@gone.example" in alerts[0].payload["text"]
    send(smtp_in, mail_env.raw("18_dsn_permanent.eml"))  # the same report again: no second alert
    assert mail_env.count(OutboxMessage, OutboxMessage.kind == integrations.ALERT) == 1


def test_two_readers_of_one_pending_message_make_one_job(mail_env: MailEnv) -> None:
    """The IMAP poller and the retry of pending mail may read one stored message at once
    (both run when a worker starts): the second waits for the first and finds it read."""
    sender = "twice.read@race.example"
    raw = (f"From: Tess Twice <{sender}>\r\nTo: {SERVICE}\r\nSubject: Dryer alarm\r\n"
           "Message-ID: <race-1@race.example>\r\n\r\nThe dryer alarm keeps going off.\r\n").encode()
    mail_id = intake_mail.store_raw(mail_env.database, raw, "imap")
    second: list[intake_mail.Outcome] = []
    with mail_env.database.write() as session:  # the first reader, inside its transaction
        mail = session.get(InboundMail, mail_id, with_for_update=True)
        assert mail is not None and mail.outcome == intake_mail.PENDING
        other = threading.Thread(target=lambda: second.append(intake_mail.process_stored(
            mail_env.database, mail_id, "retry", ORGANIZER)))
        other.start()
        other.join(1.0)
        assert other.is_alive(), "the second reader waits for the first"
        first = intake_mail.process(Context(session, intake_mail.actor_for("imap"), ORGANIZER), mail)
    other.join(30)
    assert first.outcome == "job" and second and second[0].job_id == first.job_id
    with mail_env.database.read() as session:
        assert session.scalar(select(func.count()).select_from(Job).join(Customer)
                              .where(Customer.email == sender)) == 1
