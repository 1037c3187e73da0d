"""Whole-calendar text from stored item texts, without parsing iCalendar.

Each stored text is one VCALENDAR; its components are copied as they are,
VTIMEZONEs once per TZID, under one VCALENDAR that carries the calendar's
name (X-WR-CALNAME) and description (X-WR-CALDESC).
"""

from __future__ import annotations

import io
from collections.abc import Iterable

from server.contentlines import CRLF, escape_text, fold

PRODID = "-//fieldcal//fieldcal 0.1//EN"


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


def whole_calendar_bytes(texts: Iterable[str], *, name: str = "", description: str = "") -> bytes:
    """The whole calendar as UTF-8. The components go straight into one buffer as the texts
    stream by (VTIMEZONEs are kept aside and put first): the body is held about twice at
    most, never as a list of pieces beside a joined copy."""
    timezones: dict[str, str] = {}
    body = io.BytesIO()
    for text in texts:
        # The common case, one slice: CRLF text without VTIMEZONE.
        if text.startswith("BEGIN:VCALENDAR\r\n") and "BEGIN:VTIMEZONE" not in text:
            start = text.find("\r\nBEGIN:", 15)
            end = text.rfind("END:VCALENDAR")
            if start != -1 and end > start:
                body.write(text[start + 2:end].encode("utf-8"))
                continue
        components: list[str] = []
        _split_components(text, timezones, components)
        for component in components:
            body.write(component.encode("utf-8"))
    head = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}"]
    if name:
        head.append(fold(f"X-WR-CALNAME:{escape_text(name)}"))
    if description:
        head.append(fold(f"X-WR-CALDESC:{escape_text(description)}"))
    first = (CRLF.join(head) + CRLF + "".join(timezones.values())).encode("utf-8")
    return b"".join((first, body.getbuffer(), b"END:VCALENDAR\r\n"))


def whole_calendar(texts: Iterable[str], *, name: str = "", description: str = "") -> str:
    return whole_calendar_bytes(texts, name=name, description=description).decode("utf-8")
