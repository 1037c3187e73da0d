"""Radicale auth plugin: per-device app passwords from the jobs database.

Only a hash of each password is stored (server.directory); a revoked password
stops working on the next request. Logins are not cached in the process.
"""

from __future__ import annotations

from radicale import auth as radicale_auth
from radicale import config as radicale_config
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from plugins.radicale import state
from server import directory

MAX_PASSWORD_LENGTH = 256


class Auth(radicale_auth.BaseAuth):
    def __init__(self, configuration: radicale_config.Configuration) -> None:
        super().__init__(configuration)
        self._db = state.DatabaseHandle(configuration)

    def _login(self, login: str, password: str) -> str:
        state.remember(None)
        if not login or not password or len(password) > MAX_PASSWORD_LENGTH:
            return ""
        try:
            with self._db().read() as session:
                found = self._check(session, login, password)
        except OperationalError:
            # SQLite: another process wrote between our read and the last-used update.
            with self._db().write() as session:
                found = self._check(session, login, password)
        state.remember(found)
        return found.login if found is not None else ""

    @staticmethod
    def _check(session: Session, login: str, password: str) -> state.Principal | None:
        found = directory.sign_in(session, login, password)
        return None if found is None else state.Principal(found.login, found.role, found.teams)
