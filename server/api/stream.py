"""GET /api/v1/changes/stream: the change log as Server-Sent Events, live.

Each event's `id` is its position in the change log (`changes.events()`), so a
browser that reconnects with `Last-Event-ID` (or a client passing `?after=`)
gets exactly the events it missed, in order. A comment line every
`KEEPALIVE_S` keeps proxies from closing an idle stream.

Streams run in the web workers' threads (gunicorn's threaded worker): a stream
mostly sleeps on a condition variable, so it costs a thread and no CPU. To keep
threads for CalDAV, feeds and pages, one process serves at most
`STREAMS_PER_WORKER` streams at a time (half its threads); the next gets 503 with
Retry-After, and the browser's EventSource retries by itself.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

from flask import Response, current_app, request

from server import changes
from server.api.auth import require
from server.api.base import bp
from server.api.problems import ApiProblem
from server.api.stream_reads import SharedReader
from server.apikeys import ApiRole, Scope
from server.change_feed import Wakeup
from server.db import Database
from server.web.context import database

KEEPALIVE_S = 15.0
BATCH = 500
STREAMS_PER_WORKER = 8  # half the threads `fieldcal serve` gives each worker
RETRY_MS = 2000
MAX_POSITION = 2**31 - 1  # the largest id both databases store
STREAM_ROLES = frozenset({ApiRole.DISPATCHER, ApiRole.READONLY})
_WAKEUP = "fieldcal.change_wakeup"
_SLOTS = "fieldcal.stream_slots"
_READER = "fieldcal.change_reader"
_SETUP = threading.Lock()


def _shared() -> tuple[Wakeup, threading.BoundedSemaphore, SharedReader]:
    with _SETUP:
        if _WAKEUP not in current_app.extensions:
            current_app.extensions[_WAKEUP] = Wakeup(database())
            current_app.extensions[_SLOTS] = threading.BoundedSemaphore(STREAMS_PER_WORKER)
            current_app.extensions[_READER] = SharedReader(database(), BATCH)
    extensions = current_app.extensions
    return extensions[_WAKEUP], extensions[_SLOTS], extensions[_READER]


def _start_position() -> int:
    given = request.headers.get("Last-Event-ID") or request.args.get("after") or "0"
    if not given.isdigit() or int(given) > MAX_POSITION:
        raise ApiProblem(400, "Last-Event-ID (or ?after=) must be the id of an event you "
                              "received: a whole number.")
    return int(given)


def frame(event: changes.Event, uid: str | None) -> str:
    data: dict[str, Any] = {
        "resource": {"kind": event.entity, "id": event.entity_id, "uid": uid},
        "action": event.action, "actor": event.actor, "channel": event.channel,
        "at": event.at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
    }
    return f"id: {event.id}\nevent: change\ndata: {json.dumps(data, sort_keys=True)}\n\n"


def events_after(database_: Database, wakeup: Wakeup, after: int,
                 keepalive_s: float = KEEPALIVE_S, reader: SharedReader | None = None) -> Iterator[str]:
    """Frames for every change after `after`, then each new one as it commits, forever."""
    reader = reader or SharedReader(database_, BATCH)
    yield f"retry: {RETRY_MS}\n\n"
    quiet_since = time.monotonic()
    while True:
        seen = wakeup.count
        found, uids = reader.read(after, time.monotonic())
        if found:
            for event in found:
                yield frame(event, uids.get(event.entity_id) if event.entity == "appointment"
                            else None)
            after = found[-1].id
            quiet_since = time.monotonic()
            if len(found) == BATCH:
                continue
        idle = time.monotonic() - quiet_since
        if idle >= keepalive_s:
            yield ": keepalive\n\n"
            quiet_since = time.monotonic()
            idle = 0.0
        wakeup.wait(seen, keepalive_s - idle)


@bp.get("/changes/stream")
def change_stream() -> Response:
    """Server-Sent Events: every committed change, resumable with Last-Event-ID."""
    principal = require(Scope.READ)
    if principal.role not in STREAM_ROLES:
        raise ApiProblem(403, f"A {principal.role.value} key may not follow the change stream; "
                              "use a dispatcher or readonly key.")
    after = _start_position()
    wakeup, slots, reader = _shared()
    if not slots.acquire(blocking=False):
        raise ApiProblem(503, "Too many change streams are open on this server; the browser "
                              "retries by itself.", headers={"Retry-After": "5"})
    response = Response(events_after(database(), wakeup, after, reader=reader),
                        mimetype="text/event-stream")
    response.call_on_close(slots.release)
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    return response
