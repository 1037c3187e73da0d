"""Integration health: what the outbox carried to other systems, and how it went.

Every outbox message created in the range, by kind (platform pushes, alerts, read-backs,
webhooks, emails, reminders) and, for platform messages, by integration: how many there
were, delivered, still waiting, dead-lettered, and the failed attempts among all tries
(attempts that did not deliver). Teams and technicians do not narrow it.
"""

from __future__ import annotations

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from server.models import Integration, OutboxMessage
from server.reports.base import Filters, Metric, Report
from server.worker import DEAD, PENDING, SENDING, SENT


def integration_health(session: Session, filters: Filters) -> Report:
    messages = (
        select(OutboxMessage.kind.label("kind"),
               OutboxMessage.payload["integration_id"].as_integer().label("integration_id"),
               OutboxMessage.status.label("status"), OutboxMessage.attempts.label("attempts"))
        .where(OutboxMessage.created_at >= filters.start, OutboxMessage.created_at < filters.end)
        .subquery()
    )
    sent = func.sum(case((messages.c.status == SENT, 1), else_=0))
    query = (
        select(messages.c.kind, messages.c.integration_id, Integration.name, Integration.platform,
               func.count(), sent,
               func.sum(case((messages.c.status.in_((PENDING, SENDING)), 1), else_=0)),
               func.sum(case((messages.c.status == DEAD, 1), else_=0)),
               func.sum(messages.c.attempts) - sent)
        .select_from(messages)
        .outerjoin(Integration, Integration.id == messages.c.integration_id)
        .group_by(messages.c.kind, messages.c.integration_id, Integration.name, Integration.platform)
        .order_by(messages.c.kind, messages.c.integration_id)
    )
    rows = [(kind, iid, name or "", platform or "", *(int(n or 0) for n in counts))
            for kind, iid, name, platform, *counts in session.execute(query)]
    columns = ("kind", "integration_id", "integration", "platform", "messages", "delivered",
               "waiting", "dead", "failed_attempts")
    summary = {name: sum(int(row[i] or 0) for row in rows)
               for i, name in enumerate(columns) if i >= 4}
    return Report(Metric.INTEGRATION_HEALTH, filters, columns, rows, dict(summary))
