"""Outbound webhooks: who receives which events, signed how, and the delivery log.

Each POST carries `Fieldcal-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
"<t>.<body>")>`; during a secret rotation's overlap a second `v1=` signed with the
previous secret follows, so receivers can switch at their own pace. Receivers should
reject timestamps older than 5 minutes. Targets that resolve to loopback, private,
link-local or otherwise non-public addresses are refused unless the webhook was added
with `allow_private`, at creation and again before every delivery; redirects are never
followed.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import uuid
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from server import audit, outbox
from server.actions import Action
from server.context import Context, operation
from server.errors import InvalidInput, NotFound
from server.models import Webhook, WebhookDelivery, utcnow
from server.vault import Vault

KIND = "webhook"
HEADER = "Fieldcal-Signature"
TOLERANCE = dt.timedelta(minutes=5)
DEFAULT_EVENTS = ("appointment.*", "job.*")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_header(secret_list: Sequence[str], timestamp: int, body: bytes) -> str:
    return ",".join([f"t={timestamp}", *(f"v1={sign(s, timestamp, body)}" for s in secret_list)])


def verify(secret: str, header: str, body: bytes, now: dt.datetime) -> bool:
    """What a receiver does (and what our tests do): any v1 matches, timestamp recent."""
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    stamps = [v for k, v in parts if k.strip() == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    timestamp = int(stamps[0])
    if abs(now.timestamp() - timestamp) > TOLERANCE.total_seconds():
        return False
    expected = sign(secret, timestamp, body)
    return any(hmac.compare_digest(expected, v.strip()) for k, v in parts if k.strip() == "v1")


class UnsafeTarget(InvalidInput):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"webhook target {url} is refused: {reason}. Add it with --allow-private "
                         "only if it is your own internal service.")
        self.url = url


def resolve_public(url: str, allow_private: bool) -> None:
    """Refuse URLs that are not http(s) or that resolve to non-public addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"webhook target {url!r} must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise InvalidInput("webhook target URLs may not carry credentials; the signature authenticates")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeTarget(url, f"its host does not resolve ({exc})") from exc
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global or address.is_multicast:
            raise UnsafeTarget(url, f"it resolves to the non-public address {address}")


def _events(patterns: Iterable[str]) -> list[str]:
    cleaned = [p.strip() for p in patterns if p.strip()]
    for pattern in cleaned:
        if not all(c.isalnum() or c in "._*" for c in pattern):
            raise InvalidInput(f"event pattern {pattern!r} may hold letters, digits, '.', '_' and '*'")
    return cleaned or list(DEFAULT_EVENTS)


def matches(webhook: Webhook, event_type: str) -> bool:
    return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in webhook.events or [])


@operation
def add(ctx: Context, vault: Vault, url: str, events: Iterable[str] = DEFAULT_EVENTS, *,
        allow_private: bool = False) -> tuple[Webhook, str]:
    """A new webhook and its secret (returned once, stored encrypted)."""
    resolve_public(url, allow_private)
    secret = "whsec_" + secrets.token_urlsafe(32)
    webhook = Webhook(url=url, events=_events(events), secrets=vault.seal({"current": secret}),
                      allow_private=allow_private, active=True, created_by=ctx.actor.name)
    ctx.session.add(webhook)
    ctx.session.flush()
    audit.record(ctx.session, ctx.actor, Action.WEBHOOK_ADD, "webhook", webhook.id,
                 after={"url": url, "events": webhook.events, "allow_private": allow_private})
    return webhook, secret


def get(session: Session, webhook_id: int) -> Webhook:
    webhook = session.get(Webhook, webhook_id)
    if webhook is None:
        raise NotFound(f"no webhook {webhook_id}")
    return webhook


@operation
def rotate(ctx: Context, vault: Vault, webhook: Webhook, overlap: dt.timedelta) -> str:
    """A new secret; the previous one keeps signing (as a second v1) for `overlap`."""
    current = vault.open(webhook.secrets)["current"]
    secret = "whsec_" + secrets.token_urlsafe(32)
    webhook.secrets = vault.seal({"current": secret, "previous": current})
    webhook.previous_until = utcnow() + overlap
    audit.record(ctx.session, ctx.actor, Action.WEBHOOK_ROTATE, "webhook", webhook.id,
                 after={"previous_until": webhook.previous_until.isoformat()})
    return secret


@operation
def remove(ctx: Context, webhook: Webhook) -> None:
    webhook.active = False
    audit.record(ctx.session, ctx.actor, Action.WEBHOOK_REMOVE, "webhook", webhook.id,
                 before={"url": webhook.url})


def signing_secrets(webhook: Webhook, vault: Vault, now: dt.datetime) -> list[str]:
    stored = vault.open(webhook.secrets)
    keys = [stored["current"]]
    if stored.get("previous") and webhook.previous_until is not None and now < webhook.previous_until:
        keys.append(stored["previous"])
    return keys


def queue(session: Session, webhook: Webhook, event_type: str, resource: dict[str, Any],
          event_key: str) -> WebhookDelivery | None:
    """One delivery of one event to one webhook (the same event key queues it once)."""
    event_id = uuid.uuid5(uuid.NAMESPACE_URL, f"fieldcal:{event_key}").hex
    if session.scalar(select(WebhookDelivery.id).where(WebhookDelivery.webhook_id == webhook.id,
                                                       WebhookDelivery.event_id == event_id)):
        return None
    body = json.dumps({"id": event_id, "type": event_type, "created_at": utcnow().isoformat(),
                       "data": resource}, sort_keys=True, separators=(",", ":"), default=str)
    delivery = WebhookDelivery(webhook_id=webhook.id, event_id=event_id, event_type=event_type, body=body,
                               status="pending", attempts=0, last_error="")
    session.add(delivery)
    session.flush()
    outbox.enqueue(session, KIND, {"delivery_id": delivery.id}, idempotency_key=f"{KIND}:{delivery.id}:0")
    return delivery


@operation
def redeliver(ctx: Context, delivery: WebhookDelivery) -> WebhookDelivery:
    delivery.status = "pending"
    outbox.enqueue(ctx.session, KIND, {"delivery_id": delivery.id},
                   idempotency_key=f"{KIND}:{delivery.id}:{delivery.attempts}:{utcnow().timestamp()}")
    audit.record(ctx.session, ctx.actor, Action.WEBHOOK_REDELIVER, "webhook_delivery", delivery.id)
    return delivery
