"""The frame every /api/v1 endpoint runs in: rights, validation, transactions, ETags,
If-Match, Idempotency-Key, cursors and the time zone of the answer."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, g, request
from pydantic import BaseModel
from spectree import Response as Answers
from spectree import SecurityScheme, SecuritySchemeData, SpecTree
from spectree.models import SecureType
from sqlalchemy.orm import Session

from server import idempotency
from server.api import PREFIX as API_PREFIX
from server.api.auth import Principal, require
from server.api.problems import ApiProblem, from_exception, known_zone
from server.api.schemas import Problem
from server.apikeys import Scope
from server.context import Context
from server.errors import FieldcalError
from server.web.context import database, settings

F = TypeVar("F", bound=Callable[..., Any])
M = TypeVar("M", bound=BaseModel)
PREFIX = API_PREFIX
TIMEZONE_HEADER = "Fieldcal-Timezone"
MAX_ID = 2**31 - 1  # ids are 32-bit integers on every backend
ERRORS = (401, 403, 404, 409, 412, 415, 422, 428, 503)

bp = Blueprint("api", __name__, url_prefix=PREFIX)


def _raise_validation(_req: Any, _resp: Any, error: Any, _instance: Any, _adapter: Any) -> None:
    if error is not None:
        errors = [{"loc": [str(part) for part in e.get("loc", ())], "msg": e.get("msg", ""),
                   "type": e.get("type", "")} for e in error.errors()]
        where = "; ".join(f"{'.'.join(e['loc']) or 'body'}: {e['msg']}" for e in errors[:5])
        raise ApiProblem(422, f"The request does not validate: {where}.", errors=errors)


spec = SpecTree(
    "flask",
    mode="strict",
    path="api/v1/openapi",
    title="fieldcal dispatch API",
    version="1",
    description="Jobs, visits, technicians and availability of a field-service business. "
                "Authenticate with `Authorization: Bearer <key>`.",
    annotations=False,
    before=_raise_validation,
    validation_error_status=422,
    validation_error_model=Problem,
    security_schemes=[SecurityScheme(
        name="bearer", data=SecuritySchemeData(type=SecureType.HTTP, scheme="bearer"))],
    security={"bearer": []},
    naming_strategy=lambda model: model.__name__,  # schema names are unique in api.schemas
    nested_naming_strategy=lambda _parent, child: child,
)


def answers(status: int, model: type[BaseModel] | None, *extra: int) -> Answers:
    """The documented answers of an endpoint: its success and every problem it can give."""
    codes: dict[str, Any] = {f"HTTP_{status}": model}
    for code in (*ERRORS, *extra):
        codes[f"HTTP_{code}"] = Problem
    return Answers(**codes)


def endpoint(scope: Scope, *, tags: tuple[str, ...], resp: Answers, query: type | None = None,
             body: type | None = None, headers: type | None = None,
             idempotent: bool = False) -> Callable[[F], F]:
    """Rights first (401/403 before anything else), then validation, then the view."""

    def decorate(func: F) -> F:
        validated = spec.validate(query=query, json=body, headers=headers, resp=resp,
                                  tags=list(tags))(func)

        @functools.wraps(validated)
        def view(*args: Any, **kwargs: Any) -> Any:
            principal = require(scope)
            for name, value in kwargs.items():
                if isinstance(value, int) and not 0 < value <= MAX_ID:
                    raise ApiProblem(404, f"No such {name.removesuffix('_id')} #{value}.")
            if not idempotent or "Idempotency-Key" not in request.headers:
                return validated(*args, **kwargs)
            return _idempotent(principal.owner, principal.key_id, validated, args, kwargs)

        return view  # type: ignore[return-value]

    return decorate


def _fingerprint() -> str:
    digest = hashlib.sha256(f"{request.method} {request.full_path}\n".encode())
    digest.update(request.get_data(cache=True))
    return digest.hexdigest()


_SHARED_TRANSACTION = "api_idempotent_transaction"


def _idempotent(owner: str, key_id: int | None, view: Callable[..., Any], args: Any,
                kwargs: Any) -> Response:
    """Run the view in the transaction that claims the key and stores its answer, so a
    retry either replays that answer or, when the first attempt left nothing, runs anew."""
    key = idempotency.check_key(request.headers["Idempotency-Key"])
    try:
        with database().write() as session:
            stored = idempotency.claim(session, owner, key, _fingerprint(), key_id)
            if stored is not None:
                return _replay(stored)
            g.setdefault(_SHARED_TRANSACTION, session)
            try:
                response = view(*args, **kwargs)
            except (ApiProblem, FieldcalError) as error:  # its writes were rolled back
                response = from_exception(error)
                assert response is not None
            finally:
                g.pop(_SHARED_TRANSACTION, None)
            if response.status_code >= 500:
                raise _NotKept(response)  # nothing is kept: a retry runs again
            idempotency.complete(session, owner, key, idempotency.StoredAnswer(
                response.status_code, response.content_type or "", _storable(response),
                response.headers.get("Location", ""), response.headers.get("ETag", "")))
    except _NotKept as failed:
        return failed.response
    return response


class _NotKept(Exception):
    """A server-side failure under an Idempotency-Key: roll the claim back with the rest."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _replay(stored: idempotency.StoredAnswer) -> Response:
    replay = Response(stored.body, status=stored.status, content_type=stored.content_type)
    if stored.location:
        replay.headers["Location"] = stored.location
    if stored.etag:
        replay.headers["ETag"] = stored.etag
    replay.headers["Idempotent-Replayed"] = "true"
    return replay


