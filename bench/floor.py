"""A Radicale storage that costs nothing: the benchmark's events, built once, held in memory.

Radicale on top of it shows what Radicale itself needs for a request (its XML
tree, path and rights checks, serialisation) when storage takes no time: the
floor under any storage plugin. `BENCH_FLOOR_EVENTS` is the size. A PUT is taken
and forgotten (each gunicorn worker has its own memory, so keeping it would make
the item counts of later requests depend on the worker): Radicale's own PUT work
(parse, checks, item, response) over a store that costs nothing.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from typing import overload

import radicale
from radicale import config as radicale_config
from radicale import item as radicale_item
from radicale import pathutils
from radicale import storage as radicale_storage

from bench.events import with_dense_week
from bench.seed import CALENDAR, LOGIN

LAST_MODIFIED = "Mon, 01 Sep 2025 00:00:00 GMT"
PROPS = {"tag": "VCALENDAR", "D:displayname": "Personal"}


class Home(radicale_storage.BaseCollection):
    def __init__(self, path: str) -> None:
        self._path = path

    @property
    def path(self) -> str:
        return self._path

    @property
    def last_modified(self) -> str:
        return LAST_MODIFIED

    @overload
    def get_meta(self, key: None = None) -> Mapping[str, str]: ...

    @overload
    def get_meta(self, key: str) -> str | None: ...

    def get_meta(self, key: str | None = None) -> Mapping[str, str] | str | None:
        return {} if key is None else None


class MemoryCollection(Home):
    def __init__(self, path: str, count: int) -> None:
        super().__init__(path)
        self._items: dict[str, radicale_item.Item] = {}
        for event in with_dense_week(count):
            start, end = event.occurrences(event.start)[0]
            self._items[event.href] = radicale_item.Item(
                collection=self, href=event.href, last_modified=LAST_MODIFIED,
                text=event.to_ics(), etag=f'"{event.uid}"', uid=event.uid, name="VCALENDAR",
                component_name="VEVENT",
                time_range=(int(start.timestamp()), int(end.timestamp())))
        self._uids = frozenset(item.uid for item in self._items.values())

    @property
    def etag(self) -> str:
        return '"floor"'

    @overload
    def get_meta(self, key: None = None) -> Mapping[str, str]: ...

    @overload
    def get_meta(self, key: str) -> str | None: ...

    def get_meta(self, key: str | None = None) -> Mapping[str, str] | str | None:
        return PROPS if key is None else PROPS.get(key)

    def get_all(self) -> Iterator[radicale_item.Item]:
        return iter(self._items.values())

    def get_multi(self, hrefs: Iterable[str]
                  ) -> Iterator[tuple[str, radicale_item.Item | None]]:
        return ((href, self._items.get(href)) for href in hrefs)

    def has_uid(self, uid: str) -> bool:
        return uid in self._uids

    def upload(self, href: str, item: radicale_item.Item
               ) -> tuple[radicale_item.Item, radicale_item.Item | None]:
        return item, self._items.get(href)


@functools.lru_cache(maxsize=1)
def calendar(count: int) -> MemoryCollection:
    return MemoryCollection(f"{LOGIN}/{CALENDAR}", count)


def create_app() -> Callable[..., Iterable[bytes]]:
    """Radicale's WSGI entry point, with the items built at worker start, not in a request."""
    calendar(int(os.environ["BENCH_FLOOR_EVENTS"]))
    return radicale.application


class Storage(radicale_storage.BaseStorage):
    def __init__(self, configuration: radicale_config.Configuration) -> None:
        super().__init__(configuration)
        self._calendar = calendar(int(os.environ["BENCH_FLOOR_EVENTS"]))

    def discover(
        self, path: str, depth: str = "0",
        child_context_manager: Callable[[str, str | None], AbstractContextManager[None]] | None = None,
        user_groups: set[str] | None = None,
    ) -> Iterator[radicale_storage.BaseCollection | radicale_item.Item]:
        sane = pathutils.strip_path(pathutils.sanitize_path(path))
        own = self._calendar
        if sane in ("", LOGIN):
            yield Home(sane)
            if depth != "0" and sane == LOGIN:
                yield own
        elif sane == own.path:
            yield own
            if depth != "0":
                yield from own.get_all()
        elif sane.startswith(f"{own.path}/"):
            _, item = next(own.get_multi([sane.rpartition("/")[2]]))
            if item is not None:
                yield item

    def move(self, item: radicale_item.Item, to_collection: radicale_storage.BaseCollection,
             to_href: str) -> None:
        raise PermissionError("read-only")

    def create_collection(
        self, href: str, items: Iterable[radicale_item.Item] | None = None,
        props: Mapping[str, str] | None = None,
    ) -> tuple[radicale_storage.BaseCollection, dict[str, radicale_item.Item], list[str]]:
        raise PermissionError("read-only")

    @contextlib.contextmanager
    def acquire_lock(self, mode: str, user: str = "", *args: object,
                     **kwargs: object) -> Iterator[None]:
        yield

    def verify(self) -> bool:
        return True
