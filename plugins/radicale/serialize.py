"""Whole-calendar text from stored item texts, without parsing iCalendar.

Each stored text is one VCALENDAR; its components are copied as they are,
VTIMEZONEs once per TZID, under one VCALENDAR that carries the calendar's
name (X-WR-CALNAME) and description (X-WR-CALDESC). A big calendar is made
as its gzip alone (server.bodycache.Packed), never held as plain text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from server.bodycache import GzipWriter, Packed
from server.contentlines import CRLF, escape_text, fold

PRODID = "-//fieldcal//fieldcal 0.1//EN"
TAIL = b"END:VCALENDAR\r\n"


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


def _pieces(text: str, timezones: dict[str, str]) -> Iterator[bytes]:
    """The components of one stored text as UTF-8; its VTIMEZONEs go to `timezones`."""
    # The common case, one slice: CRLF text without VTIMEZONE.
    if text.startswith("BEGIN:VCALENDAR\r\n") and "BEGIN:VTIMEZONE" not in text:
        start = text.find("\r\nBEGIN:", 15)
        end = text.rfind("END:VCALENDAR")
        if start != -1 and end > start:
            yield text[start + 2:end].encode("utf-8")
            return
    components: list[str] = []
    _split_components(text, timezones, components)
    for component in components:
        yield component.encode("utf-8")


def _head(name: str, description: str, timezones: dict[str, str]) -> bytes:
    head = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}"]
    if name:
        head.append(fold(f"X-WR-CALNAME:{escape_text(name)}"))
    if description:
        head.append(fold(f"X-WR-CALDESC:{escape_text(description)}"))
    return (CRLF.join(head) + CRLF + "".join(timezones.values())).encode("utf-8")


def whole_calendar_bytes(texts: Iterable[str], *, name: str = "", description: str = "") -> bytes:
    """The whole calendar as UTF-8 (VTIMEZONEs, kept aside as the texts stream by, first)."""
    found = whole_calendar_body(texts, name=name, description=description)
    assert isinstance(found, bytes)  # no limit: never packed
    return found


def whole_calendar_body(texts: Iterable[str], *, name: str = "", description: str = "",
                        plain_limit: int | None = None,
                        timezone_texts: Callable[[], Iterable[str]] | None = None
                        ) -> bytes | Packed:
    """The whole calendar: UTF-8 bytes, or, once it grows past `plain_limit` bytes, its gzip
    alone (`Packed`, the same bytes as the gzip of the plain body), made as the texts
    stream by, so that the plain body is never held. The gzip starts with every VTIMEZONE:
    `timezone_texts` gives the stored texts that have one (in the order of `texts`)."""
    timezones: dict[str, str] = {}
    pieces: list[bytes] = []
    size = 0
    packer: GzipWriter | None = None
    for text in texts:
        for piece in _pieces(text, timezones):
            if packer is not None:
                packer.write(piece)
                continue
            pieces.append(piece)
            size += len(piece)
            if plain_limit is not None and timezone_texts is not None and size > plain_limit:
                for with_zone in timezone_texts():
                    _split_components(with_zone, timezones, [])
                packer = GzipWriter()
                packer.write(_head(name, description, timezones))
                for held in pieces:
                    packer.write(held)
                pieces = []
    if packer is not None:
        packer.write(TAIL)
        return packer.finish()
    return b"".join((_head(name, description, timezones), *pieces, TAIL))


def whole_calendar(texts: Iterable[str], *, name: str = "", description: str = "") -> str:
    return whole_calendar_bytes(texts, name=name, description=description).decode("utf-8")