SHOWN_ONCE = "api_shown_once"  # g flag: the answer holds a secret that is never stored


def shown_once() -> None:
    """Mark this answer's `secret` as shown once: an Idempotency-Key replay gets null."""
    g.setdefault(SHOWN_ONCE, True)


def _storable(response: Response) -> bytes:
    data = response.get_data()
    if not g.get(SHOWN_ONCE) or response.status_code >= 300:
        return data
    answer = json.loads(data)
    answer["secret"] = None
    return json.dumps(answer).encode()


# --------------------------------------------------------------------------- context


def _validated(part: str, model: type[M]) -> M:
    current: Any = request  # spectree puts what it validated on request.context
    found = getattr(current.context, part)
    if not isinstance(found, model):
        raise ApiProblem(415, "Send the body as JSON (Content-Type: application/json).")
    return found


def params(model: type[M]) -> M:
    """The validated query string."""
    return _validated("query", model)


def body(model: type[M]) -> M:
    """The validated JSON body."""
    return _validated("json", model)


def zone() -> ZoneInfo:
    return ZoneInfo(settings().timezone)


def caller_zone() -> str:
    """Where the caller reads times in messages: `?tz=`, else the `Fieldcal-Timezone` request
    header, else the business's zone. A zone that does not exist is a 422."""
    given = request.args.get("tz") or request.headers.get(TIMEZONE_HEADER)
    if not given:
        return settings().timezone
    if not known_zone(given):
        raise ApiProblem(422, f"{given[:64]!r} is not an IANA time zone (like Europe/Berlin); "
                              "send one in `tz` or the Fieldcal-Timezone header.")
    return given


def local(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(zone())


def local_or_none(moment: dt.datetime | None) -> dt.datetime | None:
    return None if moment is None else moment.astimezone(zone())


@contextmanager
def reading() -> Iterator[Session]:
    with database().read() as session:
        yield session


@contextmanager
def writing() -> Iterator[Context]:
    """One write transaction acting as the signed-in principal (set by `endpoint`); under an
    Idempotency-Key, a savepoint of the transaction that also stores the request's answer."""
    principal: Principal = g.api_principal
    shared: Session | None = g.get(_SHARED_TRANSACTION)
    if shared is not None:
        with shared.begin_nested():
            yield Context(shared, principal.actor(caller_zone()), settings().organizer)
        return
    with database().write() as session:
        yield Context(session, principal.actor(caller_zone()), settings().organizer)


# --------------------------------------------------------------------------- ETags


def etag_of(model: BaseModel) -> str:
    return '"' + hashlib.sha256(model.model_dump_json().encode()).hexdigest()[:32] + '"'


def check_if_match(current: BaseModel) -> None:
    """428 without If-Match, 412 when the resource changed since the caller read it."""
    given = request.headers.get("If-Match")
    if given is None:
        raise ApiProblem(428, "Send If-Match with the ETag of your last read of this resource, "
                              "so that a change made meanwhile is not overwritten.")
    tags = [t.strip() for t in given.split(",")]
    if "*" not in tags and etag_of(current) not in tags:
        raise ApiProblem(412, "The resource changed since you read it: read it again (GET) and "
                              "retry with its new ETag.", headers={"ETag": etag_of(current)})


def one(model: BaseModel, status: int = 200, location: str | None = None) -> tuple[Any, int, dict]:
    headers = {"ETag": etag_of(model)}
    if location:
        headers["Location"] = location
    return model, status, headers


# --------------------------------------------------------------------------- cursors


def encode_cursor(position: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(position, default=str).encode()).decode().rstrip("=")


def decode_cursor(text: str | None) -> list[Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ApiProblem(422, "The cursor is not one this server gave; start again without it.") \
            from exc
    if not isinstance(value, list) or not value:
        raise ApiProblem(422, "The cursor is not one this server gave; start again without it.")
    return value


def next_link(position: list[Any] | None) -> str | None:
    if position is None:
        return None
    args = {k: v for k, v in request.args.items() if k != "cursor"}
    args["cursor"] = encode_cursor(position)
    return f"{request.base_url}?{urlencode(args)}"


def cursor_id(text: str | None) -> int:
    position = decode_cursor(text)
    if position is None:
        return 0
    if not isinstance(position[0], int) or isinstance(position[0], bool) or position[0] < 0:
        raise ApiProblem(422, "The cursor is not one this server gave; start again without it.")
    return position[0]
