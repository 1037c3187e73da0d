"""CSV (RFC 4180, formula-safe), NDJSON and iCalendar writers over streamed rows."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

from sqlalchemy.orm import Session

from server.exports import tables
from server.exports.base import ExportRequest, Format
from server.exports.tables import Value

CHUNK_ROWS = 500  # rows per piece handed to the caller
BOM = "\ufeff"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Value) -> Value:
    """A text cell a spreadsheet would run as a formula gets a leading apostrophe (the
    OWASP CSV-injection rule); numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _csv(session: Session, request: ExportRequest) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180: CRLF, quotes doubled
    if request.bom:
        buffer.write(BOM)
    writer.writerow(tables.columns(request))
    count = 0
    for row in tables.rows(session, request):
        writer.writerow([neutralise(v) for v in row])
        count += 1
        if count % CHUNK_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _ndjson(session: Session, request: ExportRequest) -> Iterator[str]:
    names = tables.columns(request)
    lines: list[str] = []
    for row in tables.rows(session, request):
        lines.append(json.dumps(dict(zip(names, row, strict=True)), ensure_ascii=False) + "\n")
        if len(lines) == CHUNK_ROWS:
            yield "".join(lines)
            lines.clear()
    yield "".join(lines)


def _ics(session: Session, request: ExportRequest, organizer: str) -> Iterator[str]:
    # Imported here: the iCalendar stack is large, and CSV/NDJSON exports do without it.
    from server.ical import PRODID, Audience, appointment_event

    yield f"BEGIN:VCALENDAR\r\nPRODID:{PRODID}\r\nVERSION:2.0\r\n"
    pieces: list[str] = []
    for appointment in tables.visits(session, request):
        pieces.append(appointment_event(appointment, Audience.DISPATCH, organizer).to_ical().decode("utf-8"))
        if len(pieces) == CHUNK_ROWS:
            yield "".join(pieces)
            pieces.clear()
    yield "".join(pieces)
    yield "END:VCALENDAR\r\n"


def stream(session: Session, request: ExportRequest, *, organizer: str) -> Iterator[bytes]:
    """The export as UTF-8 pieces, read from the session as they are asked for."""
    match request.fmt:
        case Format.CSV:
            pieces = _csv(session, request)
        case Format.NDJSON:
            pieces = _ndjson(session, request)
        case Format.ICS:
            pieces = _ics(session, request, organizer)
    for piece in pieces:
        if piece:
            yield piece.encode("utf-8")
