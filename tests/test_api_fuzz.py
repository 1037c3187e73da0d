"""schemathesis against the served OpenAPI document of a live gunicorn: for every operation,
positive and negative examples (bounded), no server error, every answer as documented."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

import pytest
import requests
import schemathesis
from apikit import Keys, live_server, make_keys
from hypothesis import HealthCheck, Phase, given, settings
from live import LiveServer, use_audit_key
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err, Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from server.db import Database

pytestmark = pytest.mark.slow
EXAMPLES = {GenerationMode.POSITIVE: 8, GenerationMode.NEGATIVE: 5}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """SQLite only: the document and the checks are the same on PostgreSQL (see test_api)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fieldcal.sqlite3'}"
    use_audit_key(url)
    yield url


@pytest.fixture(scope="module")
def live(seed: object, database_url: str,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    yield from live_server(database_url, tmp_path_factory.mktemp("api-live"))


@pytest.fixture(scope="module")
def keys(db: Database) -> Keys:
    return make_keys(db)


T = TypeVar("T")


def _ok(result: Ok[T] | Err[Any]) -> T:
    """The operation, or the schema error that the document has in its place."""
    if isinstance(result, Err):
        raise result.err()
    return result.ok()


@pytest.mark.parametrize("mode", list(EXAMPLES), ids=lambda m: m.value)
def test_every_operation_answers_as_documented(live: LiveServer, keys: Keys,
                                               mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(live.url("/api/v1/openapi.json"))
    auth = keys.headers("dispatcher")
    operations = [_ok(result) for result in schema.get_all_operations()]
    assert len(operations) >= 30
    with requests.Session() as session:
        for operation in operations:

            @settings(max_examples=EXAMPLES[mode], deadline=None, database=None,
                      derandomize=True, phases=[Phase.explicit, Phase.generate],
                      suppress_health_check=list(HealthCheck))
            @given(case=operation.as_strategy(generation_mode=mode))
            def check(case: schemathesis.Case) -> None:
                # Sent with our own session: schemathesis' transport trips over the
                # urllib3-future that another test dependency installs.
                request = case.as_transport_kwargs(base_url=live.base, headers=auth)
                response = session.request(**request, timeout=30, allow_redirects=False)
                case.validate_response(response, checks=CHECKS, headers=auth)

            check()
