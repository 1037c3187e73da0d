"""The dispatch console: staff sign-in and the pages a dispatcher keeps open.

`init_app(app)` mounts the pages under /console. The composition lets /api/v1
accept a console session through `api_caller()` (dispatchers only, with the
session's CSRF token on every write).
"""

from __future__ import annotations

from flask import Flask, request

from server import staff
from server.console import (
    access,
    daylinks,
    dispatch,
    intake,
    integrations,
    reporting,
    routes,
    session,
    settings_catalog,
    settings_people,
)

# imported for their routes on `routes.bp`
ROUTE_MODULES = (routes, dispatch, intake, integrations, access, daylinks, settings_people,
                 settings_catalog, reporting)


def api_caller() -> staff.Member | None:
    """The dispatcher a console session stands for at /api/v1, if any."""
    signed_in = session.member()
    if signed_in is None or not signed_in.is_dispatcher:
        return None
    if request.method not in session.SAFE_METHODS and not session.csrf_ok():
        return None
    return signed_in


def init_app(app: Flask) -> None:
    app.register_blueprint(routes.bp)
