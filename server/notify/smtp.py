"""Sending one finished message over SMTP (FIELDCAL_SMTP_URL).

URLs: smtp://host[:25] (plain), smtp+starttls://user:pass@host[:587],
smtps://user:pass@host[:465]; `?timeout=SECONDS` (default 30).

Outcomes: return = accepted by the server. A refused recipient or message with a
5xx reply raises PermanentFailure (the worker dead-letters it with the reason);
everything else (refused connection, timeouts, 4xx replies, a lost connection,
bad credentials or a refused sender, which are fixed in the configuration)
raises SmtpUnavailable and the worker retries with backoff.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from server.errors import ConfigError
from server.worker import PermanentFailure

SCHEMES = {"smtp": ("plain", 25), "smtp+starttls": ("starttls", 587), "smtps": ("ssl", 465)}
DEFAULT_TIMEOUT_S = 30.0


class SmtpUnavailable(Exception):
    """Sending failed for now; the same message may be tried again later."""


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    security: str  # plain, starttls or ssl
    username: str = ""
    password: str = ""
    timeout_s: float = DEFAULT_TIMEOUT_S

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        parts = urlsplit(url.strip())
        if parts.scheme not in SCHEMES:
            raise ConfigError(
                f"FIELDCAL_SMTP_URL must start with smtp://, smtp+starttls:// or smtps://, "
                f"not {parts.scheme + '://' if parts.scheme else repr(url)}")
        security, default_port = SCHEMES[parts.scheme]
        try:
            port = parts.port or default_port
        except ValueError as exc:
            raise ConfigError(f"FIELDCAL_SMTP_URL has a bad port: {exc}") from exc
        if not parts.hostname:
            raise ConfigError("FIELDCAL_SMTP_URL names no host (e.g. smtp://127.0.0.1:25).")
        timeout = DEFAULT_TIMEOUT_S
        for raw in parse_qs(parts.query).get("timeout", []):
            try:
                timeout = float(raw)
            except ValueError as exc:
                raise ConfigError(f"FIELDCAL_SMTP_URL timeout must be seconds, not {raw!r}") from exc
        return cls(host=parts.hostname, port=port, security=security,
                   username=unquote(parts.username or ""), password=unquote(parts.password or ""),
                   timeout_s=timeout)

    @property
    def label(self) -> str:
        """Where mail goes, for logs (never the password)."""
        return f"{self.security} {self.host}:{self.port}"

    def _connect(self) -> smtplib.SMTP:
        if self.security == "ssl":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout_s,
                                    context=ssl.create_default_context())
        client = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
        if self.security == "starttls":
            client.starttls(context=ssl.create_default_context())
        return client

    def send(self, sender: str, recipient: str, data: bytes) -> None:
        """Hand one message for one recipient to the server."""
        options = [] if data.isascii() and recipient.isascii() else ["SMTPUTF8"]
        try:
            with self._connect() as client:
                if self.username:
                    client.login(self.username, self.password)
                client.sendmail(sender, [recipient], data, mail_options=options)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()), (0, b""))
            if 500 <= code < 600:
                raise PermanentFailure(f"{recipient} refused by {self.label}: {code} "
                                       f"{_text(reply)}") from exc
            raise SmtpUnavailable(f"{recipient} deferred by {self.label}: {code} {_text(reply)}") from exc
        except smtplib.SMTPDataError as exc:
            if 500 <= exc.smtp_code < 600:
                raise PermanentFailure(f"message refused by {self.label}: {exc.smtp_code} "
                                       f"{_text(exc.smtp_error)}") from exc
            raise SmtpUnavailable(f"{self.label} deferred the message: {exc.smtp_code} "
                                  f"{_text(exc.smtp_error)}") from exc
        except smtplib.SMTPResponseException as exc:
            raise SmtpUnavailable(f"{self.label} answered {exc.smtp_code} {_text(exc.smtp_error)}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise SmtpUnavailable(f"{self.label} unreachable: {type(exc).__name__}: {exc}") from exc


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
