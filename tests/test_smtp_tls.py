"""SMTP over STARTTLS and implicit TLS with a login, against a real local server with a
certificate (self-signed, made here with openssl and trusted through SSL_CERT_FILE), with
non-ASCII addresses (SMTPUTF8) and FIELDCAL_MAIL_FROM."""

from __future__ import annotations

import datetime as dt
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from mailkit import add_customer, add_technician, book, domain, free_port, imip, post_office, settings_for
from sqlalchemy import select

from server.db import Database
from server.migrate import upgrade
from server.models import OutboxMessage
from server.notify.smtp import SmtpTarget, SmtpUnavailable
from server.worker import SENT, PermanentFailure

LOGIN = "mailer"
PASSWORD = "p@ss:w/rd 9%"  # characters a URL must quote
NON_ASCII_RECIPIENT = "jürgen.müller@bücher.example.test"
MAIL_FROM = "termine@fieldcal.example.test"
VISIT = dt.datetime(2031, 3, 4, 7, 0, tzinfo=dt.UTC)
# The implicit-TLS server takes AUTH without STARTTLS: its whole connection is TLS.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    openssl = shutil.which("openssl")
    assert openssl, "the TLS tests need the openssl command to make their certificate"
    folder = tmp_path_factory.mktemp("tls")
    made = Certificate(folder / "cert.pem", folder / "key.pem")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(made.key), "-out", str(made.cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return made


@pytest.fixture()
def trusted(certificate: Certificate, monkeypatch: pytest.MonkeyPatch) -> Certificate:
    """The client trusts the test certificate the way a deployment would: SSL_CERT_FILE."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))
    return certificate


@dataclass
class Mailbox:
    """What the server accepted, with how: TLS or not, who logged in, the envelope sender."""

    received: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.received.append({
                "tls": (session.ssl is not None  # STARTTLS; implicit TLS shows on the transport
                        or server.transport.get_extra_info("ssl_object") is not None),
                "login": session.auth_data if session.authenticated else None,
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "message": BytesParser(policy=policy.default).parsebytes(bytes(envelope.content)),
            })
        return "250 2.0.0 accepted"


def check_login(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = (isinstance(data, LoginPassword) and data.login.decode() == LOGIN
          and data.password.decode() == PASSWORD)
    return AuthResult(success=ok, auth_data=LOGIN if ok else None)


@dataclass
class TlsServer:
    port: int
    mailbox: Mailbox
    scheme: str

    def url(self, password: str = PASSWORD) -> str:
        return f"{self.scheme}://{LOGIN}:{quote(password, safe='')}@127.0.0.1:{self.port}?timeout=10"


def _serve(certificate: Certificate, implicit: bool) -> Iterator[TlsServer]:
    mailbox, port = Mailbox(), free_port()
    options: dict[str, Any] = {"authenticator": check_login, "auth_required": True,
                               "enable_SMTPUTF8": True}
    if implicit:  # TLS from the first byte (aiosmtpd's auth_require_tls knows only STARTTLS)
        options.update(ssl_context=certificate.server_context(), auth_require_tls=False)
    else:
        options.update(tls_context=certificate.server_context(), require_starttls=True,
                       auth_require_tls=True)
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, ready_timeout=10, **options)
    controller.start()
    try:
        yield TlsServer(port, mailbox, "smtps" if implicit else "smtp+starttls")
    finally:
        controller.stop()


@pytest.fixture(params=["starttls", "implicit"])
def tls_server(request: pytest.FixtureRequest, certificate: Certificate) -> Iterator[TlsServer]:
    yield from _serve(certificate, implicit=request.param == "implicit")


MESSAGE = ("From: Büro <termine@fieldcal.example.test>\r\nTo: Jürgen <" + NON_ASCII_RECIPIENT + ">\r\n"
           "Subject: Grüße\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBis Dienstag, Jürgen.\r\n"
           ).encode()


def test_tls_login_and_a_non_ascii_recipient(trusted: Certificate, tls_server: TlsServer) -> None:
    SmtpTarget.parse(tls_server.url()).send(MAIL_FROM, NON_ASCII_RECIPIENT, MESSAGE)
    [got] = tls_server.mailbox.received
    assert got["tls"] is True and got["login"] == LOGIN
    assert got["mail_from"] == MAIL_FROM and got["rcpt_tos"] == [NON_ASCII_RECIPIENT]
    assert "Jürgen" in got["message"]["To"] and got["message"]["Subject"] == "Grüße"


def test_a_wrong_password_is_retried_not_dead_lettered(trusted: Certificate, tls_server: TlsServer) -> None:
    with pytest.raises(SmtpUnavailable) as caught:
        SmtpTarget.parse(tls_server.url("wrong")).send(MAIL_FROM, "ops@example.test",
                                                       b"Subject: x\r\n\r\nx\r\n")
    assert "wrong" not in str(caught.value), "the password is not in the error"
    assert tls_server.mailbox.received == []


def test_an_untrusted_certificate_is_refused(tls_server: TlsServer, monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    empty = tmp_path / "no-cas.pem"
    empty.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path))
    with pytest.raises(SmtpUnavailable) as caught:
        SmtpTarget.parse(tls_server.url()).send(MAIL_FROM, "ops@example.test", b"Subject: x\r\n\r\nx\r\n")
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value) or "certificate" in str(caught.value).lower()
    assert tls_server.mailbox.received == []


def test_plain_smtp_to_a_starttls_only_server_sends_nothing(certificate: Certificate) -> None:
    for server in _serve(certificate, implicit=False):
        with pytest.raises((SmtpUnavailable, PermanentFailure)):
            SmtpTarget.parse(f"smtp://127.0.0.1:{server.port}?timeout=10").send(
                MAIL_FROM, "ops@example.test", b"Subject: x\r\n\r\nx\r\n")
        assert server.mailbox.received == []


@pytest.fixture(scope="module")
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url)
    upgrade(db)
    try:
        yield db
    finally:
        db.dispose()


def test_worker_sends_from_fieldcal_mail_from_over_tls(trusted: Certificate, tls_server: TlsServer,
                                                       database: Database, tmp_path: Path) -> None:
    settings = settings_for(database.url, tmp_path, tls_server.url()).with_overrides(mail_from=MAIL_FROM)
    post = post_office(database, settings)
    with domain(database) as ctx:
        technician = add_technician(ctx, "Tanja")
        customer = add_customer(ctx, "Bücher Müller", email=NON_ASCII_RECIPIENT)
        visit_id = book(ctx, customer, technician, VISIT + dt.timedelta(days=3)).id
        customer_address = customer.email
    post.drain()
    to_customer = [r for r in tls_server.mailbox.received if r["rcpt_tos"] == [customer_address]]
    assert len(to_customer) == 1, tls_server.mailbox.received
    got = to_customer[0]
    assert got["tls"] is True and got["login"] == LOGIN
    assert got["mail_from"] == MAIL_FROM, "the envelope sender is FIELDCAL_MAIL_FROM"
    assert parseaddr(str(got["message"]["From"]))[1] == MAIL_FROM
    imip(got["message"], "REQUEST")
    with database.read() as session:
        rows = [r for r in session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "email"))
                if r.payload.get("to") == customer_address and r.payload.get("appointment_id") == visit_id]
    assert len(rows) == 1 and rows[0].status == SENT
