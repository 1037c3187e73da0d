"""Who is calling /api/v1: a bearer API key, or a principal another face signed in.

`Authorization: Bearer <key>` is checked against the hashed keys. Without that
header, a loader registered under `SESSION_LOADER` in `app.extensions` (the
dispatcher console's session, for one) may name the principal; the endpoints and
their rights stay the same either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import current_app, g, request

from server import apikeys
from server.actors import Actor
from server.api.problems import ApiProblem
from server.apikeys import ROLE_SCOPES, ApiRole, Scope
from server.web.context import database

SESSION_LOADER = "fieldcal.api.session_principal"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="fieldcal"'}


@dataclass(frozen=True)
class Principal:
    name: str  # as written into the audit trail
    role: ApiRole
    key_id: int | None = None  # None for a session principal

    @property
    def owner(self) -> str:
        """Whose Idempotency-Keys these are."""
        return f"key:{self.key_id}" if self.key_id is not None else f"session:{self.name}"

    def may(self, scope: Scope) -> bool:
        return scope in ROLE_SCOPES[self.role]

    def actor(self, timezone: str = "") -> Actor:
        """The audit identity; `timezone` is where the caller reads times in messages."""
        return Actor(name=self.name, channel="api", role="dispatcher",
                     request_id=request.headers.get("X-Request-Id", "")[:64], timezone=timezone)


SessionLoader = Callable[[], Principal | None]


def _bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        return None
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiProblem(401, "Send the API key as `Authorization: Bearer <key>`.",
                         headers=CHALLENGE)
    return token.strip()


def authenticate() -> Principal:
    """The caller, or a 401 problem saying what to do."""
    token = _bearer()
    if token is None:
        loader: SessionLoader | None = current_app.extensions.get(SESSION_LOADER)
        principal = loader() if loader is not None else None
        if principal is None:
            raise ApiProblem(401, "This endpoint needs an API key: send `Authorization: Bearer "
                                  "<key>` (create one with `fieldcal apikey new NAME --role ...`).",
                             headers=CHALLENGE)
        return principal
    db = database()
    with db.read() as session:
        holder = apikeys.sign_in(session, token)
    if holder.use_is_stale:
        with db.write() as session:
            apikeys.note_use(session, holder.key_id)
    return Principal(holder.actor_name, holder.role, holder.key_id)


def require(scope: Scope) -> Principal:
    principal: Principal = g.get("api_principal") or authenticate()
    g.api_principal = principal
    if not principal.may(scope):
        raise ApiProblem(403, f"A {principal.role.value} key may not do this (it needs the "
                              f"{scope.value!r} right); use a key with a role that has it.")
    return principal
