"""Reading service@ mail from a mailbox over IMAP (FIELDCAL_INTAKE_IMAP_URL, `imapclient`).

URLs: `imaps://user:password@host[:993][/Folder]` (TLS from the start) or
`imap://user:password@host[:143][/Folder]` (STARTTLS, required: a server that does
not offer it is refused, credentials never travel in clear). The folder defaults to
INBOX. The password may instead be given as FIELDCAL_INTAKE_IMAP_PASSWORD; a private
certificate authority as FIELDCAL_INTAKE_IMAP_CA_FILE.

Each unseen message is fetched without marking it (BODY.PEEK[]), stored as it came
(the same `store_raw` the SMTP receiver uses), read, and only then flagged \\Seen. If
the database cannot store it, the message stays unread and is fetched again on the
next round; if flagging fails after the commit, the next round finds it stored
already (the same Message-ID is one message) and only flags it. A message above the
size limit is not downloaded: its headers are kept, refused, and it is flagged \\Seen
for a person to look at in the mailbox.

Between rounds the poller waits in IDLE where the server offers it (woken at once by
new mail) and otherwise sleeps; either way it looks again after FIELDCAL_INTAKE_IMAP_INTERVAL
seconds (which also retries what the database refused). A lost connection is opened again.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from sqlalchemy.exc import SQLAlchemyError

from server.db import Database
from server.errors import ConfigError
from server.intake import mail as intake_mail
from server.intake.policy import IntakePolicy

log = logging.getLogger("fieldcal.intake")

SCHEMES = {"imaps": ("ssl", 993), "imap": ("starttls", 143)}
SEEN = b"\\Seen"
IDLE_RENEW_S = 25 * 60  # RFC 2177: re-issue IDLE at least every 29 minutes
IDLE_TICK_S = 1.0  # how soon a waiting poller notices it is asked to stop
TIMEOUT_S = 60.0
MAX_BACKOFF_S = 300.0


@dataclass(frozen=True)
class ImapMailbox:
    host: str
    port: int
    security: str  # ssl or starttls
    username: str
    password: str = field(repr=False)
    folder: str = "INBOX"

    @classmethod
    def parse(cls, url: str, password: str = "") -> ImapMailbox:
        parts = urlsplit(url.strip())
        if parts.scheme not in SCHEMES:
            raise ConfigError("FIELDCAL_INTAKE_IMAP_URL must start with imaps:// (TLS) or imap:// "
                              f"(STARTTLS), not {parts.scheme + '://' if parts.scheme else repr(url)}")
        security, default_port = SCHEMES[parts.scheme]
        try:
            port = parts.port or default_port
        except ValueError as exc:
            raise ConfigError(f"FIELDCAL_INTAKE_IMAP_URL has a bad port: {exc}") from exc
        if not parts.hostname:
            raise ConfigError("FIELDCAL_INTAKE_IMAP_URL names no host (e.g. imaps://user@mail.example.com).")
        username = unquote(parts.username or "")
        secret = unquote(parts.password or "") or password
        if not username or not secret:
            raise ConfigError("FIELDCAL_INTAKE_IMAP_URL needs a user and a password (in the URL, "
                              "or the password as FIELDCAL_INTAKE_IMAP_PASSWORD).")
        folder = unquote(parts.path.lstrip("/")) or "INBOX"
        return cls(parts.hostname, port, security, username, secret, folder)

    @property
    def label(self) -> str:
        """Which mailbox, for logs (never the password)."""
        return f"{self.username}@{self.host}:{self.port}/{self.folder} ({self.security})"


@dataclass
class Round:
    """What one look at the mailbox did."""

    taken: int = 0  # stored (and flagged \\Seen)
    left_unread: int = 0  # the database could not store them; fetched again next round


class ImapPoller:
    def __init__(self, database: Database, mailbox: ImapMailbox, *, organizer: str = "",
                 interval_s: float = 60.0, policy: IntakePolicy | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.database = database
        self.mailbox = mailbox
        self.organizer = organizer
        self.interval_s = interval_s
        self.policy = policy or IntakePolicy()
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.stopping = threading.Event()
        self.rounds = 0
        self._thread: threading.Thread | None = None

    @contextmanager
    def connect(self) -> Iterator[IMAPClient]:
        box = self.mailbox
        client = IMAPClient(box.host, port=box.port, ssl=box.security == "ssl",
                            ssl_context=self.ssl_context, timeout=TIMEOUT_S)
        try:
            if box.security == "starttls":
                client.starttls(self.ssl_context)  # refuses a server without STARTTLS
            client.login(box.username, box.password)
            client.select_folder(box.folder)
            yield client
        finally:
            try:
                client.logout()
            except (IMAPClientError, OSError):
                client.shutdown()

    def poll_once(self) -> Round:
        """Connect, take in what is unseen, disconnect."""
        with self.connect() as client:
            return self.take_unseen(client)

    def take_unseen(self, client: IMAPClient) -> Round:
        found = Round()
        uids = client.search(["UNSEEN"])
        sizes = client.fetch(uids, ["RFC822.SIZE"]) if uids else {}
        for uid in uids:
            size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))
            too_large = size > self.policy.max_message_bytes
            part = b"BODY[HEADER]" if too_large else b"BODY[]"
            fetched = client.fetch([uid], [part.replace(b"BODY", b"BODY.PEEK").decode()]).get(uid, {})
            if part not in fetched:  # expunged by someone else meanwhile
                continue
            try:
                if too_large:
                    intake_mail.store_refused(self.database, bytes(fetched[part]), "imap",
                                              f"larger than {self.policy.max_message_bytes} bytes "
                                              f"({size}); left in the mailbox")
                else:
                    mail_id = intake_mail.store_raw(self.database, bytes(fetched[part]), "imap")
                    intake_mail.read_stored(self.database, mail_id, "imap", self.organizer, self.policy)
            except SQLAlchemyError as exc:
                log.warning("IMAP message %s left unread: the database could not store it (%s)",
                            uid, type(exc).__name__)
                found.left_unread = len(uids) - found.taken
                break  # the rest would fail alike; all of them are fetched again next round
            client.add_flags([uid], [SEEN])
            found.taken += 1
        self.rounds += 1
        return found

    def wait(self, client: IMAPClient) -> None:
        """Until new mail (IDLE, where offered), the interval is over, or stop()."""
        deadline = time.monotonic() + self.interval_s
        if not client.has_capability("IDLE"):
            self.stopping.wait(self.interval_s)
            return
        client.idle()
        try:
            renew = time.monotonic() + IDLE_RENEW_S
            while not self.stopping.is_set() and time.monotonic() < min(deadline, renew):
                responses = client.idle_check(timeout=IDLE_TICK_S)
                if any(isinstance(r, tuple) and len(r) > 1 and r[1] in (b"EXISTS", b"RECENT")
                       for r in responses):
                    return
        finally:
            client.idle_done()

    def run(self) -> None:
        """Poll until stop(): one connection, kept open, opened again after a failure."""
        backoff = 1.0
        while not self.stopping.is_set():
            try:
                with self.connect() as client:
                    log.info("mail intake reading %s (IDLE %s)", self.mailbox.label,
                             "offered" if client.has_capability("IDLE") else "not offered: polling")
                    backoff = 1.0
                    while not self.stopping.is_set():
                        self.take_unseen(client)
                        self.wait(client)
            except (IMAPClientError, OSError) as exc:  # refused, lost, timed out, TLS or login failed
                log.warning("IMAP %s: %s: %s; trying again in %.0f s", self.mailbox.label,
                            type(exc).__name__, exc, backoff)
                self.stopping.wait(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2, max(self.interval_s, 1.0))

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="fieldcal-imap-intake", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
