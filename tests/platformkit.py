"""Platform test kit: a fake platform on loopback that records every request and answers as
scripted, and validators that check each recorded request against ../shared/contracts/."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

CONTRACTS = Path(__file__).resolve().parents[2] / "shared" / "contracts"


def contract(name: str) -> dict[str, Any]:
    """One platform's contract file (../shared/contracts/<name>.json); its absence fails."""
    path = CONTRACTS / f"{name}.json"
    if not path.is_file():
        for parent in Path(__file__).resolve().parents:
            candidate = parent / "shared" / "contracts" / f"{name}.json"
            if candidate.is_file():
                path = candidate
                break
    assert path.is_file(), f"contract {name}.json not found beside the repository (../shared/contracts)"
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), "")


Answer = tuple[int, dict[str, str], bytes]
Responder = Callable[[Recorded], Answer]


def json_answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Answer:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


@dataclass
class FakePlatform:
    """A platform on loopback. `script` answers first (one entry per request, FIFO); then
    `responder`. Every request is recorded, answered or not."""

    responder: Responder
    requests: list[Recorded] = field(default_factory=list)
    script: list[Answer] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        recorded = Recorded(request.method, request.path, dict(request.args.items()),
                            dict(request.headers.items()), request.get_data())
        with self.lock:
            self.requests.append(recorded)
            scripted = self.script.pop(0) if self.script else None
        status, headers, body = scripted or self.responder(recorded)
        return Response(body, status, headers)(environ, start_response)


@contextmanager
def fake_platform(responder: Responder) -> Iterator[FakePlatform]:
    platform = FakePlatform(responder)
    server = make_server("127.0.0.1", 0, platform, threaded=True)
    platform.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield platform
    finally:
        server.shutdown()
        thread.join(timeout=5)


# ----------------------------------------------------------------------- Swagger 2.0


SWAGGER_TYPES: dict[str, Callable[[str], bool]] = {
    "string": lambda v: True,
    "boolean": lambda v: v in ("true", "false"),
    "integer": lambda v: v.lstrip("-").isdigit(),
    "number": lambda v: v.replace(".", "", 1).lstrip("-").isdigit(),
}


def validate_swagger2(spec: dict[str, Any], recorded: Recorded, *,
                      bearer_satisfies: str | None = None) -> dict[str, Any]:
    """Check a form-encoded request against a Swagger 2.0 operation: the path and method exist,
    the content type is one the operation consumes, every required parameter is present, no
    unknown formData field is sent, and each value has the declared type. Returns the operation.
    `bearer_satisfies` names a header parameter that an `Authorization: Bearer` header satisfies
    (the contract's notes say so for Slack's `token`)."""
    base = spec.get("basePath", "")
    path = recorded.path.removeprefix(base) if base else recorded.path
    operations = spec["paths"].get(path)
    assert operations is not None, f"{recorded.path} is not in the contract ({sorted(spec['paths'])})"
    operation = operations.get(recorded.method.lower())
    assert operation is not None, f"{recorded.method} {recorded.path} is not in the contract"
    content_type = recorded.header("Content-Type").split(";")[0].strip()
    assert content_type in operation.get("consumes", spec.get("consumes", [])), content_type
    assert content_type == "application/x-www-form-urlencoded", "formData needs a form body"
    form = recorded.form()
    params = operation.get("parameters", [])
    declared = {p["name"]: p for p in params if p["in"] == "formData"}
    unknown = sorted(set(form) - set(declared))
    assert not unknown, f"fields not in the contract: {unknown}"
    for param in params:
        name, where = param["name"], param["in"]
        if where == "formData":
            value = form.get(name)
        elif where == "header":
            value = recorded.header(name)
            if not value and name == bearer_satisfies:
                value = recorded.header("Authorization").removeprefix("Bearer ").strip() or None
        elif where == "query":
            value = recorded.query.get(name)
        else:
            continue
        if param.get("required"):
            assert value, f"required {where} parameter {name!r} missing"
        if value is not None and where != "header":
            check = SWAGGER_TYPES.get(param.get("type", "string"), SWAGGER_TYPES["string"])
            assert check(value), f"{name}={value!r} is not a {param.get('type')}"
    return operation


# ------------------------------------------------------------- Google discovery documents


def discovery_json_schema(schemas: dict[str, Any], name: str) -> dict[str, Any]:
    """A discovery-format schema as JSON Schema: `$ref` by name, objects closed (a field the
    platform does not declare is an error), formats kept."""

    def convert(node: dict[str, Any]) -> dict[str, Any]:
        if "$ref" in node:
            return {"$ref": f"#/$defs/{node['$ref']}"}
        out: dict[str, Any] = {}
        kind = node.get("type")
        if kind == "any":
            return {}
        if kind:
            out["type"] = kind
        if "enum" in node:
            out["enum"] = node["enum"]
        if "format" in node and kind == "string":
            out["format"] = node["format"]
        if kind == "object" or "properties" in node:
            out["type"] = "object"
            out["properties"] = {k: convert(v) for k, v in node.get("properties", {}).items()}
            extra = node.get("additionalProperties")
            out["additionalProperties"] = convert(extra) if isinstance(extra, dict) else False
        if kind == "array":
            out["items"] = convert(node.get("items", {}))
        return out

    return {"$ref": f"#/$defs/{name}", "$defs": {k: convert(v) for k, v in schemas.items()}}


