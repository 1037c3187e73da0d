"""The IMAP poller against a real dovecot on loopback (imapkit.py): TLS both ways, IDLE,
the database away (mail left unread, taken once later), the size limit, and the worker
that `fieldcal serve` starts reading the mailbox and listening for LMTP on its own.

Each test uses folders of its own in the one dovecot of the module.
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from imapkit import USER as IMAP_USER
from imapkit import Dovecot, dovecot  # noqa: F401  (the module's IMAP server)
from inboundkit import SERVICE, MailEnv, free_port, poller_for, seeded
from live import AUDIT_KEY
from sqlalchemy import func, select

from server.actions import Action
from server.config import Settings, load_settings
from server.db import Database
from server.errors import ConfigError
from server.intake.imap import ImapMailbox, ImapPoller
from server.intake.policy import IntakePolicy
from server.intake.startup import check_mail_intake, policy_from
from server.models import AuditEntry, Customer, InboundMail, Job

AWAY = "postgresql://postgres@127.0.0.1:1/nowhere?connect_timeout=2"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def mail_env(database_url: str) -> Iterator[MailEnv]:
    env = seeded(database_url)
    yield env
    env.database.dispose()


def request(tag: str, sender: str = "") -> bytes:
    sender = sender or f"{tag}@imap.example"
    return (f"From: Ina Map <{sender}>\r\nTo: {SERVICE}\r\nSubject: Compressor {tag} stops\r\n"
            f"Message-ID: <{tag}@imap.example>\r\n\r\nThe compressor ({tag}) stops after a minute.\r\n"
            ).encode()


def jobs_of(env: MailEnv, email: str) -> int:
    with env.database.read() as session:
        return session.scalar(select(func.count()).select_from(Job).join(Customer)
                              .where(Customer.email == email)) or 0


def jobs_by_sender(env: MailEnv) -> list[tuple[int, str, str]]:
    """What a failed wait saw: every job with its customer's address and status."""
    with env.database.read() as session:
        rows = session.execute(select(Job.id, Customer.email, Job.status).join(Customer)
                               .order_by(Job.id)).all()
        return [(row[0], row[1], str(row[2])) for row in rows]


def wait_for(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.1)


def test_mailbox_urls_are_checked() -> None:
    box = ImapMailbox.parse("imap://svc%40example.com:p%2Fw@mail.example.com/Service%20Requests")
    assert (box.host, box.port, box.security, box.username, box.password, box.folder) == (
        "mail.example.com", 143, "starttls", "svc@example.com", "p/w", "Service Requests")
    assert ImapMailbox.parse("imaps://svc@mail.example.com", password="secret").port == 993
    assert "secret" not in repr(ImapMailbox.parse("imaps://svc:secret@mail.example.com"))
    for bad in ("pop3://u:p@host", "imaps://u:p@/INBOX", "imaps://mail.example.com", "imaps://u@host"):
        with pytest.raises(ConfigError):
            ImapMailbox.parse(bad)


def test_intake_settings_are_checked_before_anything_starts(tmp_path: Path) -> None:
    def settings(**values: str) -> Settings:
        return load_settings({"FIELDCAL_INSTANCE": str(tmp_path),
                              **{f"FIELDCAL_INTAKE_{k.upper()}": v for k, v in values.items()}})

    good = settings(imap_url="imaps://svc:pw@mail.example.com", lmtp="127.0.0.1:2424",
                    attachment_types="application/pdf, text/*")
    check_mail_intake(good)
    assert policy_from(good).keeps("text/csv") and not policy_from(good).keeps("application/zip")
    for bad in ({"imap_url": "imap://mail.example.com/INBOX"}, {"lmtp": "2424"},
                {"imap_url": "imaps://svc:pw@mail.example.com", "imap_ca_file": str(tmp_path / "none.pem")},
                {"sender_rate": "0"}):
        with pytest.raises(ConfigError):
            check_mail_intake(settings(**bad))
    with pytest.raises(ConfigError, match="ATTACHMENT_TYPES"):
        settings(attachment_types="pdf")


