"""The console's session cookie and CSRF tokens.

The cookie is signed (itsdangerous, the instance's secret keys) and names the
person, the session generation it was issued under and the session's CSRF
token. Every request checks the generation against the database, so "sign out
everywhere", a new password or a deactivated account ends sessions at once on
every worker; nothing lives only in process memory.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from flask import current_app, g, request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response

from server import staff
from server.web.context import database, settings

COOKIE = "fieldcal_console"
PRE_COOKIE = "fieldcal_console_signin"  # the sign-in form's CSRF token, before any session
MAX_AGE_S = 12 * 3600
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SERIALIZER = "fieldcal.console.serializer"


def _serializer() -> URLSafeTimedSerializer:
    found = current_app.extensions.get(_SERIALIZER)
    if found is None:
        keys = list(reversed(settings().require_secret_keys()))  # itsdangerous signs with the last
        found = current_app.extensions[_SERIALIZER] = URLSafeTimedSerializer(
            keys, salt="fieldcal.console.session")
    return found


def _secure() -> bool:
    return settings().base_url.startswith("https://")


def _payload() -> dict[str, Any] | None:
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        data = _serializer().loads(raw, max_age=MAX_AGE_S)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), t) for k, t in
                                             (("u", int), ("g", int), ("c", str))):
        return None
    return data


def member() -> staff.Member | None:
    """The signed-in person of this request, if the session is still good."""
    if "console_member" in g:
        return g.console_member
    data = _payload()
    found = None
    if data is not None:
        with database().read() as session:
            found = staff.current(session, data["u"], data["g"])
    g.console_member = found
    g.console_csrf = data["c"] if found is not None and data is not None else ""
    return found


def csrf_token() -> str:
    """The token forms and fetches send back (the session's, or the sign-in form's)."""
    if member() is not None:
        return g.console_csrf
    if "console_pre" not in g:
        g.console_pre = request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(24)
    return g.console_pre


def csrf_ok() -> bool:
    """Whether this request carries the right CSRF token (in the form or the header)."""
    sent = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD, "")
    expected = g.console_csrf if member() is not None else request.cookies.get(PRE_COOKIE, "")
    return bool(sent) and bool(expected) and hmac.compare_digest(sent, expected)


def start(response: Response, signed_in: staff.Member) -> None:
    value = _serializer().dumps({"u": signed_in.user_id, "g": signed_in.generation,
                                 "c": secrets.token_urlsafe(24)})
    response.set_cookie(COOKIE, value, max_age=MAX_AGE_S, httponly=True, samesite="Lax",
                        secure=_secure(), path="/")
    response.delete_cookie(PRE_COOKIE, path="/console")


def keep_pre_token(response: Response) -> None:
    """Bind the sign-in form's CSRF token to this browser."""
    if "console_pre" in g and request.cookies.get(PRE_COOKIE) != g.console_pre:
        response.set_cookie(PRE_COOKIE, g.console_pre, max_age=3600, httponly=True,
                            samesite="Lax", secure=_secure(), path="/console")


def end(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="Lax", secure=_secure())
