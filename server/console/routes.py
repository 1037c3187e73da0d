"""Console pages: sign-in, sign-out, sign out everywhere, the dispatcher's home."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import wraps
from typing import ParamSpec

from flask import Blueprint, make_response, redirect, render_template, request, url_for
from werkzeug.wrappers import Response  # what views return: flask's pages and werkzeug's redirects

from server import staff
from server.actors import Actor
from server.console import session
from server.context import Context
from server.web.context import database, settings

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
               static_folder="static", static_url_path="/static")
P = ParamSpec("P")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
LOGIN_LIMIT = 64
PASSWORD_LIMIT = staff.MAX_PASSWORD
HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
}


@bp.after_request
def protect(response: Response) -> Response:
    kept = response.headers.get("Cache-Control") if response.cache_control.public else None
    response.headers.update(HEADERS)
    if kept:
        response.headers["Cache-Control"] = kept
    session.keep_pre_token(response)
    return response


@bp.app_context_processor
def console_values() -> dict[str, object]:
    return {"csrf_token": session.csrf_token, "csrf_field": session.CSRF_FIELD}


def _address() -> str:
    return request.remote_addr or "unknown"


def request_id() -> str:
    given = request.headers.get("X-Request-Id", "")
    return given if REQUEST_ID.match(given) else ""


def page(title: str, template: str, status: int = 200, **values: object) -> Response:
    return make_response(render_template(template, title=title, member=session.member(),
                                         **values), status)


def refused(status: int, title: str, message: str) -> Response:
    return page(title, "console/problem.html", status, message=message)


def to_sign_in() -> Response:
    """The sign-in page, back here afterwards; a stale session cookie is cleared on the way."""
    response = redirect(url_for("console.sign_in_form", next=request.path), 303)
    if request.cookies.get(session.COOKIE):
        session.end(response)
    return response


def dispatcher_only(view: Callable[P, Response]) -> Callable[P, Response]:
    """Signed out → the sign-in page; a technician → 403; a write without CSRF → 403."""

    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        signed_in = session.member()
        if signed_in is None:
            return to_sign_in()
        if not signed_in.is_dispatcher:
            return refused(403, "Dispatchers only",
                           "The console is for dispatchers. Technicians find their day "
                           "through the link dispatch sends them.")
        if request.method not in session.SAFE_METHODS and not session.csrf_ok():
            return refused(403, "Please reload the page",
                           "This form has expired. Reload the page and try again.")
        return view(*args, **kwargs)

    return wrapper


def _next_path(signed_in: staff.Member | None = None) -> str:
    wanted = request.values.get("next", "")
    if wanted.startswith("/console/") and "//" not in wanted and "\\" not in wanted:
        return wanted
    if signed_in is not None and signed_in.may_look and not signed_in.is_dispatcher:  # read-only
        return url_for("console.settings_index")
    return url_for("console.board")


@bp.get("")
def sign_in_form() -> Response:
    signed_in = session.member()
    if signed_in is not None and signed_in.may_look:
        return redirect(_next_path(signed_in), 303)
    return page("Sign in", "console/sign_in.html", next_path=_next_path())


@bp.post("")
def sign_in() -> Response:
    login = request.form.get("login", "").strip().lower()
    password = request.form.get("password", "")
    if not session.csrf_ok():
        return page("Sign in", "console/sign_in.html", 403, next_path=_next_path(), login=login[:LOGIN_LIMIT],
                    error="This form has expired. Please sign in again.")
    if not login or not password or len(login) > LOGIN_LIMIT or len(password) > PASSWORD_LIMIT:
        return page("Sign in", "console/sign_in.html", 400, next_path=_next_path(), login=login[:LOGIN_LIMIT],
                    error="Enter your login and your console password.")
    actor = Actor(name=login, channel=staff.CHANNEL, role="dispatcher",
                        request_id=request_id())
    with database().write() as db_session:
        attempt = staff.sign_in(Context(db_session, actor, settings().organizer),
                                login, password, _address())
    if attempt.member is None:
        if attempt.retry_after is not None:
            response = page("Sign in", "console/sign_in.html", 429, next_path=_next_path(),
                            login=login, error="Too many wrong passwords. Please wait a few "
                            "minutes before trying again.")
            response.headers["Retry-After"] = str(attempt.retry_after)
            return response
        return page("Sign in", "console/sign_in.html", 401, next_path=_next_path(), login=login,
                    error="That login and password do not match.")
    response = redirect(_next_path(attempt.member), 303)
    session.start(response, attempt.member)
    return response


@bp.post("/sign-out")
def sign_out() -> Response:
    if session.member() is not None and not session.csrf_ok():
        return refused(403, "Please reload the page",
                       "This form has expired. Reload the page and try again.")
    response = redirect(url_for("console.sign_in_form"), 303)
    session.end(response)
    return response


@bp.post("/sign-out-everywhere")
def sign_out_everywhere() -> Response:
    signed_in = session.member()
    if signed_in is None:
        return redirect(url_for("console.sign_in_form"), 303)
    if not session.csrf_ok():
        return refused(403, "Please reload the page",
                       "This form has expired. Reload the page and try again.")
    with database().write() as db_session:
        staff.sign_out_everywhere(Context(db_session, signed_in.actor(request_id()),
                                          settings().organizer), signed_in.user_id)
    response = redirect(url_for("console.sign_in_form", signed_out="everywhere"), 303)
    session.end(response)
    return response
