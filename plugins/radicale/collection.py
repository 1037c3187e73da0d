"""Radicale collections backed by the jobs database.

A `DbCollection` is one `Collection` row read in the request's transaction.
Items are built from the stored text, etag, UID, component and time bounds;
nothing is parsed unless Radicale needs the iCalendar object itself (exact
filtering of free-form items, expansion).
"""

from __future__ import annotations

import datetime as dt
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import Any, overload

from radicale import item as radicale_item
from radicale import storage as radicale_storage
from radicale.item import filter as radicale_filter
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from plugins.radicale import bounds, phone_edits, recurring, serialize, state, time_range, whole_get
from plugins.radicale.stored_item import StoredItem, http_date
from server import calendars, changes, ical, scheduling
from server.bodycache import Packed
from server.busy import EXPANSIONS
from server.errors import Forbidden
from server.models import Appointment, CalendarItem, Collection, CollectionKind

SYNC_TOKEN_PREFIX = "http://fieldcal.invalid/ns/sync/"
HREF_CHUNK = 500
STREAM_ROWS = 1000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
ITEM_COLUMNS = (
    CalendarItem.href, CalendarItem.uid, CalendarItem.component, CalendarItem.text,
    CalendarItem.etag, CalendarItem.updated_at, CalendarItem.dtstart, CalendarItem.dtend,
    CalendarItem.appointment_id,
)


def _timestamp_bounds(start: dt.datetime | None, end: dt.datetime | None) -> tuple[int, int]:
    low = radicale_filter.TIMESTAMP_MIN if start is None else math.floor(start.timestamp())
    high = radicale_filter.TIMESTAMP_MAX if end is None else math.ceil(end.timestamp())
    return low, high