def _date_time(value: object) -> bool:
    import datetime as dt

    if not isinstance(value, str) or "T" not in value:
        return False
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False


def validate_discovery(document: dict[str, Any], recorded: Recorded, *, service_path: str = "",
                       required_fields: dict[str, list[str]] | None = None) -> str:
    """Check a request against a Google discovery method: method and path template match,
    path and required query parameters present, no unknown query parameter, values typed,
    and the body valid against the method's request schema (closed objects, RFC 3339
    date-times with offsets). Returns the method id."""
    import re

    from jsonschema import Draft202012Validator, FormatChecker

    methods = document["methods"]
    path = recorded.path.removeprefix(service_path)
    for method_id, method in methods.items():
        if method["httpMethod"] != recorded.method:
            continue
        pattern = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", method["path"]) + "$"
        match = re.match(pattern, path.lstrip("/"))
        if match is None:
            continue
        params = {**document.get("parameters", {}), **method.get("parameters", {})}
        for name, spec in params.items():
            if spec.get("location") == "query" and spec.get("required"):
                assert name in recorded.query, f"{method_id}: required query {name!r} missing"
        unknown = sorted(set(recorded.query) - {n for n, p in params.items() if p.get("location") == "query"})
        assert not unknown, f"{method_id}: query parameters not in the contract: {unknown}"
        for name, value in recorded.query.items():
            kind = params[name].get("type")
            if kind == "boolean":
                assert value in ("true", "false"), f"{name}={value!r}"
            elif kind == "integer":
                assert value.lstrip("-").isdigit(), f"{name}={value!r}"
            if "enum" in params[name]:
                assert value in params[name]["enum"], f"{name}={value!r} not in {params[name]['enum']}"
        request = method.get("request")
        if request is None:
            assert not recorded.body, f"{method_id} takes no body"
        else:
            schema = discovery_json_schema(document["schemas"], request["$ref"])
            checker = FormatChecker()
            checker.checks("date-time")(_date_time)
            errors = sorted(Draft202012Validator(schema, format_checker=checker).iter_errors(recorded.json()),
                            key=str)
            assert not errors, f"{method_id}: {errors[0].message} at {list(errors[0].absolute_path)}"
            for field_name in (required_fields or {}).get(method["id"], []):
                assert field_name in recorded.json(), f"{method_id}: {field_name} is required"
        return str(method_id)
    raise AssertionError(f"{recorded.method} {recorded.path} matches no method of the contract")


# ------------------------------------------------------------------------ OpenAPI 3.x


def openapi_document(fragment: dict[str, Any], server: str, *extra: dict[str, Any]) -> dict[str, Any]:
    """A fragment (plus other fragments of the same API) served at `server` (the fake)."""
    document = {**fragment, "servers": [{"url": server}],
                "paths": dict(fragment.get("paths", {})),
                "components": {k: dict(v) for k, v in fragment.get("components", {}).items()}}
    document.setdefault("info", {"title": "contract", "version": "1"})
    for more in extra:
        for path, operations in more.get("paths", {}).items():
            document["paths"][path] = {**document["paths"].get(path, {}), **operations}
        for kind, entries in more.get("components", {}).items():
            document["components"].setdefault(kind, {}).update(entries)
    # requests are what we send and check; answers come from our fakes, and some fragments
    # were trimmed so that response schemas point at parts left out
    document["paths"] = {path: {method: ({**operation, "responses": {"default": {"description": "-"}}}
                                         if isinstance(operation, dict) and "responses" in operation
                                         else operation)
                                for method, operation in operations.items()}
                         for path, operations in document["paths"].items()}
    return document


def validate_openapi(document: dict[str, Any], recorded: Recorded, base: str,
                     path_map: Callable[[str], str] | None = None) -> str:
    """Validate method, path, query, headers and body of a recorded request with openapi-core
    (OpenAPI 3.0/3.1 aware: nullable, oneOf, formats). `path_map` rewrites a path onto the
    operation that the contract documents for it. Returns "METHOD path"."""
    from openapi_core import Config, OpenAPI
    from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest
    from werkzeug.datastructures import Headers
    from werkzeug.test import EnvironBuilder

    path = path_map(recorded.path) if path_map else recorded.path
    headers = Headers([(k, v) for k, v in recorded.headers.items()
                       if k.lower() not in ("host", "content-length")])
    builder = EnvironBuilder(path=path, base_url=base, method=recorded.method, query_string=recorded.query,
                             headers=headers, data=recorded.body)
    request = Request(builder.get_environ())
    # the published documents carry flaws of their own (Trello repeats enum values): the
    # document is not ours to validate, our requests against it are
    api = OpenAPI.from_dict(document, config=Config(spec_validator_cls=None))
    api.validate_request(WerkzeugOpenAPIRequest(request))
    return f"{recorded.method} {path}"
