"""The SMTP/LMTP receiver a mail server forwards service@ to (aiosmtpd).

`FIELDCAL_INTAKE_SMTP=host:port` speaks SMTP, `FIELDCAL_INTAKE_LMTP=host:port` LMTP
(RFC 2033, what Postfix's `lmtp:` transport and Dovecot/Exim deliver with); both may
be set. Only the configured addresses are accepted (550 for others); a message above
FIELDCAL_INTAKE_MAX_MESSAGE_BYTES gets 552. A message is stored before it is
acknowledged: if the database cannot take it, the answer is `451 4.3.0` and the
sending server tries again later; once stored, the answer is 250 even if reading it
fails (it is read again later, nothing is lost). LMTP answers DATA once per accepted
recipient; all of them share the one stored message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP
from sqlalchemy.exc import SQLAlchemyError

from server.db import Database
from server.intake import mail as intake_mail
from server.intake.policy import IntakePolicy

log = logging.getLogger("fieldcal.intake")


def parse_listen(text: str) -> tuple[str, int]:
    """`host:port` (an IPv6 host in brackets) → (host, port)."""
    host, _, port = text.strip().rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not host:port")
    return host, int(port)


@dataclass
class IntakeHandler:
    database: Database
    addresses: frozenset[str]
    organizer: str = ""
    policy: IntakePolicy = field(default_factory=IntakePolicy)
    channel: str = "smtp"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address.strip().lower() not in self.addresses:
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        status = await self._deliver(envelope)
        if isinstance(server, LMTP):  # one reply for each recipient (RFC 2033 4.2)
            return "\r\n".join([status] * max(1, len(envelope.rcpt_tos)))
        return status

    async def _deliver(self, envelope: Any) -> str:
        raw = bytes(envelope.original_content or envelope.content or b"")
        loop = asyncio.get_running_loop()
        try:
            mail_id = await loop.run_in_executor(None, intake_mail.store_raw, self.database, raw,
                                                 self.channel, str(envelope.mail_from or ""))
        except SQLAlchemyError as exc:
            log.warning("inbound mail not stored (%s): answering 451 so the sender retries",
                        type(exc).__name__)
            return "451 4.3.0 Temporarily unable to store the message; please try again later"
        await loop.run_in_executor(None, intake_mail.read_stored, self.database, mail_id,
                                   self.channel, self.organizer, self.policy)
        return "250 2.0.0 Message accepted"


class IntakeController(Controller):
    """aiosmtpd on host:port, speaking SMTP (or LMTP with `lmtp=True`)."""

    def __init__(self, handler: IntakeHandler, host: str, port: int, *, lmtp: bool = False) -> None:
        self.lmtp = lmtp
        self.size_limit = handler.policy.max_message_bytes
        super().__init__(handler, hostname=host, port=port, ready_timeout=10,
                         data_size_limit=self.size_limit)

    def factory(self) -> SMTP:
        kind = LMTP if self.lmtp else SMTP
        return kind(self.handler, data_size_limit=self.size_limit, hostname=None,
                    ident="fieldcal intake")


def receiver(database: Database, listen: str, addresses: Iterable[str], organizer: str = "",
             *, lmtp: bool = False, policy: IntakePolicy | None = None) -> IntakeController:
    host, port = parse_listen(listen)
    handler = IntakeHandler(database, frozenset(a.strip().lower() for a in addresses if a.strip()),
                            organizer, policy or IntakePolicy(), "lmtp" if lmtp else "smtp")
    return IntakeController(handler, host, port, lmtp=lmtp)
