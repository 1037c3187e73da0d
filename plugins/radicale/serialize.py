"""Whole-calendar text from stored item texts, without parsing iCalendar.

Each stored text is one VCALENDAR; its components are copied as they are,
VTIMEZONEs once per TZID, under one VCALENDAR that carries the calendar's
name (X-WR-CALNAME) and description (X-WR-CALDESC).
"""

from __future__ import annotations

from collections.abc import Iterable

PRODID = "-//fieldcal//fieldcal 0.1//EN"
CRLF = "\r\n"
FOLD_OCTETS = 75


def escape_text(value: str) -> str:
    return (
        value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
        .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")
    )


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
        limit = FOLD_OCTETS - 1
    return (CRLF + " ").join(parts)


def _split_components(text: str, timezones: dict[str, str], out: list[str]) -> None:
    """Append the components of one VCALENDAR text to `out`; VTIMEZONEs go to `timezones`."""
    if "\r\n" not in text:
        text = text.replace("\n", CRLF)
    if "BEGIN:VTIMEZONE" not in text:
        head = text.find("BEGIN:VCALENDAR")
        start = text.find("\r\nBEGIN:", head + len("BEGIN:VCALENDAR"))
        end = text.rfind("END:VCALENDAR")
        if head != -1 and start != -1 and end > start:
            out.append(text[start + 2:end])
            return
    depth = 0
    block: list[str] = []
    tzid = ""
    for line in text.split(CRLF):
        if line.startswith("BEGIN:"):
            depth += 1
            if depth == 2:
                block, tzid = [], ""
        if depth >= 2:
            block.append(line)
            if depth == 2 and line.startswith("TZID") and block[0] == "BEGIN:VTIMEZONE":
                tzid = line.partition(":")[2]
        if line.startswith("END:"):
            if depth == 2:
                joined = CRLF.join(block) + CRLF
                if block[0] == "BEGIN:VTIMEZONE":
                    timezones.setdefault(tzid or joined, joined)
                else:
                    out.append(joined)
            depth -= 1


def whole_calendar(texts: Iterable[str], *, name: str = "", description: str = "") -> str:
    timezones: dict[str, str] = {}
    components: list[str] = []
    for text in texts:
        # The common case, one slice: CRLF text without VTIMEZONE.
        if text.startswith("BEGIN:VCALENDAR\r\n") and "BEGIN:VTIMEZONE" not in text:
            start = text.find("\r\nBEGIN:", 15)
            end = text.rfind("END:VCALENDAR")
            if start != -1 and end > start:
                components.append(text[start + 2:end])
                continue
        _split_components(text, timezones, components)
    head = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}"]
    if name:
        head.append(fold(f"X-WR-CALNAME:{escape_text(name)}"))
    if description:
        head.append(fold(f"X-WR-CALDESC:{escape_text(description)}"))
    return (CRLF.join(head) + CRLF + "".join(timezones.values()) + "".join(components)
            + "END:VCALENDAR" + CRLF)
