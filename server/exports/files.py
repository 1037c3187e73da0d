"""Large exports in the background: the API queues one, the worker writes it to a file in
the instance folder (`exports/`), and the caller downloads it with its (unguessable) id.

A queued export is an outbox message (`export.file`) written with its audit entry, so it
survives restarts and is written once; its state (waiting, ready, failed) is the message's.
The file lives in the worker's instance folder: the host that serves the download must see
that folder (`fieldcal serve` runs the worker beside the web workers). Files older than a
day are removed whenever the worker writes a new one.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server import audit, outbox
from server.actions import Action
from server.context import Context, operation
from server.db import Database
from server.exports import tables
from server.exports.base import ExportRequest, Format, Kind
from server.exports.formats import stream
from server.models import OutboxMessage
from server.worker import DEAD, SENT, Delivery, Handler, PermanentFailure

KIND = "export.file"
FOLDER = "exports"
KEEP = dt.timedelta(days=1)
FILE_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")
SUFFIX = {Format.CSV: "csv", Format.NDJSON: "ndjson", Format.ICS: "ics"}


def count(session: Session, request: ExportRequest) -> int:
    """How many rows the export holds (one COUNT over the export's own query)."""
    query = tables.QUERIES[request.kind](request).order_by(None).subquery()
    return int(session.scalar(select(func.count()).select_from(query)) or 0)


def file_name(file_id: str, request: ExportRequest) -> str:
    return f"{file_id}.{request.kind.value}.{SUFFIX[request.fmt]}"


@operation
def queue(ctx: Context, request: ExportRequest) -> str:
    """Audit the export and queue it for the worker; returns the file's id."""
    file_id = secrets.token_urlsafe(16)
    described = request.describe()
    audit.record(ctx.session, ctx.actor, Action.EXPORT_RUN, "export", request.kind.value,
                 after={**described, "file": file_id})
    outbox.enqueue(ctx.session, KIND, {**described, "file": file_id}, idempotency_key=f"{KIND}:{file_id}")
    return file_id


def request_of(payload: dict[str, Any]) -> ExportRequest:
    start, end = payload.get("from"), payload.get("to")
    return ExportRequest(Kind(payload["kind"]), Format(payload["format"]),
                         start=dt.datetime.fromisoformat(start) if start else None,
                         end=dt.datetime.fromisoformat(end) if end else None, bom=bool(payload.get("bom")))


class State(enum.StrEnum):
    WAITING = "waiting"  # queued or being written
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class Found:
    """A queued export as the download route sees it."""

    request: ExportRequest
    state: State
    path: Path | None  # the file, once ready


def find(session: Session, folder: Path, file_id: str) -> Found | None:
    """The export queued under `file_id`, or None (also for an id that is not one of ours)."""
    if not FILE_ID.match(file_id):
        return None
    message = session.scalars(select(OutboxMessage).where(
        OutboxMessage.idempotency_key == f"{KIND}:{file_id}")).first()
    if message is None:
        return None
    request = request_of(message.payload)
    if message.status == DEAD:
        return Found(request, State.FAILED, None)
    path = folder / file_name(file_id, request)
    if message.status != SENT:
        return Found(request, State.WAITING, None)
    return Found(request, State.READY, path) if path.is_file() else None


@dataclass(frozen=True)
class ExportWriter:
    """The worker's side: writes queued exports into `folder`."""

    database: Database
    folder: Path
    organizer: str

    def handlers(self) -> dict[str, Handler]:
        return {KIND: self.on_export}

    def on_export(self, delivery: Delivery) -> None:
        try:
            request = request_of(delivery.payload)
            file_id = str(delivery.payload["file"])
        except (KeyError, ValueError) as exc:
            raise PermanentFailure(f"export message {delivery.payload!r}: {exc}") from exc
        if not FILE_ID.match(file_id):
            raise PermanentFailure(f"export message names no valid file id: {file_id!r}")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._tidy()
        final = self.folder / file_name(file_id, request)
        partial = self.folder / f".{final.name}.part"
        try:
            with self.database.read() as session, partial.open("wb") as handle:
                for piece in stream(session, request, organizer=self.organizer):
                    handle.write(piece)
            os.replace(partial, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()

    def _tidy(self) -> None:
        oldest = time.time() - KEEP.total_seconds()
        for path in self.folder.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < oldest:
                    path.unlink()
