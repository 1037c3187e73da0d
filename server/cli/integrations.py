"""`fieldcal integration ...` and `fieldcal webhook ...`: connections to other platforms."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click
import httpx
from sqlalchemy import select

from server import integrations, oauth, readback, reconcile, webhooks
from server.cli.common import Runtime, iso, json_option, parse_duration, pass_runtime, print_json
from server.errors import InvalidInput
from server.integrations import Status
from server.models import Integration, Webhook, WebhookDelivery
from server.platforms import connectors
from server.vault import Vault


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{what} {value!r} must look like KEY=VALUE")
        pairs[key.strip()] = rest
    return pairs


def _vault(runtime: Runtime) -> Vault:
    return Vault(runtime.settings.credential_keys)


def integration_json(session: Any, integration: Integration) -> dict[str, Any]:
    health = integrations.health(session, integration)
    return {"id": integration.id, "platform": integration.platform, "name": integration.name,
            "scope": integration.scope, "status": integration.status,
            "settings": dict(integration.settings or {}),
            "secrets": "stored encrypted" if integration.secrets else "none",
            "last_success_at": iso(integration.last_success_at), "last_error": integration.last_error or None,
            "pending": health.pending, "dead_letters": health.dead, "pushed": health.sent}


@click.group()
def integration() -> None:
    """Connections to other platforms (calendars, CRMs, chat, task boards)."""


@integration.command("add")
@click.argument("platform")
@click.option("--name", required=True)
@click.option("--scope", default="all", show_default=True, help="all, team:SLUG or technician:LOGIN")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="A setting (repeatable).")
@click.option("--secret", "secrets", multiple=True, metavar="KEY=VALUE",
              help="A secret, stored encrypted (repeatable).")
@json_option
@pass_runtime
def add(runtime: Runtime, platform: str, name: str, scope: str, settings: tuple[str, ...],
        secrets: tuple[str, ...], as_json: bool) -> None:
    """Connect a platform. PLATFORM is one of the installed connectors (see `integration list`)."""
    with runtime.write() as ctx:
        created = integrations.add(ctx, _vault(runtime), platform, name, scope=scope,
                                   settings=_pairs(settings, "--set"), secrets=_pairs(secrets, "--secret"))
        data = integration_json(ctx.session, created)
    print_json({"id": data["id"]}) if as_json else click.echo(f"integration #{data['id']} added")


@integration.command("list")
@json_option
@pass_runtime
def list_(runtime: Runtime, as_json: bool) -> None:
    """Every integration with its health; and the platforms that can be connected."""
    with runtime.read() as session:
        found = session.scalars(select(Integration).order_by(Integration.id))
        rows = [integration_json(session, i) for i in found]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        click.echo(f"#{row['id']:<4} {row['platform']:<16} {row['name']:<24} {row['scope']:<18} "
                   f"{row['status']:<16} pending {row['pending']}, dead {row['dead_letters']}")
    click.echo(f"platforms: {', '.join(sorted(connectors()))}")


def _one(runtime: Runtime, integration_id: int) -> dict[str, Any]:
    with runtime.read() as session:
        return integration_json(session, integrations.get(session, integration_id))


@integration.command("show")
@click.argument("integration_id", type=int)
@json_option
@pass_runtime
def show(runtime: Runtime, integration_id: int, as_json: bool) -> None:
    """One integration: settings (secrets never shown), health and dead letters."""
    data = _one(runtime, integration_id)
    if as_json:
        print_json(data)
        return
    for key, value in data.items():
        click.echo(f"{key}: {value}")


def _status_command(name: str, status: Status, help_text: str) -> click.Command:
    @click.command(name, help=help_text)
    @click.argument("integration_id", type=int)
    @pass_runtime
    def command(runtime: Runtime, integration_id: int) -> None:
        with runtime.write() as ctx:
            integrations.set_status(ctx, integrations.get(ctx.session, integration_id), status)
        click.echo(f"integration #{integration_id} is {status.value}")

    return command


integration.add_command(_status_command("pause", Status.PAUSED, "Stop pushing; changes wait in the queue."))
integration.add_command(_status_command("resume", Status.ACTIVE, "Push again, starting with what waited."))


@integration.command("remove")
@click.argument("integration_id", type=int)
@pass_runtime
def remove(runtime: Runtime, integration_id: int) -> None:
    """Disconnect: forget the integration, its secrets and its pending pushes."""
    with runtime.write() as ctx:
        integrations.remove(ctx, integrations.get(ctx.session, integration_id))
    click.echo(f"integration #{integration_id} removed")


@integration.command("retry")
@click.argument("integration_id", type=int)
@pass_runtime
def retry(runtime: Runtime, integration_id: int) -> None:
    """Queue the integration's dead-lettered pushes again."""
    with runtime.write() as ctx:
        count = integrations.retry(ctx, integrations.get(ctx.session, integration_id))
    click.echo(f"{count} push(es) queued again")


