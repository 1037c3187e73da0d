"""The mail intake the outbox worker runs beside it (so `fieldcal serve` starts it too):
the SMTP receiver (FIELDCAL_INTAKE_SMTP), the LMTP receiver (FIELDCAL_INTAKE_LMTP) and
the IMAP poller (FIELDCAL_INTAKE_IMAP_URL), each only when its setting is given."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field

from server.config import Settings
from server.db import Database
from server.errors import ConfigError
from server.intake.imap import ImapMailbox, ImapPoller
from server.intake.policy import IntakePolicy
from server.intake.receiver import IntakeController, parse_listen, receiver

log = logging.getLogger("fieldcal.intake")


def policy_from(settings: Settings) -> IntakePolicy:
    return IntakePolicy(max_message_bytes=settings.intake_max_message_bytes,
                        sender_rate=settings.intake_sender_rate,
                        attachment_types=settings.intake_attachment_types)


def imap_mailbox(settings: Settings) -> tuple[ImapMailbox, ssl.SSLContext]:
    """The mailbox to read and how its certificate is checked (ConfigError if unusable)."""
    mailbox = ImapMailbox.parse(settings.intake_imap_url, settings.intake_imap_password)
    try:
        context = ssl.create_default_context(cafile=settings.intake_imap_ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"FIELDCAL_INTAKE_IMAP_CA_FILE {settings.intake_imap_ca_file!r} "
                          f"cannot be read as PEM certificates: {exc}") from exc
    if settings.intake_imap_interval < 1:
        raise ConfigError("FIELDCAL_INTAKE_IMAP_INTERVAL must be at least 1 second.")
    return mailbox, context


def imap_poller(database: Database, settings: Settings) -> ImapPoller:
    mailbox, context = imap_mailbox(settings)
    return ImapPoller(database, mailbox, organizer=settings.organizer,
                      interval_s=float(settings.intake_imap_interval), policy=policy_from(settings),
                      ssl_context=context)


def check_mail_intake(settings: Settings) -> None:
    """Refuse bad intake settings (ConfigError) before anything starts."""
    policy_from(settings)
    for name, listen in (("SMTP", settings.intake_smtp), ("LMTP", settings.intake_lmtp)):
        if listen:
            try:
                parse_listen(listen)
            except ValueError as exc:
                raise ConfigError(f"FIELDCAL_INTAKE_{name}: {exc}") from exc
    if settings.intake_imap_url:
        imap_mailbox(settings)


@dataclass
class MailIntake:
    receivers: list[IntakeController] = field(default_factory=list)
    poller: ImapPoller | None = None

    def stop(self) -> None:
        for controller in self.receivers:
            controller.stop()
        if self.poller is not None:
            self.poller.stop()


def start_mail_intake(database: Database, settings: Settings) -> MailIntake:
    """Start what the settings ask for (nothing when none is set). Bad settings raise
    ConfigError before anything listens."""
    policy = policy_from(settings)
    poller = imap_poller(database, settings) if settings.intake_imap_url else None
    started = MailIntake()
    for listen, lmtp in ((settings.intake_smtp, False), (settings.intake_lmtp, True)):
        if listen:
            try:
                controller = receiver(database, listen, settings.intake_mailboxes, settings.organizer,
                                      lmtp=lmtp, policy=policy)
            except ValueError as exc:
                raise ConfigError(f"FIELDCAL_INTAKE_{'LMTP' if lmtp else 'SMTP'}: {exc}") from exc
            controller.start()
            started.receivers.append(controller)
            log.info("mail intake listening on %s (%s) for %s", listen, "LMTP" if lmtp else "SMTP",
                     ", ".join(settings.intake_mailboxes))
    if poller is not None:
        poller.start()
        started.poller = poller
    return started
