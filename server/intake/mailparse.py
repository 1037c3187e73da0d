"""Reading an email that arrived: who sent it, what it says, what it answers, what it is.

Pure functions over the raw bytes; nothing here touches the database. HTML is turned
into text by a parser that keeps words and drops everything else (scripts, styles,
images, links' targets): attacker HTML is never rendered or executed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr
from html.parser import HTMLParser

MESSAGE_ID = re.compile(r"<[^<>\s]{1,400}>")
JOB_REFERENCE = re.compile(r"\[#J(\d{1,10})\]")
AUTO_PRECEDENCE = {"bulk", "auto_reply", "list", "junk"}
ROBOT_SENDERS = re.compile(r"^(mailer-daemon|postmaster|no-?reply|noreply)@", re.IGNORECASE)
QUOTE_HEADERS = (
    re.compile(r"^On .{3,200}wrote:\s*$"),  # Gmail, Apple Mail
    re.compile(r"^Am .{3,200}schrieb .{1,200}:\s*$"),  # German clients
    re.compile(r"^-{2,}\s*(Original Message|Ursprüngliche Nachricht|Forwarded message)\s*-{2,}",
               re.IGNORECASE),
    re.compile(r"^(From|Von):\s.+$"),  # Outlook's header block
    re.compile(r"^_{10,}\s*$"),  # Outlook's rule above the quoted message
)
SIGNATURE = re.compile(r"^(-- ?|Sent from my .{1,40}|Von meinem .{1,40} gesendet)\s*$")
BLOCK_TAGS = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table",
              "blockquote", "pre", "hr"}
SKIPPED_TAGS = {"script", "style", "head", "title", "template", "noscript", "svg", "math",
                "object", "iframe"}


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIPPED_TAGS:
            self.skipping += 1
        elif tag in BLOCK_TAGS:
            self.parts.append("\n")
        if tag == "blockquote":
            self.parts.append("\n> ")

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED_TAGS and self.skipping:
            self.skipping -= 1
        elif tag in BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def html_to_text(markup: str) -> str:
    parser = _Text()
    parser.feed(markup)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def trim_reply(text: str) -> str:
    """What the person wrote now: quoted history and the signature cut off."""
    kept: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if any(p.match(stripped) for p in QUOTE_HEADERS) or SIGNATURE.match(line.rstrip()):
            break
        if stripped.startswith(">"):
            continue
        kept.append(line.rstrip())
    return "\n".join(kept).strip()


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Parsed:
    message_id: str
    sender: str  # the address, lower-cased
    sender_name: str
    subject: str
    text: str  # the whole text (HTML converted)
    references: tuple[str, ...]  # In-Reply-To and References, nearest first
    automatic: str  # why it is an auto-reply or list mail, "" when a person wrote it
    is_report: bool  # a delivery status notification
    attachments: tuple[Attachment, ...] = field(default=())


def parse(raw: bytes) -> Parsed:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    name, address = _sender(message)
    references = tuple(reversed(MESSAGE_ID.findall(_header(message, "References"))))
    replied = tuple(MESSAGE_ID.findall(_header(message, "In-Reply-To")))
    return Parsed(
        message_id=(MESSAGE_ID.findall(_header(message, "Message-ID")) or [""])[0],
        sender=address, sender_name=name, subject=" ".join(_header(message, "Subject").split()),
        text=_body_text(message), references=replied + references,
        automatic=_automatic(message, address), is_report=_is_report(message),
        attachments=tuple(_attachments(message)))


def _header(message: Message, name: str) -> str:
    try:
        value = message.get(name)
    except (ValueError, TypeError, IndexError):  # a header the parser cannot decode
        return ""
    return str(value) if value is not None else ""


def _sender(message: Message) -> tuple[str, str]:
    for header in ("Reply-To", "From"):
        text = _header(message, header)
        if not text:
            continue
        try:
            found = getaddresses([text])
        except (ValueError, IndexError):
            found = [parseaddr(text)]
        for name, address in found:
            if "@" in address and " " not in address.strip():
                return " ".join(name.split()), address.strip().lower()
    return "", ""


def _automatic(message: Message, sender: str) -> str:
    auto = _header(message, "Auto-Submitted").strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    precedence = _header(message, "Precedence").strip().lower()
    if precedence in AUTO_PRECEDENCE:
        return f"Precedence: {precedence}"
    if _header(message, "X-Auto-Response-Suppress"):
        return "X-Auto-Response-Suppress"
    if _header(message, "X-Autoreply") or _header(message, "X-Autorespond"):
        return "X-Autoreply"
    if _header(message, "List-Id") or _header(message, "List-Unsubscribe"):
        return "list mail"
    if sender and ROBOT_SENDERS.match(sender):
        return f"sent by {sender}"
    return ""


def _is_report(message: EmailMessage) -> bool:
    return (message.get_content_type() == "multipart/report"
            and str(message.get_param("report-type", "")).lower() == "delivery-status")


def _decoded(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
    except (LookupError, UnicodeError, ValueError, AssertionError):
        payload = part.get_payload(decode=True) or b""
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


def _body_text(message: EmailMessage) -> str:
    try:
        body = message.get_body(preferencelist=("plain", "html"))
    except (KeyError, ValueError):
        body = None
    if body is None:
        return ""
    text = _decoded(body)
    if body.get_content_type() == "text/html":
        text = html_to_text(text)
    return text.replace("\r\n", "\n").strip()


def _attachments(message: EmailMessage) -> list[Attachment]:
    found: list[Attachment] = []
    for part in message.walk():
        if part.is_multipart() or part.get_content_maintype() in ("text", "message"):
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes) and payload:
            found.append(Attachment(part.get_filename() or "attachment", part.get_content_type(),
                                    payload))
    return found


def report_details(raw: bytes) -> tuple[bool, tuple[str, ...], tuple[str, ...]]:
    """For a delivery status notification: (permanent failure?, failed recipients, the
    Message-IDs of the original message)."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    permanent, recipients, originals = False, [], []
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            blocks = part.get_payload()
            for block in blocks if isinstance(blocks, list) else []:
                if not isinstance(block, Message):
                    continue
                action = str(block.get("Action", "")).strip().lower()
                status = str(block.get("Status", "")).strip()
                if action == "failed" and status.startswith("5"):
                    permanent = True
                    final = str(block.get("Final-Recipient") or block.get("Original-Recipient") or "")
                    address = final.partition(";")[2].strip().lower()
                    if address:
                        recipients.append(address)
        elif kind in ("message/rfc822", "text/rfc822-headers"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                originals += MESSAGE_ID.findall(_header(inner[0], "Message-ID"))
            elif isinstance(inner, str):
                match = re.search(r"^Message-ID:\s*(<[^>]+>)", inner, re.IGNORECASE | re.MULTILINE)
                if match:
                    originals.append(match.group(1))
    return permanent, tuple(recipients), tuple(originals)


def address_of(text: str) -> str:
    try:
        return Address(addr_spec=text).addr_spec.lower()
    except (ValueError, IndexError):
        return ""
