"""The Flask app factory (composition): settings, database, faces."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify

from feeds.routes import bp as feeds_bp
from server.bodycache import BodyCache
from server.config import Settings, load_settings
from server.db import get_database
from server.errors import FieldcalError
from server.links import LinkSigner
from share.booking import bp as booking_bp
from share.manage import bp as manage_bp
from share.routes import bp as share_bp


def create_app(test_config: dict[str, Any] | None = None, settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    if test_config:
        settings = settings.with_overrides(**test_config)
    app = Flask(__name__, instance_path=str(settings.instance_path))
    app.config["FIELDCAL"] = settings
    app.config["SECRET_KEY"] = settings.require_secret_keys()[0]
    app.extensions["fieldcal.db"] = get_database(settings.database_url)
    app.extensions["fieldcal.signer"] = LinkSigner(settings.secret_keys)
    app.extensions["fieldcal.feed_cache"] = BodyCache[bytes]()
    app.register_blueprint(feeds_bp)
    app.register_blueprint(share_bp)
    app.register_blueprint(booking_bp)
    app.register_blueprint(manage_bp)

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(status="ok")

    @app.errorhandler(FieldcalError)
    def domain_error(error: FieldcalError) -> Any:
        return jsonify(error=error.message), error.status

    return app

