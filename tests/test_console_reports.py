"""/console/reports over the hand-computed fixture: filters, SVG charts with text, tables."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from consolekit import make_app, set_password, sign_in
from flask import Flask
from flask.testing import FlaskClient
from reportkit import CLI, Fixture, build
from seeding import domain

from server import directory
from server.db import Database
from server.models import Role


@pytest.fixture(scope="module")
def fixture(database_url: str) -> Fixture:
    built = build(database_url)
    db = Database(database_url)
    with domain(db, CLI) as ctx:
        directory.add_user(ctx, "dana", name="Dana Dispatch", email="dana@example.test",
                           role=Role.DISPATCHER, timezone="Europe/Berlin")
    set_password(db, "dana")
    db.dispose()
    return built


@pytest.fixture(scope="module")
def app(fixture: Fixture, tmp_path_factory: pytest.TempPathFactory) -> Flask:
    return make_app(fixture.url, tmp_path_factory.mktemp("console-reports"))


@pytest.fixture()
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as client:
        assert sign_in(client, "dana") == 303
        yield client


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_the_week_in_charts_and_tables(client: FlaskClient) -> None:
    response = client.get("/console/reports?from=2031-03-24&to=2031-03-30")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    sections = html.count('<section class="report card"')
    assert sections == 7
    assert html.count('<svg class="chart" role="img"') == sections
    assert html.count("<table>") >= sections  # a table beside every chart
    # a chart names each bar and its number in text (no colour needed) and in its title
    assert re.search(r"<title[^>]*>Utilisation per technician; anna: 33\.9 %; bob: 7\.8 %</title>", html), \
        re.findall(r"<title[^>]*>Utilisation[^<]*", html)
    text = _text(html)
    assert "anna 8.0 2.5 31.0 0.3387" in text and "bob 2.0 0.5 32.0 0.0781" in text
    assert "Sun 1" in text and "23:00 1" in text  # the clock change day; bob's late start
    assert 'href="/console/reports"' in html  # in the console's navigation


def test_team_and_technician_filters(client: FlaskClient) -> None:
    html = client.get("/console/reports?from=2031-03-24&to=2031-03-30&team=newyork").get_data(as_text=True)
    text = _text(html)
    assert "bob 2.0 0.5 32.0 0.0781" in text and "anna 8.0" not in text
    assert '<option value="newyork" selected>' in html
    html = client.get("/console/reports?from=2031-03-24&to=2031-03-30&technician=anna").get_data(as_text=True)
    assert "anna 8.0 2.5 31.0 0.3387" in _text(html) and "bob 2.0" not in _text(html)


@pytest.mark.parametrize(("query", "status", "says"), [
    ("from=2031-03-30&to=2031-03-24", 400, "end on or after"),
    ("from=yesterday", 400, "is not a date"),
    ("team=nowhere", 404, "No team"),
])
def test_bad_filters_are_explained(client: FlaskClient, query: str, status: int, says: str) -> None:
    response = client.get(f"/console/reports?{query}")
    assert response.status_code == status
    assert says in response.get_data(as_text=True)
