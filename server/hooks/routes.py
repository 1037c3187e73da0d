"""The platforms' inbound webhooks: verified by the integration's connector, then answered.

Every refusal is plain: an unknown integration is a 404, a missing or wrong signature (or a
stale timestamp) a 401, and nothing is read or changed before the signature holds.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, request

from server import inbound as taking_in
from server import integrations, oauth, readback
from server.context import Context
from server.errors import ConfigError, FieldcalError, InvalidInput, NotFound
from server.models import utcnow
from server.platforms import (
    AuthExpired,
    Connector,
    Inbound,
    InvalidSignature,
    PlatformError,
    Transient,
    UnknownPlatform,
    connector_class,
)
from server.vault import Vault
from server.web.context import database, settings

bp = Blueprint("hooks", __name__)


@bp.get(oauth.CALLBACK_PATH)
def oauth_callback() -> Response:
    """Where a platform sends the browser back after sign-in: trade the code for tokens."""
    state, code = request.args.get("state", ""), request.args.get("code", "")
    if request.args.get("error"):
        return _page(f"The platform did not connect: {request.args['error'][:100]}.", 400)
    if not state or not code:
        return _page("This address is only reached from a platform's sign-in page.", 400)
    import httpx  # loaded by the few requests that call a platform, not by every worker

    try:
        integration_id = oauth.integration_of_state(state, settings().require_secret_keys())
        with httpx.Client(timeout=10.0, follow_redirects=False) as http:
            connected = oauth.complete(database(), Vault(settings().credential_keys), integration_id, state,
                                       code, settings().base_url, http)
    except (InvalidInput, AuthExpired, Transient) as exc:
        return _page(f"The integration was not connected: {exc.message}", 400)
    return _page(f"{connected.name} ({connected.platform}) is connected. You can close this page.", 200)


def _page(text: str, status: int) -> Response:
    response = Response(f"{text}\n", status, mimetype="text/plain")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.route("/hooks/<platform>/<int:integration_id>", methods=["POST", "GET", "HEAD"])
def receive(platform: str, integration_id: int) -> Response:
    try:
        connector_type = connector_class(platform)
    except UnknownPlatform:
        abort(404)
    with database().read() as session:
        try:
            integration = integrations.get(session, integration_id)
        except NotFound:
            abort(404)
        if integration.platform != platform:
            abort(404)
        try:
            config = integrations.config(integration, Vault(settings().credential_keys))
        except ConfigError:
            return Response("this integration's secrets cannot be read on this server\n", 503,
                            mimetype="text/plain")
    inbound = Inbound(method=request.method, path=request.path, headers=dict(request.headers),
                      body=request.get_data(cache=True), query=request.args.to_dict(), url=request.url)
    connector = connector_type(config)
    try:
        connector.verify(inbound, utcnow())
    except InvalidSignature as exc:
        return Response(f"{exc.message}\n", 401, mimetype="text/plain")
    if connector_type.oauth is not None:  # receiving may read from the platform: a live token first
        connector = _with_fresh_token(connector_type, integration_id, connector)
    try:
        reply = connector.receive(inbound)
    except PlatformError as exc:  # reading the booking from the platform failed: it retries
        return Response(f"{exc.message}\n", 503, mimetype="text/plain")
    if reply.bookings:
        try:
            taking_in.apply(database(), integration_id, reply.bookings, settings().organizer)
        except FieldcalError as exc:
            return Response(f"{exc.message}\n", exc.status, mimetype="text/plain")
    if reply.changes:  # the platform named what changed and the connector read it
        readback.apply_changes(database(), integration_id, reply.changes, settings().organizer)
    if reply.pull:
        with database().write() as session:
            found = integrations.get(session, integration_id)
            readback.request_pull(Context(session, readback.actor_for(found), settings().organizer), found)
    return Response(reply.body, reply.status, content_type=reply.content_type)


def _with_fresh_token(connector_type: type[Connector], integration_id: int,
                      connector: Connector) -> Connector:
    """The connector again with a refreshed token when the stored one is about to expire
    (under the integration's row lock, as pushes refresh); unchanged when no refresh was due
    or the platform could not refresh (reading then fails and the platform retries)."""
    import httpx  # loaded by the few requests that call a platform, not by every worker

    vault = Vault(settings().credential_keys)
    try:
        with httpx.Client(timeout=10.0, follow_redirects=False) as http:
            if not oauth.fresh_token(database(), vault, integration_id, http):
                return connector
    except (AuthExpired, Transient):
        return connector
    with database().read() as session:
        return connector_type(integrations.config(integrations.get(session, integration_id), vault))
