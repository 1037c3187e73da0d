"""Worker handlers that reach other systems: platform pushes and outbound webhooks.

`platform.fanout` (database only) turns one visit change into a `platform.push` per
integration in scope and a delivery per matching webhook. `platform.push` calls the
connector: with no external reference yet it first asks the platform for an object that
carries our UID (a retry after a timeout finds what the first try created), then
creates, updates or cancels, and records the remote id. A 429 waits for `Retry-After`
without counting toward dead-lettering; refused credentials turn the integration
"needs reconnect" and its pushes wait; a refused request is dead-lettered at once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from sqlalchemy import select

from server import integrations, oauth, readback, webhooks
from server.actors import Actor
from server.context import Context
from server.db import Database
from server.errors import ConfigError
from server.integrations import ALERT, FANOUT, PUSH, Status
from server.models import Appointment, ExternalRef, Integration, Webhook, WebhookDelivery, utcnow
from server.platforms import (
    AuthExpired,
    Connector,
    Grant,
    Op,
    RateLimited,
    Rejected,
    Remote,
    Transient,
    Visit,
    connector_class,
)
from server.readback import PULL
from server.vault import Vault
from server.worker import Delivery, Handler, PermanentFailure, RetryLater

log = logging.getLogger("fieldcal.delivery")

ACTOR = Actor(name="delivery", channel="worker", role="system")
PAUSED_RECHECK = dt.timedelta(minutes=5)
WEBHOOK_TIMEOUT_S = 10.0
MAX_RESPONSE_CHARS = 500


def visit_of(appointment: Appointment, action: str, team_slugs: set[str], base_url: str,
             note: str = "") -> Visit:
    job = appointment.job
    customer = job.customer
    technician = appointment.technician
    service = appointment.service_type
    address = job.site.address if job.site is not None else ""
    return Visit(
        appointment_id=appointment.id, uid=appointment.uid, sequence=appointment.sequence, action=action,
        status=str(appointment.status), job_status=str(job.status), job_id=job.id,
        title=f"{job.title} — {customer.name}", description=job.problem or "",
        starts_at=appointment.starts_at, ends_at=appointment.ends_at,
        timezone=technician.timezone if technician is not None else "UTC", location=address,
        customer_id=customer.id, customer_name=customer.name, customer_email=customer.email,
        customer_phone=customer.phone, technician_login=technician.login if technician else "",
        technician_name=technician.name if technician else "",
        technician_email=technician.email if technician else "",
        team_slugs=tuple(sorted(team_slugs)), url=f"{base_url}/console/board",
        remote=bool(service is not None and service.remote), note=note,
    )


def resource_of(visit: Visit) -> dict[str, object]:
    """The visit as webhook receivers get it."""
    data = dataclasses.asdict(visit)
    data["starts_at"] = visit.starts_at.isoformat()
    data["ends_at"] = visit.ends_at.isoformat()
    data["team_slugs"] = list(visit.team_slugs)
    return {"appointment": data}


@dataclass
class Deliverer:
    database: Database
    vault: Vault
    base_url: str
    organizer: str = ""
    clock: Callable[[], dt.datetime] = utcnow
    platform_timeout_s: float = 10.0
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=WEBHOOK_TIMEOUT_S,
                                                                    follow_redirects=False))

    def handlers(self) -> dict[str, Handler]:
        return {FANOUT: self.on_fanout, PUSH: self.on_push, PULL: self.on_pull, ALERT: self.on_alert,
                webhooks.KIND: self.on_webhook}

    def on_dead(self, delivery: Delivery, error: str) -> None:
        """A message failed for good: dispatch hears of it (never for an alert itself)."""
        if delivery.kind == ALERT:
            return
        with self.database.write() as session:
            text = f"{delivery.kind} #{delivery.id} failed for good: {error[:300]}"
            integrations.queue_alert(session, text, f"dead:{delivery.id}")

    def on_alert(self, delivery: Delivery) -> None:
        with self.database.read() as session:
            integration = session.get(Integration, int(delivery.payload["integration_id"]))
            if integration is None or integration.status != Status.ACTIVE:
                return
            connector = connector_class(integration.platform)(integrations.config(integration, self.vault),
                                                              timeout=self.platform_timeout_s)
        try:
            connector.alert(str(delivery.payload["text"]), f"{self.base_url}/console/board")
        except RateLimited as exc:
            raise RetryLater(str(exc), dt.timedelta(seconds=max(exc.retry_after, 1.0))) from exc
        except (Rejected, AuthExpired) as exc:
            raise PermanentFailure(str(exc)) from exc

    # -- fan-out: database only --------------------------------------------------------

    def on_fanout(self, delivery: Delivery) -> None:
        payload = delivery.payload
        origin = integrations.origin_integration(payload.get("origin"))
        action = str(payload.get("action", ""))
        with self.database.write() as session:
            appointment = session.get(Appointment, int(payload["appointment_id"]))
            if appointment is None:
                return
            slugs = integrations.team_slugs(session, appointment.technician)
            for integration in session.scalars(select(Integration).order_by(Integration.id)):
                if integration.id == origin or not integrations.covers(integration, appointment.technician,
                                                                       slugs):
                    continue
                if not connector_class(integration.platform).takes_pushes(integration.settings or {}):
                    continue
                integrations.queue_push(session, integration, appointment.id, appointment.sequence, action)
            hooks = [w for w in session.scalars(select(Webhook).where(Webhook.active.is_(True)))
                     if webhooks.matches(w, action)]
            if hooks:
                resource = resource_of(visit_of(appointment, action, slugs, self.base_url))
                for webhook in hooks:
                    webhooks.queue(session, webhook, action, resource, delivery.idempotency_key)

    # -- platform pushes -----------------------------------------------------------------

    def on_push(self, delivery: Delivery) -> None:
        payload = delivery.payload
        integration_id = int(payload["integration_id"])
        try:
            oauth.fresh_token(self.database, self.vault, integration_id, self.http, clock=self.clock)
            self._push_once(delivery)
        except AuthExpired as exc:
            refused = exc.refused_token
            if refused is None or isinstance(exc, oauth.NeedsReconnect):
                self._needs_reconnect(integration_id, str(exc))
                raise RetryLater(str(exc), PAUSED_RECHECK) from exc
            try:  # the token was refused before it expired: refresh once (unless another did)
                oauth.fresh_token(self.database, self.vault, integration_id, self.http, refused=refused,
                                  clock=self.clock)
                self._push_once(delivery)
            except AuthExpired as again:
                self._needs_reconnect(integration_id, str(again))
                raise RetryLater(str(again), PAUSED_RECHECK) from again

    def _push_once(self, delivery: Delivery) -> None:
        payload = delivery.payload
        with self.database.read() as session:
            integration = session.get(Integration, int(payload["integration_id"]))
            appointment = session.get(Appointment, int(payload["appointment_id"]))
            if integration is None or appointment is None:
                return  # removed since: nothing to push
            if integration.status != Status.ACTIVE:
                raise RetryLater(f"integration {integration.id} is {integration.status}", PAUSED_RECHECK)
            connector_type = connector_class(integration.platform)
            config = integrations.config(integration, self.vault)
            visit = visit_of(appointment, str(payload.get("action", "")),
                             integrations.team_slugs(session, appointment.technician), self.base_url,
                             str(payload.get("note", "")))
            ref = session.scalars(select(ExternalRef.remote_id).where(
                ExternalRef.integration_id == integration.id,
                ExternalRef.appointment_id == appointment.id)).first()
        connector = connector_type(config, timeout=self.platform_timeout_s)
        try:
            remote_id = self._push(connector, visit, ref, first_try=delivery.attempt == 1)
        except RateLimited as exc:
            raise RetryLater(str(exc), dt.timedelta(seconds=max(exc.retry_after, 1.0))) from exc
        except AuthExpired as exc:
            oauth_kind = connector_type.oauth
            if oauth_kind is not None and (config.secrets.get("refresh_token")
                                           or oauth_kind.grant == Grant.CLIENT_CREDENTIALS):
                raise AuthExpired(str(exc), refused_token=config.secrets.get("access_token", "")) from exc
            raise
        except Rejected as exc:
            self._note_error(integration.id, str(exc))
            raise PermanentFailure(str(exc)) from exc
        except Transient as exc:
            self._note_error(integration.id, str(exc))
            raise
        with self.database.write() as session:
            integration = session.get(Integration, integration.id)
            if integration is not None:
                kept = remote_id if connector.keeps_objects else None
                integrations.record_push(session, integration, visit.appointment_id, kept, visit.sequence)

    @staticmethod
    def _push(connector: Connector, visit: Visit, ref: str | None, *, first_try: bool) -> Remote | None:
        """Create, update or cancel. A retry without a reference first looks for the object by
        our UID: the try before may have created it and lost the answer."""
        cancelled = visit.status == "cancelled"
        if not connector.keeps_objects:
            return connector.push(Op.CANCEL if cancelled else Op.UPDATE if ref else Op.CREATE, visit, ref)
        if ref is None and not first_try:
            ref = connector.find(visit)
        if ref is None:
            return None if cancelled else connector.push(Op.CREATE, visit, None)
        if cancelled:
            connector.push(Op.CANCEL, visit, ref)
            return Remote(ref)
        return connector.push(Op.UPDATE, visit, ref) or Remote(ref)

    def _needs_reconnect(self, integration_id: int, reason: str) -> None:
        with self.database.write() as session:
            integration = session.get(Integration, integration_id)
            if integration is None or integration.status == Status.NEEDS_RECONNECT:
                return
            ctx = Context(session, ACTOR, "")
            integrations.set_status(ctx, integration, Status.NEEDS_RECONNECT, reason)
            text = f"{integration.name} ({integration.platform}) needs reconnecting: {reason[:200]}"
            integrations.queue_alert(session, text, f"reconnect:{integration_id}:{utcnow():%Y%m%d%H}")
        log.error("integration %s needs reconnecting: %s", integration_id, reason)

    def _note_error(self, integration_id: int, reason: str) -> None:
        with self.database.write() as session:
            integration = session.get(Integration, integration_id)
            if integration is not None:
                integration.last_error = reason[:2000]

    def on_pull(self, delivery: Delivery) -> None:
        integration_id = int(delivery.payload["integration_id"])
        with self.database.read() as session:
            integration = session.get(Integration, integration_id)
            if integration is None:
                return
            if integration.status != Status.ACTIVE:
                raise RetryLater(f"integration {integration.id} is {integration.status}", PAUSED_RECHECK)
            connector_type = connector_class(integration.platform)
            cursor = integration.sync_cursor
        try:
            oauth.fresh_token(self.database, self.vault, integration_id, self.http, clock=self.clock)
            with self.database.read() as session:
                found = session.get(Integration, integration_id)
                assert found is not None
                config = integrations.config(found, self.vault)
            pulled = connector_type(config, timeout=self.platform_timeout_s).pull(cursor)
        except RateLimited as exc:
            raise RetryLater(str(exc), dt.timedelta(seconds=max(exc.retry_after, 1.0))) from exc
        except AuthExpired as exc:
            self._needs_reconnect(integration_id, str(exc))
            raise RetryLater(str(exc), PAUSED_RECHECK) from exc
        except Rejected as exc:
            raise PermanentFailure(str(exc)) from exc
        outcome = readback.apply(self.database, integration_id, pulled, self.organizer)
        log.info("integration %s: read back %d change(s)%s: %s", integration_id, len(pulled.changes),
                 " (full resync)" if pulled.full else "", outcome)

    # -- outbound webhooks -----------------------------------------------------------------

    def on_webhook(self, delivery: Delivery) -> None:
        with self.database.read() as session:
            record = session.get(WebhookDelivery, int(delivery.payload["delivery_id"]))
            if record is None:
                return
            webhook = session.get(Webhook, record.webhook_id)
            if webhook is None or not webhook.active:
                return
            url, allow_private, body = webhook.url, webhook.allow_private, record.body.encode("utf-8")
            try:
                keys = webhooks.signing_secrets(webhook, self.vault, self.clock())
            except ConfigError as exc:
                raise PermanentFailure(str(exc)) from exc
        status, error = self._post(url, allow_private, body, keys)
        with self.database.write() as session:
            record = session.get(WebhookDelivery, int(delivery.payload["delivery_id"]))
            if record is None:
                return
            record.attempts += 1
            record.response_status = status
            record.last_error = error
            record.status = "delivered" if not error else "failed"
            if not error:
                record.delivered_at = self.clock()
        if error:
            if status is not None and 300 <= status < 400:
                raise PermanentFailure(error)
            raise RuntimeError(error)

    def _post(self, url: str, allow_private: bool, body: bytes, keys: list[str]) -> tuple[int | None, str]:
        try:
            webhooks.resolve_public(url, allow_private)
        except webhooks.UnsafeTarget as exc:
            return None, exc.message
        timestamp = int(self.clock().timestamp())
        headers = {"Content-Type": "application/json", "User-Agent": "fieldcal-webhooks/1",
                   webhooks.HEADER: webhooks.signature_header(keys, timestamp, body)}
        try:
            response = self.http.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        if 200 <= response.status_code < 300:
            return response.status_code, ""
        if 300 <= response.status_code < 400:
            return response.status_code, f"redirect to {response.headers.get('location', '?')} not followed"
        return response.status_code, f"HTTP {response.status_code}: {response.text[:MAX_RESPONSE_CHARS]}"


def setup(database: Database, keys: tuple[str, ...], base_url: str, organizer: str) -> Deliverer:
    return Deliverer(database, Vault(keys), base_url, organizer)
