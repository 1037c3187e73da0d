"""Views of other people's and teams' calendars inside a person's home.

CalDAV clients (iOS, DAVx5, the `caldav` library) list only the children of
the user's calendar-home-set, `/<login>/`. So that a technician's phone shows
the team schedule and a dispatcher's phone shows everyone's calendars, a home
also holds aliases: read-through views of collections that live elsewhere.

Naming: an alias is named after its target's path with the "/" written as "~".
`/dispatch/bob~jobs/` shows `/bob/jobs/`; `/alice/team-north~schedule/` shows
`/team-north/schedule/`. "~" never occurs in a login or a team slug
(server.directory), and MKCALENDAR refuses calendar names containing it, so an
alias never collides with a calendar someone created, two aliases never collide
with each other, and the name alone says what the alias shows: rights are
decided from the path without asking the database.

A home lists:
- a technician's: the schedule of each team they belong to;
- a dispatcher's: every active technician's jobs and personal calendars and
  every team schedule. Customer views are not listed (there can be hundreds);
  they resolve by URL, at `/customer-<id>/appointments/` and as aliases.

An alias is its target: the same rows, items, collection etag, sync tokens and
change log; hrefs are under the alias path and its displayname says whose
calendar it is. Writes through it are the target's writes (the same domain
calls, the requesting user as actor); the alias itself cannot be created,
changed or deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, overload

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session

from plugins.radicale.collection import DbCollection
from plugins.radicale.state import Principal, StorageAccess
from server.calendars import PERSONAL, team_path
from server.errors import Forbidden
from server.models import Collection, CollectionKind, Role, Team, User

SEPARATOR = "~"
VIEW_PREFIXES = ("team-", "customer-")
RESERVED_NAME_MESSAGE = (
    f"Calendar names containing {SEPARATOR!r} are reserved for the views of other calendars "
    f"that a home shows (such as 'bob{SEPARATOR}jobs'); choose a name without {SEPARATOR!r}."
)


def alias_name(target_path: str) -> str:
    """The name, inside a home, of the alias of the collection at `target_path`."""
    return target_path.replace("/", SEPARATOR, 1)


def target_of(name: str) -> str | None:
    """The path an alias name stands for; None when `name` is not an alias name."""
    principal, separator, calendar = name.partition(SEPARATOR)
    if not separator or not principal or not calendar:
        return None
    return f"{principal}/{calendar}"


def is_view_home(name: str) -> bool:
    """A principal whose calendars are read-only views of the schedule (team, customer)."""
    return name.startswith(VIEW_PREFIXES)


def may_hold(owner: Principal, target_path: str) -> bool:
    """Whether `owner`'s home has an alias of `target_path` (listed or by URL)."""
    if target_path.split("/", 1)[0] == owner.login:
        return False
    if owner.is_dispatcher:
        return True
    return any(target_path == team_path(slug) for slug in owner.teams)


def _with_names() -> Select[*tuple[Any, ...]]:
    return (
        select(Collection, User.name, Team.name)
        .outerjoin(User, Collection.owner_id == User.id)
        .outerjoin(Team, Collection.team_id == Team.id)
    )


def _display_name(row: Collection, person: str | None, team: str | None) -> str:
    own = str((row.props or {}).get("D:displayname") or row.path.rsplit("/", 1)[-1])
    if row.kind == CollectionKind.TEAM and team:
        return f"{team} schedule"
    if person:
        return f"{person}: {own}"
    return own


class AliasCollection(DbCollection):
    """A target collection seen from a home: its row, under another path and name."""

    def __init__(self, storage: StorageAccess, row: Collection, path: str, displayname: str) -> None:
        super().__init__(storage, row)
        self._alias_path = path
        self._displayname = displayname

    @property
    def path(self) -> str:
        return self._alias_path

    @property
    def target_path(self) -> str:
        return self._row.path

    @overload
    def get_meta(self, key: None = None) -> Mapping[str, str]: ...

    @overload
    def get_meta(self, key: str) -> str | None: ...

    def get_meta(self, key: str | None = None) -> Mapping[str, str] | str | None:
        if key is None:
            return {**super().get_meta(), "D:displayname": self._displayname}
        if key == "D:displayname":
            return self._displayname
        return super().get_meta(key)

    def _refusal(self, what: str) -> Forbidden:
        return Forbidden(
            f"{self.path!r} shows {self.target_path!r} in this home; {what} "
            f"Change {self.target_path!r} itself instead."
        )

    def set_meta(self, props: Mapping[str, str]) -> None:
        raise self._refusal("its properties cannot be changed here.")

    def delete(self, href: str | None = None) -> None:
        if href is None:
            raise self._refusal("it cannot be deleted.")
        super().delete(href)


def listed(storage: StorageAccess, session: Session, owner: Principal) -> list[AliasCollection]:
    """The aliases `owner`'s home lists, in one query."""
    if owner.is_dispatcher:
        wanted = or_(
            and_(
                User.role == Role.TECHNICIAN, User.active.is_(True),
                or_(Collection.kind == CollectionKind.JOBS,
                    Collection.path == User.login + f"/{PERSONAL}"),
            ),
            Collection.kind == CollectionKind.TEAM,
        )
    elif owner.teams:
        wanted = and_(Collection.kind == CollectionKind.TEAM, Team.slug.in_(sorted(owner.teams)))
    else:
        return []
    rows = session.execute(_with_names().where(wanted).order_by(Collection.path))
    return [
        AliasCollection(storage, row, f"{owner.login}/{alias_name(row.path)}",
                        _display_name(row, person, team))
        for row, person, team in rows
        if may_hold(owner, row.path)
    ]


def resolve(storage: StorageAccess, session: Session, owner: Principal, name: str
            ) -> AliasCollection | None:
    """The alias `name` in `owner`'s home, if it is one `owner` may hold and its target exists."""
    target = target_of(name)
    if target is None or not may_hold(owner, target):
        return None
    found = session.execute(_with_names().where(Collection.path == target)).first()
    if found is None:
        return None
    row, person, team = found
    return AliasCollection(storage, row, f"{owner.login}/{name}", _display_name(row, person, team))
