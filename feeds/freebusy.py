"""The free/busy variant of a technician's feed link: one VFREEBUSY instead of events.

`/feeds/<token>.ifb` (the extension of "Internet free/busy" URLs) serves, for the
same link as `/feeds/<token>.ics`, the periods the technician is taken over the feed
window: visits with buffers and travel, busy personal items, time off and holidays
(server.freebusy). It is for clients that read published free/busy rather than
per-event "Busy" blocks. Only a technician's link has one; it shows no more than
any audience of that link already sees.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from feeds.plan import Window
from server import freebusy
from server.links import SubjectKind
from server.models import ShareLink, User
from server.text import clean_text


def _calendar_name(name: str) -> str:
    text = clean_text(f"Free/busy: {name}").replace("\n", " ")
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")[:200]


def body_for(session: Session, link: ShareLink, window: Window, now: dt.datetime) -> bytes | None:
    """The VFREEBUSY body of a live link's subject over the window (None: no technician)."""
    if link.subject_kind != SubjectKind.TECHNICIAN:
        return None
    name = session.scalar(select(User.name).where(User.id == link.subject_id))
    if name is None:
        return None
    end = min(window.end, window.start + freebusy.MAX_WINDOW)
    scope = freebusy.technician_scope(link.subject_id, session)
    periods = freebusy.busy_periods(session, scope, window.start, end, now)
    calname = _calendar_name(name)
    return freebusy.render(periods, window.start, end, uid_seed=f"feed-link-{link.id}",
                           stamp=window.today, extra=(f"X-WR-CALNAME:{calname}", f"NAME:{calname}"))


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
