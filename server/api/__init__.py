"""/api/v1: the dispatch API, a face over the core's domain functions.

`init_app(app)` (called by the app factory) arranges for the endpoints to be mounted
(server.api.endpoints) when the API is first needed: the first request under /api/v1, or
the first `url_for("api....")`. Its schemas (pydantic, spectree) take more memory than
the rest of a worker's app together, and a worker that only serves CalDAV, feeds or
pages never loads them. Every error under /api/v1 is an RFC 9457 problem; the OpenAPI
3.1 document generated from the declared schemas is served at /api/v1/openapi.json
(a copy is committed as openapi.json beside this file; `fieldcal api openapi` prints it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, request
from werkzeug.exceptions import HTTPException

PREFIX = "/api/v1"
LOADED = "fieldcal.api_mounted"
_MOUNTING = threading.RLock()


def under_prefix(path: str) -> bool:
    return path == PREFIX or path.startswith(f"{PREFIX}/")


def mount(app: Flask) -> None:
    """Register the API's endpoints on `app` (once), whether or not it served requests yet."""
    if app.extensions.get(LOADED):
        return
    with _MOUNTING:
        if app.extensions.get(LOADED):
            return
        from server.api import endpoints  # the schemas: loaded on first use

        served = app._got_first_request  # Flask refuses setup after a first request;
        app._got_first_request = False   # registering under the lock is that setup, once
        try:
            endpoints.register(app)
        finally:
            app._got_first_request = served
        app.extensions[LOADED] = True


def render_document() -> str:
    """The OpenAPI document as committed (needs an app context of an app with the API)."""
    from flask import current_app

    mount(current_app._get_current_object())  # type: ignore[attr-defined]  # the proxy's app
    from server.api import endpoints

    return endpoints.render_document()


def _app_http_error(error: HTTPException) -> Any:
    """Unrouted /api/ URLs (404, 405) answer as problems too; other faces keep their pages."""
    if under_prefix(request.path):
        from server.api import endpoints

        return endpoints.http_problem(error)
    return error


def _build_error(app: Flask) -> Callable[[Exception, str, dict[str, Any]], str]:
    def retry(error: Exception, endpoint: str, values: dict[str, Any]) -> str:
        if not endpoint.startswith("api.") or app.extensions.get(LOADED):
            raise error  # not ours: Flask goes on with its BuildError
        mount(app)
        from flask import url_for

        return url_for(endpoint, **values)
    return retry


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, _app_http_error)
    app.url_build_error_handlers.append(_build_error(app))
    serve = app.wsgi_app

    def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not app.extensions.get(LOADED) and under_prefix(str(environ.get("PATH_INFO") or "")):
            mount(app)
        return serve(environ, start_response)

    app.wsgi_app = wsgi_app  # type: ignore[method-assign]  # the usual way to wrap a Flask app