@pytest.mark.parametrize("scheme", ["imaps", "imap"], ids=["imaps", "starttls"])
def test_both_tls_ways_take_mail_in_and_flag_it_seen(mail_env: MailEnv, dovecot: Dovecot,  # noqa: F811
                                                      scheme: str, database_url: str) -> None:
    folder = f"tls-{scheme}-{database_url.split(':')[0]}"
    raw = request(f"tls-{scheme}-{database_url.split(':')[0]}")
    dovecot.deliver(raw, mailbox=folder)
    assert dovecot.unseen(folder) == 1
    taken = poller_for(dovecot, mail_env.database, folder, scheme=scheme).poll_once()
    assert (taken.taken, taken.left_unread) == (1, 0)
    assert dovecot.unseen(folder) == 0 and dovecot.count(folder) == 1, "read, flagged, left in place"
    landed = mail_env.landing(raw)
    assert (landed.outcome, landed.channel, landed.raw) == ("job", "imap", raw)


def test_a_certificate_the_client_does_not_trust_is_refused(mail_env: MailEnv, dovecot: Dovecot,  # noqa: F811
                                                           database_url: str) -> None:
    folder = f"untrusted-{database_url.split(':')[0]}"
    dovecot.deliver(request(folder), mailbox=folder)
    poller = ImapPoller(mail_env.database, ImapMailbox.parse(dovecot.url("imaps", folder)),
                        ssl_context=ssl.create_default_context())  # the system's CAs only
    with pytest.raises(ssl.SSLCertVerificationError):
        poller.poll_once()
    assert dovecot.unseen(folder) == 1
    assert mail_env.count(InboundMail, InboundMail.message_id == f"<{folder}@imap.example>") == 0


def test_idle_takes_new_mail_in_at_once(mail_env: MailEnv, dovecot: Dovecot, database_url: str) -> None:  # noqa: F811
    folder = f"idle-{database_url.split(':')[0]}"
    dovecot.deliver(request(f"{folder}-first"), mailbox=folder)
    poller = poller_for(dovecot, mail_env.database, folder, interval_s=600)  # only IDLE can wake it
    poller.start()
    try:
        wait_for(lambda: poller.rounds >= 1, 20, "the first round")
        assert jobs_of(mail_env, f"{folder}-first@imap.example") == 1
        late = request(f"{folder}-late")
        dovecot.deliver(late, mailbox=folder)
        wait_for(lambda: jobs_of(mail_env, f"{folder}-late@imap.example") == 1, 15,
                 "new mail taken in while idling")
        wait_for(lambda: poller.rounds >= 2, 5, "the round woken by IDLE ends")
        assert poller.rounds == 2, "woken by IDLE, not by the interval"
        wait_for(lambda: dovecot.unseen(folder) == 0, 5, "flagged \\Seen")
    finally:
        poller.stop()
    assert poller._thread is not None and not poller._thread.is_alive(), "stop() ends the poller"


