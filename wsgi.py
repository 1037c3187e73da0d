"""One WSGI app: /dav -> Radicale (our plugins), everything else -> Flask.

gunicorn loads it as `wsgi:create_wsgi_app()`; importing this module does nothing.
"""

from __future__ import annotations

from pathlib import Path

import radicale.config
import radicale.log
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from plugins.radicale.addressbook import window_spec
from plugins.radicale.application import Application as RadicaleApplication
from server.app import create_app
from server.config import Settings, load_settings
from server.errors import ConfigError
from server.intake.photos import MAX_FORM_BYTES
from server.web.guards import BodyLimit, RadicaleEnviron, WellKnownCaldav, WSGIApp, XmlGuard
from server.web.proxies import ClientAddress, TrustedProxies

RADICALE_CONFIG = Path(__file__).resolve().with_name("radicale.config")
DAV_MOUNT = "/dav"
OUR_PLUGINS = {
    "auth": "plugins.radicale.auth",
    "rights": "plugins.radicale.rights",
    "storage": "plugins.radicale.storage",
}
RESOURCE_SHARE = 0.8  # of the request-body limit, for one calendar object


def radicale_configuration(settings: Settings) -> radicale.config.Configuration:
    """radicale.config plus what only fieldcal's settings know; our plugins, always."""
    configuration = radicale.config.load([(str(RADICALE_CONFIG), False)])
    configuration.update({section: {"type": module} for section, module in OUR_PLUGINS.items()},
                         "fieldcal plugins")
    overrides: dict[str, dict[str, str]] = {
        "storage": {"database_url": settings.database_url, "organizer": settings.organizer,
                    "contacts_window": window_spec(settings)},
        "server": {
            "max_content_length": str(settings.max_body_bytes),
            "max_resource_size": str(max(1, int(settings.max_body_bytes * RESOURCE_SHARE))),
        },
    }
    if settings.dav_auth_delay is not None:
        overrides["auth"] = {"delay": str(settings.dav_auth_delay)}
    configuration.update(overrides, "fieldcal settings")
    for section, module in OUR_PLUGINS.items():
        if configuration.get(section, "type") != module:
            raise ConfigError(f"Radicale's {section}.type must be {module}.")
    return configuration


def create_dav_app(settings: Settings) -> WSGIApp:
    configuration = radicale_configuration(settings)
    radicale.log.set_level(str(configuration.get("logging", "level")),
                           bool(configuration.get("logging", "backtrace_on_debug")))
    return RadicaleEnviron(RadicaleApplication(configuration))


def create_wsgi_app(settings: Settings | None = None) -> WSGIApp:
    settings = settings or load_settings()
    flask_app = create_app(settings=settings)
    routed = DispatcherMiddleware(flask_app, {DAV_MOUNT: create_dav_app(settings)})
    form_limit = max(settings.max_body_bytes, MAX_FORM_BYTES)
    guarded = BodyLimit(XmlGuard(WellKnownCaldav(routed, f"{DAV_MOUNT}/")), settings.max_body_bytes,
                        larger={"/request": form_limit, "/request/embed": form_limit})
    return ClientAddress(guarded, TrustedProxies.parse(settings.trusted_proxies))
