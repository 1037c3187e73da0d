"""What the web faces read from the running Flask app: settings, database, link signer."""

from __future__ import annotations

from flask import current_app

from server.config import Settings
from server.db import Database
from server.links import LinkSigner


def settings() -> Settings:
    return current_app.config["FIELDCAL"]


def database() -> Database:
    return current_app.extensions["fieldcal.db"]


def link_signer() -> LinkSigner:
    return current_app.extensions["fieldcal.signer"]
