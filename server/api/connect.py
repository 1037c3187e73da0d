"""/api/v1 integrations (connections to other platforms) and signed webhooks: dispatcher
keys only. Secrets go in and are stored encrypted; they never come out (a webhook's
signing secret is shown once, when it is made or rotated)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import request
from sqlalchemy import select
from sqlalchemy.orm import Session

from server import integrations, webhooks
from server.api.admin_schemas import (
    DeliveryOut,
    DeliveryPage,
    IntegrationIn,
    IntegrationOut,
    IntegrationPage,
    RetryOut,
    RotateIn,
    WebhookIn,
    WebhookOut,
    WebhookPage,
    WebhookSecretOut,
)
from server.api.base import answers as ans
from server.api.base import (
    body,
    bp,
    check_if_match,
    cursor_id,
    endpoint,
    local,
    local_or_none,
    next_link,
    one,
    params,
    reading,
    settings,
    shown_once,
    writing,
    zone,
)
from server.api.schemas import ActionHeaders, CreateHeaders, PageQuery, WriteHeaders
from server.apikeys import Scope
from server.errors import NotFound
from server.integrations import Status
from server.models import Integration, Webhook, WebhookDelivery
from server.vault import Vault

INTEGRATION_ID = "<int:integration_id>"
WEBHOOK_ID = "<int:webhook_id>"
DELIVERY_ID = "<int:delivery_id>"
TAGS = ("integrations",)
HOOK_TAGS = ("webhooks",)


def _vault() -> Vault:
    return Vault(settings().credential_keys)


def integration_out(session: Session, row: Integration, secret_names: list[str]) -> IntegrationOut:
    health = integrations.health(session, row)
    return IntegrationOut.model_construct(
        id=row.id, platform=row.platform, name=row.name, scope=row.scope, status=row.status,
        settings=dict(row.settings or {}), secrets=secret_names, created_by=row.created_by,
        created_at=local(row.created_at), last_success_at=local_or_none(row.last_success_at),
        last_error=row.last_error or None, pending=health.pending, dead_letters=health.dead,
        pushed=health.sent, needs_reconnect=row.status == Status.NEEDS_RECONNECT)


def _out(session: Session, row: Integration) -> IntegrationOut:
    return integration_out(session, row, sorted(_vault().open(row.secrets)) if row.secrets else [])


@bp.get("/integrations")
@endpoint(Scope.ADMIN, tags=TAGS, query=PageQuery, resp=ans(200, IntegrationPage))
def list_integrations() -> Any:
    """Every integration with its health: pending pushes, dead letters, last success."""
    query = params(PageQuery)
    after = cursor_id(query.cursor)
    with reading() as session:
        rows = list(session.scalars(select(Integration).where(Integration.id > after)
                                    .order_by(Integration.id).limit(query.limit)))
        items = [_out(session, row) for row in rows]
    more = [items[-1].id] if len(items) == query.limit else None
    return IntegrationPage(items=items, next=next_link(more), timezone=zone().key)


@bp.post("/integrations")
@endpoint(Scope.ADMIN, tags=TAGS, body=IntegrationIn, headers=CreateHeaders,
          resp=ans(201, IntegrationOut), idempotent=True)
def add_integration() -> Any:
    """Connect a platform (settings and secrets as its README entry lists them)."""
    data = body(IntegrationIn)
    with writing() as ctx:
        row = integrations.add(ctx, _vault(), data.platform, data.name, scope=data.scope,
                               settings=data.settings, secrets=data.secrets)
        out = integration_out(ctx.session, row, sorted(data.secrets))
    return one(out, 201, f"{request.url_root.rstrip('/')}/api/v1/integrations/{out.id}")


@bp.get(f"/integrations/{INTEGRATION_ID}")
@endpoint(Scope.ADMIN, tags=TAGS, resp=ans(200, IntegrationOut))
def get_integration(integration_id: int) -> Any:
    with reading() as session:
        return one(_out(session, integrations.get(session, integration_id)))


def _set_status(integration_id: int, status: Status) -> Any:
    with writing() as ctx:
        row = integrations.get(ctx.session, integration_id)
        check_if_match(_out(ctx.session, row))
        integrations.set_status(ctx, row, status)
        ctx.session.flush()
        return one(_out(ctx.session, row))


@bp.post(f"/integrations/{INTEGRATION_ID}/pause")
@endpoint(Scope.ADMIN, tags=TAGS, headers=ActionHeaders, resp=ans(200, IntegrationOut),
          idempotent=True)
def pause_integration(integration_id: int) -> Any:
    """Stop pushing; changes wait in the queue."""
    return _set_status(integration_id, Status.PAUSED)


@bp.post(f"/integrations/{INTEGRATION_ID}/resume")
@endpoint(Scope.ADMIN, tags=TAGS, headers=ActionHeaders, resp=ans(200, IntegrationOut),
          idempotent=True)
def resume_integration(integration_id: int) -> Any:
    """Push again, starting with what waited."""
    return _set_status(integration_id, Status.ACTIVE)


@bp.post(f"/integrations/{INTEGRATION_ID}/retry")
@endpoint(Scope.ADMIN, tags=TAGS, headers=ActionHeaders, resp=ans(200, RetryOut),
          idempotent=True)
def retry_integration(integration_id: int) -> Any:
    """Queue the integration's dead-lettered pushes again."""
    with writing() as ctx:
        row = integrations.get(ctx.session, integration_id)
        check_if_match(_out(ctx.session, row))
        count = integrations.retry(ctx, row)
        ctx.session.flush()
        out = _out(ctx.session, row)
        return RetryOut.model_construct(requeued=count, integration=out), 200, {
            "ETag": one(out)[2]["ETag"]}


