"""A real IMAP server for the tests: Debian's dovecot on loopback, one per test module.

`./dev test` installs `dovecot-imapd` when it is missing (`ensure_dovecot`). The fixture
writes its own configuration into a temporary folder (nothing under /etc is read or
changed) and runs `dovecot -F -c <that file>` in the foreground:
- users come from a passwd-file; the mailbox is a maildir inside the folder;
- IMAP with STARTTLS and IMAPS listen on two free loopback ports (and IMAPS without
  IDLE on 127.0.0.2, through a `local` block overriding `imap_capability`), with a self-signed
  certificate the fixture makes (the `cryptography` package); the client trusts it
  through `ca_file`; plaintext logins are refused (`disable_plaintext_auth`);
- run by an ordinary user, dovecot runs entirely as that user (its internal, login and
  mail user are all the caller; ports above 1024 need no privilege). Run by root (CI,
  the containers), dovecot refuses root for these roles, so it runs as the users the
  Debian package creates: `dovecot` (internal and mail user, owner of the maildir) and
  `dovenull` (login processes); the folder is made traversable for them.
"""

from __future__ import annotations

import datetime as dt
import grp
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from imapclient import IMAPClient

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER = "service"
PASSWORD = "imap-test-password-7d1f"
STARTUP_TIMEOUT_S = 20.0

CONFIG = """\
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
protocols = imap
listen = 127.0.0.1
default_internal_user = {internal}
default_login_user = {login}
default_internal_group = {internal_group}
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
last_valid_gid = {gid}
ssl = yes
ssl_cert = <{folder}/cert.pem
ssl_key = <{folder}/key.pem
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
mail_location = maildir:{folder}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {folder}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {folder}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service imap {{
  process_limit = 20
}}
# A server without IDLE, for the poller's other way of waiting: the same mail, on 127.0.0.2.
service imap-login {{
  inet_listener plain_old {{
    address = 127.0.0.2
    port = {no_idle_port}
    ssl = yes
  }}
}}
local 127.0.0.2 {{
  protocol imap {{
    imap_capability = IMAP4rev1 LITERAL+ SASL-IR ENABLE UIDPLUS
  }}
}}
{unprivileged}
"""

# Without root the master cannot chroot login processes nor change users.
UNPRIVILEGED = """\
service imap-login {
  chroot =
}
service anvil {
  chroot =
}
service auth {
  user = $default_internal_user
}
service auth-worker {
  user = $default_internal_user
}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def self_signed(folder: Path) -> Path:
    """A certificate for 127.0.0.1 and localhost (and its key) in `folder`; returns the cert."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ip_address("127.0.0.1")),
                 x509.IPAddress(ip_address("127.0.0.2"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return folder / "cert.pem"


@dataclass
class Dovecot:
    folder: Path
    imap_port: int
    imaps_port: int
    no_idle_port: int  # IMAPS on 127.0.0.2, offering no IDLE
    ca_file: Path
    process: subprocess.Popen[bytes]
    user: str = USER
    password: str = PASSWORD

    def url(self, scheme: str = "imaps", mailbox: str = "INBOX", *, idle: bool = True) -> str:
        port = self.imaps_port if scheme == "imaps" else self.imap_port
        host = "127.0.0.1"
        if not idle:
            scheme, host, port = "imaps", "127.0.0.2", self.no_idle_port
        return f"{scheme}://{self.user}:{self.password}@{host}:{port}/{mailbox}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    @contextmanager
    def client(self, mailbox: str = "INBOX") -> Iterator[IMAPClient]:
        """A client of our own (the customer's side): append mail, look at flags."""
        client = IMAPClient("127.0.0.1", port=self.imaps_port, ssl=True,
                            ssl_context=self.ssl_context(), timeout=30)
        try:
            client.login(self.user, self.password)
            if not client.folder_exists(mailbox):
                client.create_folder(mailbox)
            client.select_folder(mailbox)
            yield client
        finally:
            client.logout()

    def deliver(self, *raws: bytes, mailbox: str = "INBOX") -> None:
        with self.client(mailbox) as client:
            for raw in raws:
                client.append(mailbox, raw)

    def unseen(self, mailbox: str = "INBOX") -> int:
        with self.client(mailbox) as client:
            return len(client.search(["UNSEEN"]))

    def count(self, mailbox: str = "INBOX") -> int:
        with self.client(mailbox) as client:
            return len(client.search(["ALL"]))

    def log_tail(self) -> str:
        path = self.folder / "dovecot.log"
        return "\n".join(path.read_text("utf-8", "replace").splitlines()[-30:]) if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.folder, ignore_errors=True)


def _listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def start_dovecot() -> Dovecot:
    """Start dovecot on free loopback ports; raise with its log if it does not come up."""
    if not Path(DOVECOT).exists():
        raise RuntimeError("dovecot is not installed; `./dev test` installs it "
                           "(apt-get install dovecot-imapd)")
    folder = Path(tempfile.mkdtemp(prefix="fieldcal-dovecot-"))
    root = os.geteuid() == 0
    if root:
        mail_user = pwd.getpwnam("dovecot")
        internal, login = "dovecot", "dovenull"
        folder.chmod(0o711)  # the mail user reaches its maildir; nothing can be listed
    else:
        mail_user = pwd.getpwuid(os.geteuid())
        internal = login = mail_user.pw_name
    ca_file = self_signed(folder)
    (folder / "key.pem").chmod(0o600)
    (folder / "mail").mkdir()
    (folder / "home").mkdir()
    if root:
        for path in (folder / "mail", folder / "home"):
            os.chown(path, mail_user.pw_uid, mail_user.pw_gid)
    (folder / "passwd").write_text(
        f"{USER}:{PASSWORD}:{mail_user.pw_uid}:{mail_user.pw_gid}::{folder}/home::\n", "utf-8")
    imap_port, imaps_port, no_idle_port = free_port(), free_port(), free_port()
    (folder / "dovecot.conf").write_text(CONFIG.format(
        folder=folder, internal=internal, login=login, internal_group=grp.getgrgid(mail_user.pw_gid).gr_name,
        uid=mail_user.pw_uid, gid=mail_user.pw_gid, imap_port=imap_port,
        imaps_port=imaps_port, no_idle_port=no_idle_port, unprivileged="" if root else UNPRIVILEGED), "utf-8")
    process = subprocess.Popen([DOVECOT, "-F", "-c", str(folder / "dovecot.conf")],
                               stdout=subprocess.DEVNULL, stderr=open(folder / "stderr.log", "wb"))
    server = Dovecot(folder, imap_port, imaps_port, no_idle_port, ca_file, process)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not (_listening(imap_port) and _listening(imaps_port) and _listening(no_idle_port, "127.0.0.2")):
        if process.poll() is not None or time.monotonic() > deadline:
            problem = (folder / "stderr.log").read_text("utf-8", "replace") + server.log_tail()
            server.stop()
            raise RuntimeError(f"dovecot did not start: {problem}")
        time.sleep(0.05)
    return server


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    """One dovecot for the whole test module (each test uses its own folders)."""
    server = start_dovecot()
    yield server
    server.stop()
