"""Content lines of iCalendar (RFC 5545 §3.1, §3.3.11) and vCard (RFC 6350 §3.2, §3.4):
TEXT values escaped, long lines folded at 75 octets. The two formats agree on both."""

from __future__ import annotations

CRLF = "\r\n"
FOLD_OCTETS = 75


def escape_text(value: str) -> str:
    """A TEXT value: backslash, comma, semicolon and newlines escaped."""
    return (value.replace("\\", "\\\\").replace(",", "\\,").replace(";", "\\;")
            .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n"))


def fold(line: str) -> str:
    """Fold a content line at 75 octets without splitting a UTF-8 sequence."""
    data = line.encode("utf-8")
    if len(data) <= FOLD_OCTETS:
        return line
    parts: list[str] = []
    limit = FOLD_OCTETS
    while data:
        cut = min(limit, len(data))
        while cut < len(data) and (data[cut] & 0xC0) == 0x80:
            cut -= 1
        parts.append(data[:cut].decode("utf-8"))
        data = data[cut:]
        limit = FOLD_OCTETS - 1  # the leading space of a continuation counts
    return (CRLF + " ").join(parts)
