"""Radicale storage plugin: the jobs database as CalDAV collections (DESIGN §5).

Paths: "" (root) > "<principal>" (a login, "team-<slug>", "customer-<id>") >
"<principal>/<calendar>" (a `Collection` row; in a person's home also the aliases
of collections shown there, plugins.radicale.aliases) > "<principal>/<calendar>/<href>".
`acquire_lock` is the request's database transaction; every write goes through
the domain functions of `server/` with the acting user as a `caldav` Actor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager

from radicale import config as radicale_config
from radicale import item as radicale_item
from radicale import pathutils
from radicale import storage as radicale_storage
from radicale import types as radicale_types
from sqlalchemy import select
from sqlalchemy.orm import Session

from plugins.radicale import addressbook, aliases, state
from plugins.radicale.collection import DbCollection, Home
from server import calendars, directory
from server.context import Context
from server.db import Database
from server.errors import Forbidden, NotFound
from server.models import Collection, CollectionKind, User

CollectionOrItem = radicale_storage.BaseCollection | radicale_item.Item


def _segments(path: str) -> list[str]:
    sane = pathutils.strip_path(path)
    return sane.split("/") if sane else []


class Storage(radicale_storage.BaseStorage):
    _is_collision_free = True
    _supports_unicode = True

    def __init__(self, configuration: radicale_config.Configuration) -> None:
        super().__init__(configuration)
        self._db = state.DatabaseHandle(configuration)
        self._organizer = state.organizer_for(configuration)

    @property
    def database(self) -> Database:
        return self._db()

    # ------------------------------------------------------------------ transaction

    @radicale_types.contextmanager
    def acquire_lock(self, mode: str, user: str = "", *args: object,
                     **kwargs: object) -> Iterator[None]:
        with state.transaction(self._db(), write=mode == "w", user=user):
            yield

    def context(self) -> Context:
        """The domain context of the current write: its session, the acting user as Actor."""
        txn = state.current()
        if not txn.write:
            raise RuntimeError("a write was attempted under a read lock")
        return Context(txn.session, state.actor(self._db(), txn.user), self._organizer)

    # ------------------------------------------------------------------ discovery

    @staticmethod
    def _session() -> Session:
        return state.current().session

    def _principal_exists(self, session: Session, name: str) -> bool:
        if name == state.current().user:  # signed in moments ago
            return True
        if session.execute(select(User.id).where(User.login == name)).first() is not None:
            return True
        return session.execute(
            select(Collection.id).where(Collection.path.startswith(f"{name}/", autoescape=True))
            .limit(1)
        ).first() is not None

    def _principal_names(self, session: Session) -> list[str]:
        names = dict.fromkeys(session.scalars(
            select(User.login).where(User.active.is_(True)).order_by(User.login)))
        for path in session.scalars(select(Collection.path).order_by(Collection.path)):
            names.setdefault(path.split("/", 1)[0])
        return list(names)

    def _collections_under(self, session: Session, name: str) -> list[Collection]:
        return list(session.scalars(
            select(Collection).where(Collection.path.startswith(f"{name}/", autoescape=True))
            .order_by(Collection.path)
        ))

    def _owner(self, session: Session, home: str) -> state.Principal | None:
        """The person whose home this is (None for team and customer principals)."""
        if aliases.is_view_home(home):
            return None
        if home == state.current().user:
            return state.principal(self._db(), home)  # remembered by auth: no query
        return state.load_principal(session, home)

    def _calendar(self, session: Session, home: str, name: str) -> DbCollection | None:
        """The collection at <home>/<name>: a row of its own, else an alias in a person's home."""
        path = f"{home}/{name}"
        seen = state.current().collections
        row = seen[path] if path in seen else seen.setdefault(path, calendars.get_collection(session, path))
        if row is not None:
            return addressbook.collection_for(self, row)
        if aliases.target_of(name) is None:
            return None
        owner = self._owner(session, home)
        return None if owner is None else aliases.resolve(self, session, owner, name)

    def calendar_at(self, session: Session, home: str, name: str) -> DbCollection | None:
        """The collection at <home>/<name>, as `discover` finds it (plugins.radicale.put_fast)."""
        return self._calendar(session, home, name)

    def discover(
        self, path: str, depth: str = "0",
        child_context_manager: Callable[[str, str | None], AbstractContextManager[None]] | None = None,
        user_groups: set[str] | None = None,
    ) -> Iterator[CollectionOrItem]:
        session = self._session()
        segments = _segments(path)
        if not segments:
            yield Home("")
            if depth != "0":
                for name in self._principal_names(session):
                    yield Home(name)
            return
        if len(segments) == 1:
            if not self._principal_exists(session, segments[0]):
                return
            yield Home(segments[0])
            if depth != "0":
                for row in self._collections_under(session, segments[0]):
                    yield addressbook.collection_for(self, row)
                owner = self._owner(session, segments[0])
                if owner is not None:
                    yield from aliases.listed(self, session, owner)
            return
        if len(segments) > 3:
            return
        collection = self._calendar(session, segments[0], segments[1])
        if collection is None:
            return
        if len(segments) == 3:
            _, item = next(iter(collection.get_multi([segments[2]])))
            if item is not None:
                yield item
            return
        yield collection
        if depth != "0":
            yield from collection.get_all()

    # ------------------------------------------------------------------ writes

    def create_collection(
        self, href: str, items: Iterable[radicale_item.Item] | None = None,
        props: Mapping[str, str] | None = None,
    ) -> tuple[radicale_storage.BaseCollection, dict[str, radicale_item.Item], list[str]]:
        session = self._session()
        segments = _segments(href)
        if len(segments) < 2:
            name = segments[0] if segments else ""
            if not name or self._principal_exists(session, name):
                return Home(name), {}, []
            raise Forbidden("Homes are created by dispatch (fieldcal technician add).")
        if len(segments) > 2:
            raise Forbidden("Calendars live directly in a home: /<login>/<calendar>/.")
        if aliases.SEPARATOR in segments[1]:
            raise Forbidden(aliases.RESERVED_NAME_MESSAGE)
        if items is not None:
            raise Forbidden(
                "Uploading a whole calendar is not supported: create it with MKCALENDAR and "
                "put its events one by one."
            )
        wanted = dict(props or {})
        if wanted.pop("tag", "") != "VCALENDAR":
            raise Forbidden("Only calendars can be created here.")
        owner_login = segments[0]
        try:
            owner = directory.find_user(session, owner_login)
        except NotFound as exc:
            raise Forbidden(
                f"Calendars can only be created in a person's home, not in {owner_login!r}."
            ) from exc
        row = calendars.create_collection(
            self.context(), "/".join(segments), CollectionKind.CALENDAR, owner=owner,
            props=wanted,
        )
        state.current().collections.clear()
        return DbCollection(self, row), {}, []

    def move(self, item: radicale_item.Item, to_collection: radicale_storage.BaseCollection,
             to_href: str) -> None:
        source = item.collection
        if not isinstance(source, DbCollection) or not isinstance(to_collection, DbCollection):
            raise Forbidden("Only events can be moved, between calendars.")
        if source.kind != CollectionKind.CALENDAR or to_collection.kind != CollectionKind.CALENDAR:
            raise Forbidden(
                "Jobs stay in the jobs calendar: to change a visit, edit its time or status "
                "there. Only personal events can be moved between calendars."
            )
        assert item.href is not None
        ctx = self.context()
        state.current().forget_items()
        text = item.serialize()
        calendars.delete_item(ctx, source.row, item.href)
        calendars.put_item(ctx, to_collection.row, to_href, text)

    def verify(self) -> bool:
        with self._db().read() as session:
            session.execute(select(Collection.id).limit(1))
        return True
