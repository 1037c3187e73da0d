"""The API's endpoints, mounted by server.api when the API is first needed.

`register(app)` adds the endpoints, maps every error under /api/v1 to an RFC 9457
problem, and serves the OpenAPI 3.1 document generated from the declared schemas at
/api/v1/openapi.json (a copy is committed as openapi.json beside server/api/__init__.py;
`fieldcal api openapi` prints it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import Flask, Response
from sqlalchemy.exc import DataError, OperationalError
from werkzeug.exceptions import HTTPException

from server.api import catalog, connect, more, people, places, reporting, stream, work
from server.api.base import TIMEZONE_HEADER, bp, spec, zone
from server.api.problems import PROBLEM_TYPE, ApiProblem, from_exception
from server.apikeys import KeyRefused
from server.errors import FieldcalError

COMMITTED_DOCUMENT = Path(__file__).with_name("openapi.json")
# imported for their routes on `bp`
ROUTE_MODULES = (work, people, more, places, catalog, connect, stream, reporting)
SHARED_HEADERS = {
    "ETag": {"description": "The resource's version: send it back as If-Match to change it.",
             "schema": {"type": "string"}},
    TIMEZONE_HEADER: {"description": "The IANA time zone every time in the answer is given in.",
                      "schema": {"type": "string"}},
}


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (needs an app context with the API registered)."""
    generated = json.loads(json.dumps(spec.spec, sort_keys=True))
    for path in generated["paths"].values():
        for operation in path.values():
            for code, answer in operation.get("responses", {}).items():
                content = answer.get("content", {})
                if code.startswith(("4", "5")) and "application/json" in content:
                    answer["content"] = {PROBLEM_TYPE: content["application/json"]}
                elif code.startswith("2"):
                    answer["headers"] = SHARED_HEADERS
    reporting.describe_files(generated)
    return generated


def render_document() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return Response(render_document(), mimetype="application/json")


def _problem(error: Exception) -> Response:
    response = from_exception(error)
    if response is None:
        raise error
    return response


def http_problem(error: HTTPException) -> Response:
    """An unrouted /api/ URL (404, 405) as a problem (server.api's app-wide handler)."""
    response = _problem(error)
    response.headers[TIMEZONE_HEADER] = zone().key
    return response


def _timezone_header(response: Response) -> Response:
    response.headers[TIMEZONE_HEADER] = zone().key
    return response


for handled in (ApiProblem, FieldcalError, KeyRefused, DataError, OperationalError, HTTPException):
    bp.register_error_handler(handled, _problem)
bp.after_request(_timezone_header)


def register(app: Flask) -> None:
    app.register_blueprint(bp)
