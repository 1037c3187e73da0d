"""An item of a database-backed collection, built from its stored row without parsing."""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime
from typing import Any

from radicale import item as radicale_item
from radicale import storage as radicale_storage

from plugins.radicale import recurring


def http_date(moment: dt.datetime) -> str:
    return format_datetime(moment.astimezone(dt.UTC), usegmt=True)



class StoredItem(radicale_item.Item):
    """An item from its stored row; `last_modified` is formatted only when asked for."""

    _updated_at: dt.datetime | None = None
    _last_modified: str | None = None
    _window_start: dt.datetime | None = None
    exact: bool = False  # time_range is the object's exact extent (rendered appointments)

    @property
    def last_modified(self) -> str | None:
        if self._last_modified is None and self._updated_at is not None:
            self._last_modified = http_date(self._updated_at)
        return self._last_modified

    @last_modified.setter
    def last_modified(self, value: str | None) -> None:
        self._last_modified = value

    @classmethod
    def build(cls, collection: radicale_storage.BaseCollection, href: str, text: str, etag: str, uid: str,
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
        item._window_start = None
        item.exact = exact
        return item

    def __copy__(self) -> StoredItem:
        # Radicale's expansion edits the parsed object of its copy in place: a copy
        # parses the stored text again instead of sharing the parsed object.
        clone = self.__class__.__new__(self.__class__)
        clone.__dict__.update(self.__dict__)
        clone._vobject_item = None
        return clone

    @property
    def vobject_item(self) -> Any:
        """The parsed object Radicale filters and expands. For a query from `_window_start`
        on, its rules start just before that time: Radicale walks a rule from its DTSTART,
        so the cost stays bounded by the window, however old the series (the text that
        clients receive is the stored one)."""
        if self._vobject_item is None and self._window_start is not None:
            self._vobject_item = recurring.recurrence_view(self._text or "", self._window_start)
        return radicale_item.Item.vobject_item.fget(self)  # type: ignore[attr-defined]

    @vobject_item.setter
    def vobject_item(self, value: Any) -> None:
        self._vobject_item = value
