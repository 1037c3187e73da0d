"""Radicale rights plugin (DESIGN §5).

Technicians read and write their own home's calendars and read their teams'
`team-<slug>/schedule`; dispatchers read and write every calendar; nobody
else has any right. Item paths get no rights of their own: Radicale then uses
the rights of the item's calendar.
"""

from __future__ import annotations

from radicale import config as radicale_config
from radicale import rights as radicale_rights

from plugins.radicale import state

TEAM_PREFIX = "team-"


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
        is_home = len(segments) == 1
        if who.is_dispatcher or home == who.login:
            return "R" if is_home else "rw"
        if home.startswith(TEAM_PREFIX) and home[len(TEAM_PREFIX):] in who.teams:
            return "R" if is_home else "r"
        return ""
