"""Integrations and webhooks in the console (/console/integrations, /console/webhooks).

Every write is the same domain call the CLI and /api/v1 make (server.integrations,
server.oauth, server.webhooks). Secrets are typed into password fields, sealed by the vault
and never rendered back: a refused form comes back with its settings but empty secret
fields. A webhook's signing secret is shown once, on the page that answers its creation.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from flask import request
from sqlalchemy import select
from werkzeug.wrappers import Response

from server import integrations, oauth, webhooks
from server.console.desk import vault, when, writing
from server.console.routes import bp, dispatcher_only, page
from server.errors import ConfigError, FieldcalError, InvalidInput, NotFound
from server.integrations import Status
from server.models import Integration, Webhook, WebhookDelivery
from server.platforms import Connector, PlatformError, connector_class, connectors
from server.web.context import database, settings

SET = "set."  # form field prefix of a setting
SECRET = "secret."  # form field prefix of a secret (password inputs, never filled in)
DELIVERIES_SHOWN = 50


class Step(enum.Enum):
    """What a button on an integration's row does (one domain call each)."""

    PAUSE = "pause"
    RESUME = "resume"
    RETRY = "retry"
    REMOVE = "remove"


@dataclass(frozen=True)
class Row:
    """One integration as the list shows it: its health, never its secrets."""

    id: int
    platform: str
    name: str
    scope: str
    status: str
    last_success: str
    last_error: str
    pending: int
    dead: int
    sent: int
    needs_reconnect: bool
    paused: bool
    oauth: bool


@dataclass(frozen=True)
class Field:
    key: str
    required: bool


def _rows() -> list[Row]:
    with database().read() as session:
        found = []
        for integration in session.scalars(select(Integration).order_by(Integration.id)):
            health = integrations.health(session, integration)
            known = connectors().get(integration.platform)
            found.append(Row(
                integration.id, integration.platform, integration.name, integration.scope,
                str(integration.status), when(health.last_success_at), health.last_error,
                health.pending, health.dead, health.sent, health.needs_reconnect, health.paused,
                bool(known is not None and known.oauth is not None)))
    return found


def _webhooks() -> list[Webhook]:
    with database().read() as session:
        hooks = list(session.scalars(select(Webhook).where(Webhook.active.is_(True)).order_by(Webhook.id)))
        for hook in hooks:
            session.expunge(hook)
    return hooks


def _list(message: str = "", status: int = 200, tone: str = "notice", **extra: object) -> Response:
    return page("Integrations", "console/integrations.html", status, rows=_rows(), hooks=_webhooks(),
                platforms=sorted(connectors()), message=message, tone=tone, **extra)


def _refused(exc: FieldcalError) -> Response:
    return _list(exc.message, exc.status, "error")


def _connector(platform: str) -> type[Connector]:
    return connector_class(platform)  # UnknownPlatform (400) names the installed ones


def _fields(connector: type[Connector]) -> tuple[list[Field], list[str]]:
    settings_known = sorted(connector.optional_settings | {"base_url"}
                            | ({"auth_url", "token_url"} if connector.oauth is not None else set()))
    fields = [Field(k, True) for k in sorted(connector.required_settings)]
    fields += [Field(k, False) for k in settings_known if k not in connector.required_settings]
    return fields, sorted(connector.secret_names)


def _form(platform: str, status: int = 200, message: str = "", **values: object) -> Response:
    connector = _connector(platform)
    fields, secrets = _fields(connector)
    return page(f"Connect {platform}", "console/integration_new.html", status, platform=platform,
                fields=fields, secrets=secrets, oauth=connector.oauth is not None, message=message,
                tone="error", set_prefix=SET, secret_prefix=SECRET, **values)


@bp.get("/integrations")
@dispatcher_only
def integrations_page() -> Response:
    return _list()


@bp.get("/integrations/new")
@dispatcher_only
def integration_form() -> Response:
    try:
        return _form(request.args.get("platform", ""))
    except InvalidInput as exc:
        return _refused(exc)


@bp.post("/integrations")
@dispatcher_only
def integration_add() -> Response:
    platform = request.form.get("platform", "")
    name = request.form.get("name", "")
    scope = request.form.get("scope", "").strip() or "all"
    entered = {k.removeprefix(SET): v.strip() for k, v in request.form.items()
               if k.startswith(SET) and v.strip()}
    secrets = {k.removeprefix(SECRET): v for k, v in request.form.items() if k.startswith(SECRET) and v}
    try:
        with writing() as ctx:
            created = integrations.add(ctx, vault(), platform, name, scope=scope, settings=entered,
                                       secrets=secrets)
            created_id = created.id
    except (InvalidInput, NotFound, ConfigError) as exc:
        try:  # back to the form with what was typed, except the secrets
            return _form(platform, exc.status, exc.message, name=name, scope=scope, entered=entered)
        except InvalidInput:
            return _refused(exc)
    return _list(f"Integration #{created_id} ({platform}) added. Secrets are stored encrypted.", 201)


