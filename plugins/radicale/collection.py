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
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any, overload

from radicale import item as radicale_item
from radicale import storage as radicale_storage
from radicale.item import filter as radicale_filter
from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from plugins.radicale import bounds, serialize, state
from server import calendars, changes, ical, phone_edits, scheduling
from server.bodycache import BodyCache
from server.busy import EXPANSIONS, MAX_OCCURRENCES
from server.errors import Forbidden
from server.models import Appointment, CalendarItem, Collection, CollectionKind

if TYPE_CHECKING:
    from plugins.radicale.storage import Storage

SYNC_TOKEN_PREFIX = "http://fieldcal.invalid/ns/sync/"
HREF_CHUNK = 500
STREAM_ROWS = 1000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
ITEM_COLUMNS = (
    CalendarItem.href, CalendarItem.uid, CalendarItem.component, CalendarItem.text,
    CalendarItem.etag, CalendarItem.updated_at, CalendarItem.dtstart, CalendarItem.dtend,
    CalendarItem.appointment_id,
)


def http_date(moment: dt.datetime) -> str:
    return format_datetime(moment.astimezone(dt.UTC), usegmt=True)


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


WHOLE_CALENDARS: BodyCache[str] = BodyCache(32 * 1024 * 1024)

class StoredItem(radicale_item.Item):
    """An item from its stored row; `last_modified` is formatted only when asked for."""

    _updated_at: dt.datetime | None = None
    _last_modified: str | None = None
    exact: bool = False  # time_range is the object's exact extent (rendered appointments)

    @property  # type: ignore[override]
    def last_modified(self) -> str | None:
        if self._last_modified is None and self._updated_at is not None:
            self._last_modified = http_date(self._updated_at)
        return self._last_modified

    @last_modified.setter
    def last_modified(self, value: str | None) -> None:
        self._last_modified = value

    @classmethod
    def build(cls, collection: DbCollection, href: str, text: str, etag: str, uid: str,
              component: str, updated_at: dt.datetime, time_range: tuple[int, int],
              exact: bool) -> StoredItem:
        """Without Item.__init__, whose path checks cost more than the rest for big listings;
        the collection's path is already sanitised (it comes from a checked row)."""
        item = cls.__new__(cls)
        item._collection_path = collection.path
        item.collection = collection
        item.href = href
        item._text = text
        item._vobject_item = None
        item._etag = etag
        item._uid = uid
        item._name = "VCALENDAR"
        item._component_name = component
        item._time_range = time_range
        item._updated_at = updated_at
        item._last_modified = None
        item.exact = exact
        return item

    def __copy__(self) -> StoredItem:
        # Radicale's expansion edits the parsed object of its copy in place: a copy
        # parses the stored text again instead of sharing the parsed object.
        clone = self.__class__.__new__(self.__class__)
        clone.__dict__.update(self.__dict__)
        clone._vobject_item = None
        return clone


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
    def __init__(self, storage: Storage, row: Collection) -> None:
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
            found = bounds.exact_range(text)
            if found is not None:
                time_range, exact = found, True
        return StoredItem.build(self, href, text, etag, uid, component, updated_at, time_range,
                                exact)

    def _select(self) -> Select[Any]:
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
            for href in chunk:
                yield href, found.get(href)

    def get_filtered(self, filters: Iterable[ET.Element]
                     ) -> Iterator[tuple[radicale_item.Item, bool]]:
        tag, start, end, simple = radicale_filter.simplify_prefilters(filters, self.tag)
        query = self._select()
        if tag is not None:
            query = query.where(CalendarItem.component == tag)
        start_at, end_at = _from_timestamp(start), _from_timestamp(end)
        if end_at is not None:
            query = query.where(or_(CalendarItem.dtstart.is_(None), CalendarItem.dtstart < end_at))
        if start_at is not None:
            query = query.where(or_(CalendarItem.dtend.is_(None), CalendarItem.dtend > start_at))
        with self._reading() as session:
            for row in session.execute(query.order_by(CalendarItem.dtstart)):
                item = self._item(row, exact_text=True)
                istart, iend = item.time_range
                if item.exact:
                    if istart >= end or iend <= start:
                        continue
                    yield item, simple and (start <= istart or iend <= end)
                elif (simple and item.component_name == "VEVENT" and start_at and end_at
                      and EXPANSIONS.covers(start_at, end_at)):
                    # A recurrence: its cached expansion answers the time range exactly.
                    expansion = EXPANSIONS.get(item.etag, item.serialize(), start_at.date())
                    if not expansion.zoned or len(expansion.occurrences) >= MAX_OCCURRENCES:
                        yield item, False  # floating or all-day times, or capped: Radicale decides
                    elif any((o.starts_at < end_at and o.ends_at > start_at)
                             or (o.starts_at == o.ends_at and start_at <= o.starts_at < end_at)
                             for o in expansion.occurrences):
                        yield item, True
                else:
                    # Widened stored bounds (floating or all-day times): Radicale checks it.
                    yield item, False

    def has_uid(self, uid: str) -> bool:
        with self._reading() as session:
            found = session.execute(
                select(CalendarItem.id).where(
                    CalendarItem.collection_id == self._row.id, CalendarItem.uid == uid
                ).limit(1)
            ).first()
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
        """The whole calendar: stored texts joined, cached per (collection, sync_seq)."""
        name = self.get_meta("D:displayname") or ""
        description = self.get_meta("C:calendar-description") or ""
        key = (self._row.id, self._row.created_at, self._row.sync_seq, name, description)
        body = WHOLE_CALENDARS.get(key)
        if body is None:
            with self._reading() as session:
                texts = session.connection().execute(
                    select(CalendarItem.text).where(CalendarItem.collection_id == self._row.id)
                    .order_by(CalendarItem.id)
                ).scalars().all()
            body = serialize.whole_calendar(texts, name=name, description=description)
            WHOLE_CALENDARS.put(key, body)
        return body

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
        old = self._stored(href)
        replaced = None if old is None else self._as_item(old)
        text = item.serialize()
        ctx = self._storage.context()
        if self.kind == CollectionKind.CALENDAR:
            stored, _ = calendars.put_item(ctx, self._row, href, text)
            return self._as_item(stored), replaced
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

    def delete(self, href: str | None = None) -> None:
        ctx = self._storage.context()
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
