"""The transactional outbox: rows written in the transaction that caused them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.models import OutboxMessage


def enqueue(session: Session, kind: str, payload: dict[str, Any], idempotency_key: str) -> OutboxMessage:
    """Queue one message; the same key queues it once."""
    existing = session.scalars(
        select(OutboxMessage).where(OutboxMessage.idempotency_key == idempotency_key)
    ).first()
    if existing is not None:
        return existing
    message = OutboxMessage(kind=kind, payload=payload, idempotency_key=idempotency_key)
    session.add(message)
    return message