def _one(integration_id: int, step: Step) -> Response:
    try:
        with writing() as ctx:
            integration = integrations.get(ctx.session, integration_id)
            name = integration.name
            if step is Step.PAUSE:
                integrations.set_status(ctx, integration, Status.PAUSED)
                said = f"{name} is paused: changes wait in the queue."
            elif step is Step.RESUME:
                integrations.set_status(ctx, integration, Status.ACTIVE)
                said = f"{name} is active again; what waited goes out first."
            elif step is Step.RETRY:
                said = f"{integrations.retry(ctx, integration)} dead letter(s) of {name} queued again."
            else:
                integrations.remove(ctx, integration)
                said = f"{name} is removed, with its secrets and pending pushes."
    except NotFound as exc:
        return _refused(exc)
    return _list(said)


@bp.post("/integrations/<int:integration_id>/pause")
@dispatcher_only
def integration_pause(integration_id: int) -> Response:
    return _one(integration_id, Step.PAUSE)


@bp.post("/integrations/<int:integration_id>/resume")
@dispatcher_only
def integration_resume(integration_id: int) -> Response:
    return _one(integration_id, Step.RESUME)


@bp.post("/integrations/<int:integration_id>/retry")
@dispatcher_only
def integration_retry(integration_id: int) -> Response:
    return _one(integration_id, Step.RETRY)


@bp.post("/integrations/<int:integration_id>/remove")
@dispatcher_only
def integration_remove(integration_id: int) -> Response:
    return _one(integration_id, Step.REMOVE)


@bp.post("/integrations/<int:integration_id>/test")
@dispatcher_only
def integration_test(integration_id: int) -> Response:
    try:
        with database().read() as session:
            integration = integrations.get(session, integration_id)
        name = integration.name
        reached = integrations.check(integration, vault())  # outside the transaction: a network call
    except (NotFound, ConfigError) as exc:
        return _refused(exc)
    except PlatformError as exc:
        return _list(f"Test of {name} failed: {exc.message}", 502, "error")
    return _list(f"Test of {name} passed: {reached}")


@bp.post("/integrations/<int:integration_id>/connect")
@dispatcher_only
def integration_connect(integration_id: int) -> Response:
    """Start the OAuth sign-in: the page links to the platform (a form may not redirect to
    another site under the console's Content-Security-Policy)."""
    known = settings()
    try:
        with writing() as ctx:
            integration = integrations.get(ctx.session, integration_id)
            name, platform = integration.name, integration.platform
            url = oauth.connect(ctx, vault(), integration, known.require_secret_keys(), known.base_url)
    except (NotFound, InvalidInput, ConfigError) as exc:
        return _refused(exc)
    return page(f"Connect {name}", "console/integration_connect.html", name=name, platform=platform,
                url=url)


# --------------------------------------------------------------------------- webhooks


@bp.post("/webhooks")
@dispatcher_only
def webhook_add() -> Response:
    url = request.form.get("url", "").strip()
    events = [e for e in request.form.get("events", "").replace(",", " ").split() if e]
    allow_private = request.form.get("allow_private") == "yes"
    try:
        with writing() as ctx:
            hook, secret = webhooks.add(ctx, vault(), url, events or webhooks.DEFAULT_EVENTS,
                                        allow_private=allow_private)
            hook_id = hook.id
    except (InvalidInput, ConfigError) as exc:
        return _list(exc.message, exc.status, "error", hook_url=url)
    return page("Webhook added", "console/webhook_secret.html", 201, hook_id=hook_id, url=url,
                secret=secret)


@bp.post("/webhooks/<int:webhook_id>/remove")
@dispatcher_only
def webhook_remove(webhook_id: int) -> Response:
    try:
        with writing() as ctx:
            hook = webhooks.get(ctx.session, webhook_id)
            webhooks.remove(ctx, hook)
            url = hook.url
    except NotFound as exc:
        return _refused(exc)
    return _list(f"Webhook #{webhook_id} ({url}) no longer receives events; its log stays.")


@bp.get("/webhooks/<int:webhook_id>")
@dispatcher_only
def webhook_deliveries(webhook_id: int) -> Response:
    with database().read() as session:
        try:
            hook = webhooks.get(session, webhook_id)
        except NotFound as exc:
            return _refused(exc)
        deliveries = [(d, when(d.created_at), when(d.delivered_at, "—")) for d in session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
            .order_by(WebhookDelivery.id.desc()).limit(DELIVERIES_SHOWN))]
        return page(f"Webhook #{webhook_id}", "console/webhook.html", hook=hook, deliveries=deliveries)
