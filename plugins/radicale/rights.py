"""Radicale rights plugin (DESIGN §5).

Technicians read and write their own home's calendars and read their teams'
`team-<slug>/schedule`; dispatchers read and write every person's calendars
and read every team and customer view. Views are read-only for everyone:
clients are told so (no write privilege) instead of having each write refused.
Nobody else has any right.

An alias in a home (plugins.radicale.aliases) gets what both its place and
its target allow: a technician reads their team's schedule through
`/<login>/team-<slug>~schedule/`, a dispatcher writes a technician's jobs
through `/<dispatcher>/<login>~jobs/`. A technician's address book `/<login>/customers/`
is read-only for its owner and dispatchers. Item paths get no rights of their own:
Radicale then uses the rights of the item's calendar.
"""

from __future__ import annotations

from radicale import config as radicale_config
from radicale import rights as radicale_rights

from plugins.radicale import aliases, state
from server.contacts import BOOK

TEAM_PREFIX = "team-"


def _calendar_rights(who: state.Principal, home: str) -> str:
    """What `who` may do with a calendar directly in `home`."""
    if aliases.is_view_home(home):
        if who.is_dispatcher:
            return "r"
        return "r" if home.startswith(TEAM_PREFIX) and home[len(TEAM_PREFIX):] in who.teams else ""
    return "rw" if who.is_dispatcher or home == who.login else ""


def calendar_rights(who: state.Principal, home: str, name: str) -> str:
    """What `who` may do with the calendar `<home>/<name>` (an alias included). A person's
    address book (server.contacts) is read-only and shown by no alias."""
    rights = _calendar_rights(who, home)
    if name == BOOK:
        return radicale_rights.intersect(rights, "r")
    target = aliases.target_of(name)
    if target is not None and target.split("/", 1)[1] == BOOK:
        return ""
    if target is None or not rights:
        return rights
    return radicale_rights.intersect(rights, _calendar_rights(who, target.split("/", 1)[0]))


class Rights(radicale_rights.BaseRights):
    def __init__(self, configuration: radicale_config.Configuration) -> None:
        super().__init__(configuration)
        self._db = state.DatabaseHandle(configuration)

    def authorization(self, user: str, user_groups: set[str], path: str) -> str:
        if not user:
            return ""
        who = state.principal(self._db(), user)
        if who is None:
            return ""
        sane = path.strip("/")
        segments = sane.split("/") if sane else []
        if not segments:
            return "R"
        if len(segments) > 2:
            return ""
        home = segments[0]
        if len(segments) == 1:
            return "R" if _calendar_rights(who, home) else ""
        return calendar_rights(who, home, segments[1])
