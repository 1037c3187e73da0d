"""The access log never holds a whole link token."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest
from gunicorn.config import Config

from server.web.access_log import RedactingLogger, redact_paths

TOKEN = "WzEsMV0.awTSgg.dnXXpboMqILU3gTKKElOFI8HFoM"


@pytest.mark.parametrize("path", [f"/feeds/{TOKEN}.ics", f"/s/{TOKEN}", f"/s/{TOKEN}/visits/3.ics",
                                  f"/m/{TOKEN}?week=2031-03-03", f"/m/{TOKEN}/cancel",
                                  f"/book/hold/{TOKEN}", f"/book/hold/{TOKEN}/confirm",
                                  f"/book/confirmed/{TOKEN}"])
def test_tokens_are_shortened(path: str) -> None:
    shown = redact_paths(f"GET {path} HTTP/1.1")
    assert TOKEN not in shown
    assert TOKEN[:6] in shown
    assert shown.startswith("GET /")


def test_other_paths_are_untouched() -> None:
    line = "PROPFIND /dav/alice/jobs/ HTTP/1.1"
    assert redact_paths(line) == line


def test_gunicorn_atoms_are_redacted() -> None:
    logger = RedactingLogger(Config())
    environ = {"REQUEST_METHOD": "GET", "RAW_URI": f"/feeds/{TOKEN}.ics", "SERVER_PROTOCOL": "HTTP/1.1",
               "PATH_INFO": f"/feeds/{TOKEN}.ics", "QUERY_STRING": "", "HTTP_REFERER": f"/s/{TOKEN}"}
    atoms = logger.atoms(SimpleNamespace(status="200 OK", sent=10, headers=[]),
                         SimpleNamespace(headers=[("Referer", f"/s/{TOKEN}")]),
                         environ, dt.timedelta(milliseconds=3))
    assert all(TOKEN not in str(value) for value in atoms.values())
