"""No log line holds a whole link token, whatever the error path: Flask's "Exception on
<path>", gunicorn's "Error handling request <uri>", tracebacks, and live gunicorn's log."""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import Iterator

import pytest
import requests
from flask import Flask
from gunicorn.config import Config
from live import AUDIT_KEY, LiveServer
from seeding import Seed, domain
from sqlalchemy import text

from server import links
from server.app import create_app
from server.config import load_settings
from server.db import Database
from server.links import LinkSigner, Purpose
from server.migrate import upgrade
from server.web.access_log import RedactingLogger, RedactTokens, redact_text
from share.forms import FormSigner, HoldRef

SECRET = secrets.token_urlsafe(32)


class Boom(RuntimeError):
    pass


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    folder = tmp_path_factory.mktemp("redaction")
    settings = load_settings({"FIELDCAL_INSTANCE": str(folder),
                              "FIELDCAL_DATABASE_URL": f"sqlite:///{folder / 'db.sqlite3'}",
                              "FIELDCAL_SECRET_KEYS": SECRET,
                              "FIELDCAL_BUSINESS_PHONE": "+49 30 555 0100",
                              "FIELDCAL_AUDIT_KEYS": AUDIT_KEY})
    flask_app = create_app(settings=settings)
    upgrade(flask_app.extensions["fieldcal.db"])
    yield flask_app
    flask_app.extensions["fieldcal.db"].dispose()


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> Iterator[io.StringIO]:
    """Everything logged anywhere during the test, formatted with tracebacks."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def link_token(purpose: Purpose) -> str:
    return LinkSigner((SECRET,)).dumps(links.ShareLink(id=7, version=3, purpose=purpose))


def hold_token() -> str:
    return FormSigner((SECRET,)).hold_token(HoldRef(7, secrets.token_hex(8), "UTC"))


ROUTES = {
    "feed": ("GET", "/feeds/{}.ics", Purpose.FEED),
    "share": ("GET", "/s/{}", Purpose.SHARE),
    "share visit": ("GET", "/s/{}/visits/3.ics", Purpose.SHARE),
    "manage": ("GET", "/m/{}", Purpose.MANAGE),
    "manage visit": ("GET", "/m/{}/visit.ics", Purpose.MANAGE),
    "reschedule": ("POST", "/m/{}/reschedule", Purpose.MANAGE),
    "cancel": ("POST", "/m/{}/cancel", Purpose.MANAGE),
    "day": ("GET", "/d/{}", Purpose.DAY),
    "day button": ("POST", "/d/{}/visits/3/on-my-way", Purpose.DAY),
    "hold": ("GET", "/book/hold/{}", None),
    "confirm": ("POST", "/book/hold/{}/confirm", None),
    "confirmed": ("GET", "/book/confirmed/{}", None),
}


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_an_exception_on_a_token_route_never_logs_the_token(
    app: Flask, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str], captured: io.StringIO, route: str,
) -> None:
    method, path, purpose = ROUTES[route]
    token = link_token(purpose) if purpose is not None else hold_token()

    def broken(*args: object, **_kwargs: object) -> None:
        raise Boom(f"could not read {args[-2] if purpose is not None else args[-1]}")

    monkeypatch.setattr(links, "resolve", broken)
    monkeypatch.setattr(FormSigner, "load_hold", broken)
    response = app.test_client().open(path.format(token), method=method,
                                      data={"csrf": "x"} if method == "POST" else None)
    assert response.status_code == 500
    logs = "\n".join([captured.getvalue(), caplog.text, *capsys.readouterr()])
    assert "Exception on " in logs and "Boom: could not read" in logs, logs[-2000:]
    assert token[:6] in logs
    assert token not in logs, logs[-2000:]


def test_gunicorn_error_log_never_holds_the_token(capsys: pytest.CaptureFixture[str]) -> None:
    token = link_token(Purpose.FEED)
    logger = RedactingLogger(Config())
    try:
        raise Boom(f"/feeds/{token}.ics failed")
    except Boom:
        logger.exception("Error handling request %s", f"/feeds/{token}.ics")
    logger.error("Error handling request %s", f"/book/hold/{hold_token()}/confirm")
    out, err = capsys.readouterr()
    assert "Error handling request /feeds/" in err and "Boom" in err
    assert token not in out + err
    assert hold_token()[:20] not in out + err


@pytest.mark.parametrize("shape", ["payload", "compressed", "path with spelling"])
def test_tokens_standing_alone_are_shortened(shape: str) -> None:
    token = {"payload": link_token(Purpose.MANAGE), "compressed": hold_token(),
             "path with spelling": link_token(Purpose.SHARE) + "%C3%A9!!"}[shape]
    line = f"user opened {token} today" if shape != "path with spelling" else f"GET /s/{token} x"
    cleaned = redact_text(line)
    assert token not in cleaned and token[:-5] not in cleaned
    assert cleaned.startswith(line[:10])


def test_a_record_with_arguments_and_a_traceback_is_redacted() -> None:
    token = link_token(Purpose.FEED)
    try:
        raise Boom(token)
    except Boom as exc:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s at %d",
                                   (f"/feeds/{token}.ics", 3), (type(exc), exc, exc.__traceback__))
    RedactTokens().filter(record)
    formatted = logging.Formatter().format(record)
    assert "failed /feeds/" in formatted and "at 3" in formatted and "Boom" in formatted
    assert token not in formatted


# --------------------------------------------------------------------------- live gunicorn


@pytest.fixture(scope="module")
def live(seed: Seed, database_url: str,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = LiveServer(database_url, tmp_path_factory.mktemp("instance"),
                        {"FIELDCAL_SECRET_KEYS": SECRET})
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


def test_a_failing_feed_on_live_gunicorn_logs_no_token(live: LiveServer, db: Database) -> None:
    with domain(db) as ctx:
        link = links.issue(ctx, Purpose.FEED, links.parse_subject(ctx.session, "technician:alice"))
        token = LinkSigner((SECRET,)).dumps(link)
    assert requests.get(live.url(f"/feeds/{token}.ics"), timeout=10).status_code == 200
    with db.engine.begin() as connection:
        connection.execute(text("ALTER TABLE share_link RENAME TO share_link_away"))
    try:
        failed = requests.get(live.url(f"/feeds/{token}.ics"), timeout=10)
    finally:
        with db.engine.begin() as connection:
            connection.execute(text("ALTER TABLE share_link_away RENAME TO share_link"))
    assert failed.status_code == 500
    log = live.log_path.read_text(errors="replace")
    assert "Exception on /feeds/" in log and "share_link" in log, log[-3000:]
    assert token[:6] in log
    assert token not in log, log[-3000:]