def _from_timestamp(value: int) -> dt.datetime | None:
    """A prefilter bound as a datetime; None for Radicale's open bounds."""
    if value <= radicale_filter.TIMESTAMP_MIN or value >= radicale_filter.TIMESTAMP_MAX:
        return None
    try:
        return dt.datetime.fromtimestamp(value, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


WHOLE_CALENDARS = whole_get.WHOLE_CALENDARS


class Home(radicale_storage.BaseCollection):
    """The root ("") or a principal ("alice", "team-north"): a container without items."""

    def __init__(self, path: str) -> None:
        self._path = path

    @property
    def path(self) -> str:
        return self._path

    @property
    def etag(self) -> str:
        return f'"home-{self._path.encode("utf-8").hex()}"'

    @property
    def last_modified(self) -> str:
        return http_date(EPOCH)

    def get_multi(self, hrefs: Iterable[str]) -> Iterator[tuple[str, radicale_item.Item | None]]:
        for href in dict.fromkeys(hrefs):
            yield href, None

    def get_all(self) -> Iterator[radicale_item.Item]:
        return iter(())

    def has_uid(self, uid: str) -> bool:
        return False

    @overload
    def get_meta(self, key: None = None) -> Mapping[str, str]: ...

    @overload
    def get_meta(self, key: str) -> str | None: ...

    def get_meta(self, key: str | None = None) -> Mapping[str, str] | str | None:
        return {} if key is None else None

    def set_meta(self, props: Mapping[str, str]) -> None:
        raise Forbidden("The properties of a home cannot be changed; change a calendar's instead.")

    def upload(self, href: str, item: radicale_item.Item) -> tuple[radicale_item.Item, None]:
        raise Forbidden("Events go into a calendar, not directly into a home.")

    def delete(self, href: str | None = None) -> None:
        raise Forbidden("Homes are managed by dispatch and cannot be deleted over CalDAV.")


class DbCollection(radicale_storage.BaseCollection):
    def __init__(self, storage: state.StorageAccess, row: Collection) -> None:
        self._storage = storage
        self._row = row

    # ------------------------------------------------------------------ identity

    @property
    def row(self) -> Collection:
        return self._row

    @property
    def path(self) -> str:
        return self._row.path

    @property
    def kind(self) -> str:
        return self._row.kind

    @property
    def etag(self) -> str:
        return f'"{self._row.id}-{self._row.sync_seq}"'

    @property
    def last_modified(self) -> str:
        return http_date(self._row.updated_at)

    @overload
    def get_meta(self, key: None = None) -> Mapping[str, str]: ...

    @overload
    def get_meta(self, key: str) -> str | None: ...

    def get_meta(self, key: str | None = None) -> Mapping[str, str] | str | None:
        props: dict[str, Any] = {"tag": "VCALENDAR", **(self._row.props or {})}
        if key is None:
            return {k: str(v) for k, v in props.items()}
        value = props.get(key)
        return None if value is None else str(value)

    def set_meta(self, props: Mapping[str, str]) -> None:
        wanted = {k: v for k, v in props.items() if k != "tag"}
        calendars.set_props(self._storage.context(), self._row, wanted)

    # ------------------------------------------------------------------ reading

    @property
    def _session(self) -> Session:
        return state.current().session

    def _item(self, row: Any, *, exact_text: bool = False) -> StoredItem:
        """An item from a row of ITEM_COLUMNS. Rendered appointments have exact stored times;
        with `exact_text`, a simple free-form event's exact times are read from its text."""
        href, uid, component, text, etag, updated_at, dtstart, dtend, appointment_id = row
        time_range = _timestamp_bounds(dtstart, dtend)
        exact = appointment_id is not None
        if not exact and exact_text:
            found = bounds.exact_range_of(etag, text)
            if found is not None:
                time_range, exact = found, True
        return StoredItem.build(self, href, text, etag, uid, component, updated_at, time_range,
                                exact)

    def _select(self) -> Select[*tuple[Any, ...]]:
        return select(*ITEM_COLUMNS).where(CalendarItem.collection_id == self._row.id)

    def _reading(self) -> AbstractContextManager[Session]:
        """The request's session; outside the lock (Radicale writes PROPFIND answers after
        releasing it) a short read transaction of its own."""
        return state.reading(self._storage.database)

    def get_all(self) -> Iterator[radicale_item.Item]:
        with self._reading() as session:
            query = self._select().order_by(CalendarItem.id).execution_options(yield_per=STREAM_ROWS)
            for row in session.execute(query):
                yield self._item(row)

    def get_multi(self, hrefs: Iterable[str]) -> Iterator[tuple[str, radicale_item.Item | None]]:
        wanted = list(dict.fromkeys(hrefs))
        for offset in range(0, len(wanted), HREF_CHUNK):
            chunk = wanted[offset:offset + HREF_CHUNK]
            with self._reading() as session:
                found = {
                    row[0]: self._item(row)
                    for row in session.execute(
                        self._select().where(CalendarItem.href.in_(chunk)))
                }
            txn = state.writing()
            if txn is not None:  # an upload to one of these hrefs needs not read them again
                for href in chunk:
                    seen = found.get(href)
                    txn.items_seen[self._row.id, href] = (
                        None if seen is None else (seen.uid, seen.etag))
            for href in chunk:
                yield href, found.get(href)

    def get_filtered(self, filters: Iterable[ET.Element]
                     ) -> Iterator[tuple[radicale_item.Item, bool]]:
        tag, start, end, simple = radicale_filter.simplify_prefilters(filters, self.tag)
        start_at, end_at = _from_timestamp(start), _from_timestamp(end)
        with self._reading() as session:
            for row in time_range.rows_in_range(session, ITEM_COLUMNS, self._row.id, tag,
                                                start_at, end_at):
                item = self._item(row, exact_text=True)
                istart, iend = item.time_range
                if item.exact:
                    if istart >= end or iend <= start:
                        continue
                    yield item, simple and (start <= istart or iend <= end)
                    continue
                if not recurring.is_recurring(item.serialize()):
                    yield item, False  # widened stored bounds (floating or all-day): Radicale checks
                    continue
                expanding = state.notes().expand
                if expanding is not None:
                    recurring.check_expansion_size(item.href or "", item.serialize(), *expanding)
                item._window_start = recurring.earliest(start_at, expanding and expanding[0])
                if (simple and item.component_name == "VEVENT" and start_at and end_at
                        and EXPANSIONS.covers(start_at, end_at)):
                    meets = recurring.meets_range(item.etag, item.serialize(), start_at, end_at)
                    if meets is None:
                        yield item, False  # floating or all-day times: Radicale decides
                    elif meets:
                        yield item, True
                else:
                    yield item, False  # Radicale filters it, with the rules moved to the window

    def has_uid(self, uid: str) -> bool:
        with self._reading() as session:
            found = session.execute(
                select(CalendarItem.id).where(
                    CalendarItem.collection_id == self._row.id, CalendarItem.uid == uid
                ).limit(1)
            ).first()
        txn = state.writing()
        if found is None and txn is not None:
            txn.free_uids.add((self._row.id, uid))
        return found is not None

    def sync(self, old_token: str = "") -> tuple[str, Iterable[str]]:
        token = f"{SYNC_TOKEN_PREFIX}{self._row.id}-{self._row.sync_seq}"
        if not old_token:
            return token, self._all_hrefs()
        if not old_token.startswith(SYNC_TOKEN_PREFIX):
            raise ValueError(f"not a sync token of this server: {old_token!r}")
        collection_id, _, seq = old_token[len(SYNC_TOKEN_PREFIX):].partition("-")
        if collection_id != str(self._row.id) or not seq.isdigit():
            raise ValueError(f"the sync token {old_token!r} is not one of {self.path!r}")
        with self._reading() as session:
            return token, changes.since(session, self._row, int(seq))

    def _all_hrefs(self) -> Iterator[str]:
        with self._reading() as session:
            yield from session.scalars(
                select(CalendarItem.href).where(CalendarItem.collection_id == self._row.id)
                .order_by(CalendarItem.id)
            )

    def serialize(self, vcf_to_ics: bool = False, ShareActions: dict | None = None) -> str:
        """The whole calendar: stored texts joined, cached per (collection, sync_seq).
        A GET whose If-None-Match names the current ETag gets nothing rendered
        (plugins.radicale.whole_get answers 304)."""
        notes = state.notes()
        if notes.if_none_match and whole_get.names_etag(notes.if_none_match, self.etag):
            notes.not_modified = True
            return ""
        name = self.get_meta("D:displayname") or ""
        description = self.get_meta("C:calendar-description") or ""
        key = (self._row.id, self._row.created_at, self._row.sync_seq, name, description)
        body = WHOLE_CALENDARS.get(key)
        if body is None:
            with self._reading() as session:  # streamed: the texts are not all held at once
                texts = session.execute(
                    self._texts().execution_options(yield_per=STREAM_ROWS)).scalars()
                body = serialize.whole_calendar_body(
                    texts, name=name, description=description,
                    plain_limit=min(whole_get.PACK_FROM, whole_get.PLAIN_LIMIT),
                    timezone_texts=lambda: session.scalars(
                        self._texts().where(CalendarItem.text.contains("BEGIN:VTIMEZONE"))))
            gzipped = None
            if isinstance(body, Packed) and body.length <= whole_get.PLAIN_LIMIT:
                gzipped = body.gzipped
                body = body.inflated()  # kept plain as before, its gzip beside it
            WHOLE_CALENDARS.put(key, body, gzipped)
        notes.whole_calendar, notes.whole_body = key, body
        if notes.serving_get:
            return ""  # whole_get.finish answers with the bytes (no text copy, no encoding)
        if isinstance(body, Packed):
            return b"".join(body.inflating()).decode("utf-8")
        return body.decode("utf-8")

    def _texts(self) -> Select[Any]:
        return (select(CalendarItem.text).where(CalendarItem.collection_id == self._row.id)
                .order_by(CalendarItem.id))

    # ------------------------------------------------------------------ writing

    def _stored(self, href: str) -> CalendarItem | None:
        return calendars.get_item(self._session, self._row, href)

    def _as_item(self, stored: CalendarItem) -> StoredItem:
        return self._item((
            stored.href, stored.uid, stored.component, stored.text, stored.etag,
            stored.updated_at, stored.dtstart, stored.dtend, stored.appointment_id,
        ))

    def upload(self, href: str, item: radicale_item.Item
               ) -> tuple[radicale_item.Item, radicale_item.Item | None]:
        text = item.serialize()
        ctx = self._storage.context()
        if self.kind == CollectionKind.CALENDAR:
            # The replaced item goes only to Radicale's hook, which fieldcal does not use
            # (radicale.config): not read again here. What Radicale read before the upload
            # (the item at href, and that no other item has the UID) is passed on.
            known = self._known(href, item.uid)
            state.current().forget_items()
            stored, _ = calendars.put_item(ctx, self._row, href, text, known=known)
            return self._as_item(stored), None
        state.current().forget_items()
        old = self._stored(href)
        replaced = None if old is None else self._as_item(old)
        if self.kind != CollectionKind.JOBS:
            raise Forbidden(
                f"{self.path!r} is a read-only view of the schedule; changes are made by dispatch."
            )
        if old is None or old.appointment_id is None:
            raise Forbidden(
                "New events cannot be added to the jobs calendar: it shows the visits dispatch "
                "booked. Put personal events in your 'personal' calendar."
            )
        appointment = self._session.get(Appointment, old.appointment_id)
        if appointment is None:
            raise Forbidden("This visit no longer exists; synchronise the calendar again.")
        phone_edits.apply(ctx, appointment, ical.parse_object(text))
        self._session.flush()
        now = self._stored(href)
        if now is None:
            # Declined: the visit left this calendar. Answer with what was sent, without ETag.
            state.notes().altered = True
            return item, replaced
        if now.text != text:
            state.notes().altered = True
        return self._as_item(now), replaced

    def _known(self, href: str, uid: str) -> calendars.Known | None:
        """What this write transaction read: no item at href, and no item with this UID."""
        txn = state.writing()
        key = (self._row.id, href)
        if txn is None or key not in txn.items_seen:
            return None
        # Only for a new item: for a replaced one Radicale checked the UID of the item at
        # href, not that no other item has it (put_item checks both).
        if txn.items_seen[key] is not None or (self._row.id, uid) not in txn.free_uids:
            return None
        return calendars.Known(uid, None)

    def delete(self, href: str | None = None) -> None:
        ctx = self._storage.context()
        state.current().forget_items()
        if href is None:
            calendars.delete_collection(ctx, self._row)
            state.current().collections.clear()
            return
        if self.kind == CollectionKind.CALENDAR:
            calendars.delete_item(ctx, self._row, href)
            return
        if self.kind != CollectionKind.JOBS:
            raise Forbidden(
                f"{self.path!r} is a read-only view of the schedule; changes are made by dispatch."
            )
        stored = self._stored(href)
        if stored is None or stored.appointment_id is None:
            raise Forbidden(f"No visit {href!r} in {self.path!r}.")
        appointment = self._session.get(Appointment, stored.appointment_id)
        if appointment is None:
            raise Forbidden("This visit no longer exists; synchronise the calendar again.")
        scheduling.decline(ctx, appointment)
