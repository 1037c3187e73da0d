"""The start page (/) and the site icon (/favicon.ico)."""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, make_response, render_template, send_file

from server.web.context import settings
from share import pagekit

bp = Blueprint("landing", __name__)
bp.after_request(pagekit.protect)

STATIC = Path(__file__).resolve().parent / "static"
ICON_MAX_AGE = 7 * 24 * 3600


@bp.get("/")
def home() -> Response:
    """Where to go from here: book a visit (staff find their calendars under /dav/)."""
    return make_response(render_template("share/landing.html", dav_url=f"{settings().base_url}/dav/",
                                         **pagekit.phone_values()))


@bp.get("/favicon.ico")
def favicon() -> Response:
    return send_file(STATIC / "favicon.ico", mimetype="image/vnd.microsoft.icon",
                     max_age=ICON_MAX_AGE, conditional=True)