@integration.command("test")
@click.argument("integration_id", type=int)
@pass_runtime
def test(runtime: Runtime, integration_id: int) -> None:
    """Make one cheap authenticated call to the platform."""
    with runtime.read() as session:
        found = integrations.get(session, integration_id)
    click.echo(integrations.check(found, _vault(runtime)))


@integration.command("connect")
@click.argument("integration_id", type=int)
@pass_runtime
def connect(runtime: Runtime, integration_id: int) -> None:
    """Print the platform's sign-in URL (OAuth 2.0 with PKCE); the browser comes back to
    <base URL>/integrations/oauth/callback and the integration is connected."""
    settings = runtime.settings
    with runtime.write() as ctx:
        url = oauth.connect(ctx, _vault(runtime), integrations.get(ctx.session, integration_id),
                            settings.require_secret_keys(), settings.base_url)
    click.echo(url)


@integration.command("pull")
@click.argument("integration_id", type=int)
@pass_runtime
def pull(runtime: Runtime, integration_id: int) -> None:
    """Read back what changed on the platform (the worker does it; push notifications too)."""
    with runtime.write() as ctx:
        readback.request_pull(ctx, integrations.get(ctx.session, integration_id))
    click.echo(f"integration #{integration_id}: read-back queued")


@integration.command("reconcile")
@click.argument("integration_id", type=int)
@click.option("--since", default="", metavar="DATE",
              help="Visits ending after this date or time (ISO 8601; default: a day ago).")