def test_without_idle_the_mailbox_is_polled_at_the_interval(mail_env: MailEnv, dovecot: Dovecot,  # noqa: F811
                                                             database_url: str,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    folder = f"no-idle-{database_url.split(':')[0]}"
    dovecot.deliver(request(f"{folder}-first"), mailbox=folder)
    poller = ImapPoller(mail_env.database, ImapMailbox.parse(dovecot.url(mailbox=folder, idle=False)),
                        interval_s=1.0, ssl_context=dovecot.ssl_context())
    caplog.set_level(logging.INFO, logger="fieldcal.intake")
    poller.start()
    try:
        wait_for(lambda: jobs_of(mail_env, f"{folder}-first@imap.example") == 1, 20, "the first round")
        dovecot.deliver(request(f"{folder}-late"), mailbox=folder)
        wait_for(lambda: jobs_of(mail_env, f"{folder}-late@imap.example") == 1, 10, "the next poll")
        rounds = poller.rounds
        wait_for(lambda: poller.rounds >= rounds + 2, 10, "polling goes on without new mail")
    finally:
        poller.stop()
    assert "IDLE not offered: polling" in caplog.text
    assert dovecot.unseen(folder) == 0


def test_database_away_leaves_mail_unread_and_it_is_taken_once_later(
        mail_env: MailEnv, dovecot: Dovecot, database_url: str) -> None:  # noqa: F811
    folder = f"fault-{database_url.split(':')[0]}"
    raws = [request(f"{folder}-{n}") for n in range(2)]
    dovecot.deliver(*raws, mailbox=folder)
    away = Database(AWAY)
    try:
        taken = poller_for(dovecot, away, folder).poll_once()
    finally:
        away.dispose()
    assert (taken.taken, taken.left_unread) == (0, 2)
    assert dovecot.unseen(folder) == 2, "nothing is flagged that was not stored"
    assert mail_env.count(InboundMail, InboundMail.message_id.like(f"<{folder}-%")) == 0
    poller = poller_for(dovecot, mail_env.database, folder)
    assert poller.poll_once().taken == 2
    assert dovecot.unseen(folder) == 0
    assert poller.poll_once().taken == 0, "nothing is read twice"
    dovecot.deliver(raws[0], mailbox=folder)  # the same message again (flagging lost, or redelivered)
    assert poller.poll_once().taken == 1
    assert mail_env.count(InboundMail, InboundMail.message_id.like(f"<{folder}-%")) == 2
    for n in range(2):
        assert jobs_of(mail_env, f"{folder}-{n}@imap.example") == 1


def test_a_message_above_the_size_limit_is_not_downloaded(mail_env: MailEnv, dovecot: Dovecot,  # noqa: F811
                                                          database_url: str) -> None:
    folder = f"large-{database_url.split(':')[0]}"
    big = request(folder) + b"A long log line that makes the message big.\r\n" * 200
    dovecot.deliver(big, mailbox=folder)
    taken = poller_for(dovecot, mail_env.database, folder,
                       policy=IntakePolicy(max_message_bytes=4096)).poll_once()
    assert taken.taken == 1 and dovecot.unseen(folder) == 0
    landed = mail_env.landing(big)
    assert landed.outcome == "refused" and "larger than 4096 bytes" in landed.note
    assert landed.raw.startswith(b"From: Ina Map") and len(landed.raw) < 1024, "only the headers"
    assert mail_env.count(AuditEntry, AuditEntry.action == Action.INTAKE_MAIL.value,
                          AuditEntry.entity_id == str(landed.id)) == 1, "the refusal is audited"
    assert jobs_of(mail_env, f"{folder}@imap.example") == 0


def test_the_worker_reads_the_mailbox_and_listens_for_lmtp(mail_env: MailEnv, dovecot: Dovecot,  # noqa: F811
                                                           database_url: str, tmp_path: Path) -> None:
    folder = f"worker-{database_url.split(':')[0]}"
    by_imap, by_lmtp = request(f"{folder}-imap"), request(f"{folder}-lmtp")
    dovecot.deliver(by_imap, mailbox=folder)
    lmtp_port = free_port()
    password_free = dovecot.url("imap", folder).replace(f":{dovecot.password}@", "@")
    assert dovecot.password not in password_free
    env = {**os.environ, "PYTHONPATH": str(REPO), "FIELDCAL_INSTANCE": str(tmp_path),
           "FIELDCAL_DATABASE_URL": database_url, "FIELDCAL_AUDIT_KEYS": AUDIT_KEY,
           "FIELDCAL_SECRET_KEYS": "intake-imap-tests-" + "k" * 40,
           "FIELDCAL_BASE_URL": "https://cal.example.test",
           "FIELDCAL_INTAKE_IMAP_URL": password_free, "FIELDCAL_INTAKE_IMAP_PASSWORD": dovecot.password,
           "FIELDCAL_INTAKE_IMAP_CA_FILE": str(dovecot.ca_file), "FIELDCAL_INTAKE_IMAP_INTERVAL": "600",
           "FIELDCAL_INTAKE_LMTP": f"127.0.0.1:{lmtp_port}"}
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen([sys.executable, "-m", "server.cli", "worker", "--interval", "0.5"],
                                  env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        try:
            wait_for(lambda: jobs_of(mail_env, f"{folder}-imap@imap.example") == 1, 30,
                     "the worker reads the mailbox")
        except AssertionError as failed:
            raise AssertionError(f"{failed}\njobs by sender: {jobs_by_sender(mail_env)}\n"
                                 f"worker log:\n{log.read_text('utf-8', 'replace')[-3000:]}") from None
        wait_for(lambda: dovecot.unseen(folder) == 0, 10, "flagged \\Seen")
        with smtplib.LMTP("127.0.0.1", lmtp_port, timeout=30) as client:
            client.sendmail("relay@imap.example", [SERVICE], by_lmtp)
        assert jobs_of(mail_env, f"{folder}-lmtp@imap.example") == 1
        assert mail_env.landing(by_lmtp).channel == "lmtp"
    finally:
        worker.terminate()
        worker.wait(20)
    text = log.read_text("utf-8", "replace")
    assert "IDLE offered" in text and f"{IMAP_USER}@127.0.0.1" in text, text[-2000:]
    assert dovecot.password not in text, "the password is never logged"
