"""The Flask app factory (composition): settings, database, faces."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify, request

from feeds.routes import bp as feeds_bp
from server import api, audit_anchor, console
from server.api.auth import SESSION_LOADER, Principal
from server.apikeys import ApiRole
from server.bodycache import BodyCache
from server.config import Settings, load_settings
from server.db import get_database
from server.errors import FieldcalError
from server.hooks.routes import bp as hooks_bp
from server.links import LinkSigner
from server.web.access_log import install_redaction
from server.web.compress import compress
from share.booking import bp as booking_bp
from share.day import bp as day_bp
from share.intake import bp as intake_bp
from share.landing import bp as landing_bp
from share.manage import bp as manage_bp
from share.routes import bp as share_bp

FEED_CACHE_BYTES = 16 * 1024 * 1024  # feeds are at most FIELDCAL_FEED_MAX_BYTES each


def _console_principal() -> Principal | None:
    """A dispatcher's console session stands for a dispatcher at /api/v1."""
    member = console.api_caller()
    return Principal(member.login, ApiRole.DISPATCHER) if member is not None else None


def create_app(test_config: dict[str, Any] | None = None, settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    if test_config:
        settings = settings.with_overrides(**test_config)
    settings.require_business_contact()
    app = Flask(__name__, instance_path=str(settings.instance_path))
    app.config["FIELDCAL"] = settings
    app.config["SECRET_KEY"] = settings.require_secret_keys()[0]
    audit_anchor.setup(settings)  # fails closed without FIELDCAL_AUDIT_KEYS
    app.extensions["fieldcal.db"] = get_database(settings.database_url)
    app.extensions["fieldcal.signer"] = LinkSigner(settings.secret_keys)
    app.extensions["fieldcal.feed_cache"] = BodyCache[bytes](FEED_CACHE_BYTES)
    install_redaction(app.logger)
    app.register_blueprint(feeds_bp)
    app.register_blueprint(share_bp)
    app.register_blueprint(booking_bp)
    app.register_blueprint(manage_bp)
    app.register_blueprint(day_bp)
    app.register_blueprint(hooks_bp)
    app.register_blueprint(landing_bp)
    app.register_blueprint(intake_bp)

    @app.after_request
    def gzip_text(response: Response) -> Response:
        return compress(request, response)
    api.init_app(app)
    console.init_app(app)
    app.extensions[SESSION_LOADER] = _console_principal

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify(status="ok")

    @app.errorhandler(FieldcalError)
    def domain_error(error: FieldcalError) -> Any:
        return jsonify(error=error.message), error.status

    return app

