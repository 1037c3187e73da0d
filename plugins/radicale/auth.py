"""Radicale auth plugin: per-device app passwords from the jobs database.

Only a hash of each password is stored (server.directory); a revoked password
stops working on the next request. Logins are not cached in the process.
Password guesses are throttled per client address and per login
(server.login_throttle); a refused attempt is noted in `state` and answered
429 with Retry-After by the application, at once (Radicale's constant-time
sleep for failed logins is skipped for it).
"""

from __future__ import annotations

from radicale import auth as radicale_auth
from radicale import config as radicale_config
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from plugins.radicale import state
from server import directory, login_throttle
from server.models import utcnow

MAX_PASSWORD_LENGTH = 256


class Auth(radicale_auth.BaseAuth):
    def __init__(self, configuration: radicale_config.Configuration) -> None:
        super().__init__(configuration)
        self._db = state.DatabaseHandle(configuration)

    def _login_ext(self, login: str, password: str, context: radicale_auth.AuthContext) -> str:
        state.remember(None)
        if not login or not password or len(password) > MAX_PASSWORD_LENGTH:
            return ""
        address = str(context.remote_addr or "unknown")
        database = self._db()
        try:
            # one transaction: the throttle, then the password (state.sign_in_session)
            with state.sign_in_session(database, write=False) as session:
                standing, found = self._attempt(session, login, password, address)
                if directory.noted_use(session):
                    state.commit_sign_in()  # the last-used stamp stays, whatever comes next
        except OperationalError:
            # SQLite: another process wrote between our read and the last-used update.
            with database.write() as session:
                standing, found = self._attempt(session, login, password, address)
        if standing.refused_for is not None:
            state.give_up_sign_in()
            state.refuse_login(standing.refused_for)
            return ""
        if found is None:
            with state.sign_in_session(database, write=True) as session:
                wait = login_throttle.note_failure(session, login, address)
            state.give_up_sign_in()
            if wait is not None:
                state.refuse_login(wait)
            return ""
        if standing.needs_note(utcnow()):
            with state.sign_in_session(database, write=True) as session:
                login_throttle.note_success(session, login, address)
        state.remember(found)
        return found.login

    def _sleep_for_constant_exec_time(self, time_ns_begin: int) -> None:
        if state.login_refused_for() is None:
            super()._sleep_for_constant_exec_time(time_ns_begin)

    @classmethod
    def _attempt(cls, session: Session, login: str, password: str, address: str
                 ) -> tuple[login_throttle.Standing, state.Principal | None]:
        """The throttle's standing of this login and address; the password checked only if
        the throttle lets it through."""
        standing = login_throttle.standing(session, login, address)
        if standing.refused_for is not None:
            return standing, None
        return standing, cls._check(session, login, password)

    @staticmethod
    def _check(session: Session, login: str, password: str) -> state.Principal | None:
        found = directory.sign_in(session, login, password)
        return None if found is None else state.Principal(found.login, found.role, found.teams)