@bp.delete(f"/integrations/{INTEGRATION_ID}")
@endpoint(Scope.ADMIN, tags=TAGS, headers=WriteHeaders, resp=ans(200, IntegrationOut))
def remove_integration(integration_id: int) -> Any:
    """Disconnect: forget the integration, its secrets and its pending pushes."""
    with writing() as ctx:
        row = integrations.get(ctx.session, integration_id)
        out = _out(ctx.session, row)
        check_if_match(out)
        integrations.remove(ctx, row)
        return one(out)


# --------------------------------------------------------------------------- webhooks


def webhook_out(row: Webhook) -> WebhookOut:
    return WebhookOut.model_construct(
        id=row.id, url=row.url, events=list(row.events or []), active=row.active,
        allow_private=row.allow_private, created_by=row.created_by,
        created_at=local(row.created_at), previous_secret_until=local_or_none(row.previous_until))


def delivery_out(row: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut.model_construct(
        id=row.id, webhook_id=row.webhook_id, event_id=row.event_id, type=row.event_type,
        status=row.status, attempts=row.attempts, response_status=row.response_status,
        last_error=row.last_error or None, created_at=local(row.created_at),
        delivered_at=local_or_none(row.delivered_at))


def _delivery(session: Session, webhook_id: int, delivery_id: int) -> WebhookDelivery:
    row = session.get(WebhookDelivery, delivery_id)
    if row is None or row.webhook_id != webhook_id:
        raise NotFound(f"No delivery #{delivery_id} of webhook #{webhook_id}.")
    return row


@bp.get("/webhooks")
@endpoint(Scope.ADMIN, tags=HOOK_TAGS, query=PageQuery, resp=ans(200, WebhookPage))
def list_webhooks() -> Any:
    query = params(PageQuery)
    after = cursor_id(query.cursor)
    with reading() as session:
        items = [webhook_out(w) for w in session.scalars(
            select(Webhook).where(Webhook.id > after).order_by(Webhook.id).limit(query.limit))]
    more = [items[-1].id] if len(items) == query.limit else None
    return WebhookPage(items=items, next=next_link(more), timezone=zone().key)


@bp.post("/webhooks")
@endpoint(Scope.ADMIN, tags=HOOK_TAGS, body=WebhookIn, headers=CreateHeaders,
          resp=ans(201, WebhookSecretOut), idempotent=True)
def add_webhook() -> Any:
    """Signed POSTs of the events matching `events` to `url`. The answer holds the signing
    secret, shown this once (an Idempotency-Key replay answers null: it is never stored in
    clear)."""
    data = body(WebhookIn)
    with writing() as ctx:
        row, secret = webhooks.add(ctx, _vault(), data.url, data.events,
                                   allow_private=data.allow_private)
        shown_once()
        out = webhook_out(row)
    location = f"{request.url_root.rstrip('/')}/api/v1/webhooks/{out.id}"
    return WebhookSecretOut.model_construct(webhook=out, secret=secret), 201, {
        "ETag": one(out)[2]["ETag"], "Location": location}


@bp.get(f"/webhooks/{WEBHOOK_ID}")
@endpoint(Scope.ADMIN, tags=HOOK_TAGS, resp=ans(200, WebhookOut))
def get_webhook(webhook_id: int) -> Any:
    with reading() as session:
        return one(webhook_out(webhooks.get(session, webhook_id)))


@bp.delete(f"/webhooks/{WEBHOOK_ID}")
@endpoint(Scope.ADMIN, tags=HOOK_TAGS, headers=WriteHeaders, resp=ans(200, WebhookOut))
def remove_webhook(webhook_id: int) -> Any:
    """Stop delivering (the delivery log stays)."""
    with writing() as ctx:
        row = webhooks.get(ctx.session, webhook_id)
        check_if_match(webhook_out(row))
        webhooks.remove(ctx, row)
        return one(webhook_out(row))


@bp.post(f"/webhooks/{WEBHOOK_ID}/rotate")
@endpoint(Scope.ADMIN, tags=HOOK_TAGS, body=RotateIn, headers=ActionHeaders,
          resp=ans(200, WebhookSecretOut), idempotent=True)
def rotate_webhook(webhook_id: int) -> Any:
    """A new signing secret (shown once); the old one keeps signing beside it for the overlap."""
    data = body(RotateIn)
    with writing() as ctx:
        row = webhooks.get(ctx.session, webhook_id)
        check_if_match(webhook_out(row))
        secret = webhooks.rotate(ctx, _vault(), row, dt.timedelta(hours=data.overlap_hours))
        shown_once()
        out = webhook_out(row)
    return WebhookSecretOut.model_construct(webhook=out, secret=secret), 200, {
        "ETag": one(out)[2]["ETag"]}


@bp.get(f"/webhooks/{WEBHOOK_ID}/deliveries")
@endpoint(Scope.ADMIN, tags=HOOK_TAGS, query=PageQuery, resp=ans(200, DeliveryPage))
def list_deliveries(webhook_id: int) -> Any:
    """The delivery log, newest first."""
    query = params(PageQuery)
    before = cursor_id(query.cursor)
    with reading() as session:
        webhooks.get(session, webhook_id)
        statement = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
        if before:
            statement = statement.where(WebhookDelivery.id < before)
        items = [delivery_out(d) for d in session.scalars(
            statement.order_by(WebhookDelivery.id.desc()).limit(query.limit))]
    more = [items[-1].id] if len(items) == query.limit else None
    return DeliveryPage(items=items, next=next_link(more), timezone=zone().key)


@bp.get(f"/webhooks/{WEBHOOK_ID}/deliveries/{DELIVERY_ID}")
@endpoint(Scope.ADMIN, tags=HOOK_TAGS, resp=ans(200, DeliveryOut))
def get_delivery(webhook_id: int, delivery_id: int) -> Any:
    with reading() as session:
        return one(delivery_out(_delivery(session, webhook_id, delivery_id)))


@bp.post(f"/webhooks/{WEBHOOK_ID}/deliveries/{DELIVERY_ID}/redeliver")
@endpoint(Scope.ADMIN, tags=HOOK_TAGS, headers=ActionHeaders, resp=ans(200, DeliveryOut),
          idempotent=True)
def redeliver(webhook_id: int, delivery_id: int) -> Any:
    """Send one delivery again: same event id and body, a fresh signature."""
    with writing() as ctx:
        row = _delivery(ctx.session, webhook_id, delivery_id)
        check_if_match(delivery_out(row))
        webhooks.redeliver(ctx, row)
        return one(delivery_out(row))