@json_option
@pass_runtime
def reconcile_command(runtime: Runtime, integration_id: int, since: str, as_json: bool) -> None:
    """Compare what the platform holds with our visits and repair the drift (missing,
    duplicated, stale); running it again changes nothing."""
    try:
        start = (dt.datetime.fromisoformat(since) if since
                 else dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    except ValueError as exc:
        raise click.BadParameter(f"{since!r} is not a date like 2026-11-30", param_hint="--since") from exc
    start = start if start.tzinfo else start.replace(tzinfo=dt.UTC)
    with httpx.Client(timeout=10.0, follow_redirects=False) as http:
        report = reconcile.reconcile(runtime.database, _vault(runtime), integration_id, since=start,
                                     base_url=runtime.settings.base_url, actor=runtime.actor, http=http)
    if as_json:
        print_json(report.as_json())
        return
    click.echo(f"integration #{integration_id}: {report.listed} object(s) listed; "
               f"{len(report.recreated)} recreated, {len(report.deleted)} deleted, "
               f"{len(report.updated)} updated, {report.unchanged} unchanged")


@integration.command("rekey")
@pass_runtime
def rekey(runtime: Runtime) -> None:
    """Re-encrypt every stored secret with the newest key of FIELDCAL_CREDENTIAL_KEYS."""
    with runtime.write() as ctx:
        count = integrations.rekey(ctx, _vault(runtime))
    click.echo(f"{count} secret(s) re-encrypted with the newest key")


@click.group()
def webhook() -> None:
    """Signed webhooks to your own systems."""


@webhook.command("add")
@click.argument("url")
@click.option("--events", default=",".join(webhooks.DEFAULT_EVENTS), show_default=True,
              help="Comma-separated event patterns, e.g. appointment.*,job.*")
@click.option("--allow-private", is_flag=True, help="Allow a loopback or private-network target.")
@json_option
@pass_runtime
def webhook_add(runtime: Runtime, url: str, events: str, allow_private: bool, as_json: bool) -> None:
    """Add a webhook; prints its signing secret once."""
    with runtime.write() as ctx:
        created, secret = webhooks.add(ctx, _vault(runtime), url, events.split(","),
                                       allow_private=allow_private)
        webhook_id = created.id
    if as_json:
        print_json({"id": webhook_id, "secret": secret})
    else:
        click.echo(f"webhook #{webhook_id}; signing secret (shown once): {secret}")


@webhook.command("list")
@json_option
@pass_runtime
def webhook_list(runtime: Runtime, as_json: bool) -> None:
    with runtime.read() as session:
        rows: list[dict[str, Any]] = [{"id": w.id, "url": w.url, "events": w.events, "active": w.active,
                 "allow_private": w.allow_private, "created_at": iso(w.created_at)}
                for w in session.scalars(select(Webhook).order_by(Webhook.id))]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        click.echo(f"#{row['id']:<4} {'active' if row['active'] else 'removed':<8} {row['url']} "
                   f"{','.join(str(e) for e in row['events'])}")


@webhook.command("rotate")
@click.argument("webhook_id", type=int)
@click.option("--overlap", default="24h", show_default=True, help="How long the old secret also signs.")
@json_option
@pass_runtime
def webhook_rotate(runtime: Runtime, webhook_id: int, overlap: str, as_json: bool) -> None:
    """A new signing secret; the old one keeps signing beside it during the overlap."""
    span = parse_duration(overlap)
    with runtime.write() as ctx:
        secret = webhooks.rotate(ctx, _vault(runtime), webhooks.get(ctx.session, webhook_id), span)
    print_json({"id": webhook_id, "secret": secret}) if as_json else click.echo(f"new secret: {secret}")


@webhook.command("remove")
@click.argument("webhook_id", type=int)
@pass_runtime
def webhook_remove(runtime: Runtime, webhook_id: int) -> None:
    with runtime.write() as ctx:
        webhooks.remove(ctx, webhooks.get(ctx.session, webhook_id))
    click.echo(f"webhook #{webhook_id} removed")


def delivery_json(delivery: WebhookDelivery) -> dict[str, Any]:
    return {"id": delivery.id, "webhook_id": delivery.webhook_id, "event_id": delivery.event_id,
            "type": delivery.event_type, "status": delivery.status, "attempts": delivery.attempts,
            "response_status": delivery.response_status, "last_error": delivery.last_error or None,
            "created_at": iso(delivery.created_at), "delivered_at": iso(delivery.delivered_at)}


@webhook.command("deliveries")
@click.argument("webhook_id", type=int)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
@json_option
@pass_runtime
def webhook_deliveries(runtime: Runtime, webhook_id: int, limit: int, as_json: bool) -> None:
    """The delivery log of one webhook, newest first."""
    with runtime.read() as session:
        webhooks.get(session, webhook_id)
        rows = [delivery_json(d) for d in session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
            .order_by(WebhookDelivery.id.desc()).limit(limit))]
    if as_json:
        print_json(rows)
        return
    for row in rows:
        click.echo(f"#{row['id']:<5} {row['type']:<24} {row['status']:<10} attempts {row['attempts']} "
                   f"HTTP {row['response_status']} {row['last_error'] or ''}")


@webhook.command("redeliver")
@click.argument("delivery_id", type=int)
@pass_runtime
def webhook_redeliver(runtime: Runtime, delivery_id: int) -> None:
    """Send one delivery again (same event id and body, a fresh signature)."""
    with runtime.write() as ctx:
        delivery = ctx.session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            raise InvalidInput(f"no webhook delivery {delivery_id}")
        webhooks.redeliver(ctx, delivery)
    click.echo(f"delivery #{delivery_id} queued again")


