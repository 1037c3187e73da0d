"""Every error of /api/v1 as RFC 9457 problem details, mapped in one place (never a 500)."""

from __future__ import annotations

import json
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Response, request
from sqlalchemy.exc import DataError, OperationalError
from werkzeug.exceptions import HTTPException

from server.apikeys import KeyRefused
from server.errors import (
    ConfigError,
    Conflict,
    FieldcalError,
    Forbidden,
    InvalidInput,
    NotFound,
    SlotTaken,
)
from server.scheduling.rules import BookingRefused

PROBLEM_TYPE = "application/problem+json"
TITLES = {400: "Bad request", 401: "Not signed in", 403: "Not allowed", 404: "Not found",
          405: "Method not allowed", 409: "Conflict", 412: "Changed since you read it",
          413: "Too large", 415: "Unsupported media type", 422: "Invalid input",
          428: "If-Match required", 503: "Busy, retry"}


class ApiProblem(Exception):
    """A problem the face itself finds (auth, preconditions, paging, validation)."""

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra


def problem(status: int, detail: str, *, headers: dict[str, str] | None = None,
            **extra: Any) -> Response:
    body: dict[str, Any] = {"type": "about:blank", "title": TITLES.get(status, "Error"),
                            "status": status, "detail": detail, "instance": request.path}
    body.update({k: v for k, v in extra.items() if v is not None})
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_TYPE)
    response.headers.update(headers or {})
    return response


def known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _reader_zone() -> str:
    """The caller's zone for a refusal message (`?tz=`, Fieldcal-Timezone), if it is one."""
    given = request.args.get("tz") or request.headers.get("Fieldcal-Timezone") or ""
    return given if given and known_zone(given) else ""


def domain_status(error: FieldcalError) -> int:
    if isinstance(error, ConfigError):
        return 503
    if isinstance(error, NotFound):
        return 404
    if isinstance(error, Forbidden):
        return 403
    if isinstance(error, Conflict):
        return 409
    if isinstance(error, InvalidInput):
        return 422
    return error.status if 400 <= error.status < 500 else 422


def from_exception(error: Exception) -> Response | None:
    """The problem response for an error we know, or None (let it propagate)."""
    if isinstance(error, ApiProblem):
        return problem(error.status, error.detail, headers=error.headers, **error.extra)
    if isinstance(error, BookingRefused):
        zone = _reader_zone() or error.zone
        context = error.context()
        return problem(409, error.describe(zone), rule=context["rule"],
                       conflicts=context["problems"], timezone=zone)
    if isinstance(error, SlotTaken):
        return problem(409, error.message, blocking=getattr(error, "blocking", None) or None)
    if isinstance(error, FieldcalError):
        return problem(domain_status(error), error.message)
    if isinstance(error, KeyRefused):
        return problem(401, error.reason, headers={"WWW-Authenticate": 'Bearer realm="fieldcal", '
                                                   'error="invalid_token"'})
    if isinstance(error, DataError):
        return problem(422, "A value is out of range for this server; check numbers and text "
                            "lengths.")
    if isinstance(error, OperationalError):
        return problem(503, "The database is busy; retry in a moment.",
                       headers={"Retry-After": "1"})
    if isinstance(error, HTTPException) and error.code is not None:
        return problem(error.code, error.description or TITLES.get(error.code, "Error"))
    return None
