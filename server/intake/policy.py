"""What email intake accepts: message size, mail per sender, attachment types.

Given by the settings (FIELDCAL_INTAKE_MAX_MESSAGE_BYTES, FIELDCAL_INTAKE_SENDER_RATE,
FIELDCAL_INTAKE_ATTACHMENT_TYPES) to the SMTP/LMTP receiver and the IMAP poller.
Images are always handled as photos (re-encoded, metadata dropped); any other
attachment is kept as a file on the job only when its type is in the allow-list
(`application/pdf`, or a whole family like `text/*`), otherwise it is refused and
named in the message's note.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from server.errors import ConfigError

DEFAULT_MAX_MESSAGE_BYTES = 25 * 1024 * 1024
DEFAULT_SENDER_RATE = 20  # messages an hour from one address that are read
SENDER_WINDOW = dt.timedelta(hours=1)


@dataclass(frozen=True)
class IntakePolicy:
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    sender_rate: int = DEFAULT_SENDER_RATE
    attachment_types: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_message_bytes < 1024:
            raise ConfigError("FIELDCAL_INTAKE_MAX_MESSAGE_BYTES must be at least 1024.")
        if self.sender_rate < 1:
            raise ConfigError("FIELDCAL_INTAKE_SENDER_RATE must be at least 1.")

    def keeps(self, content_type: str) -> bool:
        """Is an attachment of this (non-image) type kept as a file on the job?"""
        kind = content_type.strip().lower()
        family = kind.split("/", 1)[0] + "/*"
        return kind in self.attachment_types or family in self.attachment_types
