"""Append-only, hash-chained audit trail.

Each entry's hash covers its content and the previous entry's hash; `prev_hash`
is unique, so the chain cannot fork, and `verify` finds any edited entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from server.actors import Actor
from server.models import AuditEntry, utcnow

GENESIS = "0" * 64
AUDIT_LOCK_KEY = 0x61756469


def content(entry: AuditEntry) -> dict[str, Any]:
    """What an entry says (everything its hash covers except the link to the previous one)."""
    return {
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "channel": entry.channel,
        "action": entry.action,
        "entity": entry.entity,
        "entity_id": entry.entity_id,
        "before": entry.before,
        "after": entry.after,
        "request_id": entry.request_id,
    }


def _digest(entry: AuditEntry) -> str:
    body = json.dumps({**content(entry), "prev": entry.prev_hash}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def record(
    session: Session,
    actor: Actor,
    action: str,
    entity: str,
    entity_id: object,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditEntry:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": AUDIT_LOCK_KEY})
    previous = session.execute(
        select(AuditEntry.hash).order_by(AuditEntry.id.desc()).limit(1)
    ).scalar_one_or_none()
    entry = AuditEntry(
        at=utcnow().replace(microsecond=0),
        actor=actor.name,
        channel=actor.channel,
        action=action,
        entity=entity,
        entity_id=str(entity_id),
        before=_jsonable(before),
        after=_jsonable(after),
        request_id=actor.request_id,
        prev_hash=previous or GENESIS,
    )
    entry.hash = _digest(entry)
    session.add(entry)
    session.flush()
    return entry


def _jsonable(value: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else json.loads(json.dumps(value, default=str))


def trail(session: Session, entity: str, entity_id: object) -> list[AuditEntry]:
    return list(
        session.scalars(
            select(AuditEntry)
            .where(AuditEntry.entity == entity, AuditEntry.entity_id == str(entity_id))
            .order_by(AuditEntry.id)
        )
    )


@dataclass(frozen=True)
class ChainBreak:
    entry_id: int
    reason: str


def verify(session: Session) -> Iterator[ChainBreak]:
    """Every place where the chain does not hold."""
    expected_prev = GENESIS
    for entry in session.scalars(select(AuditEntry).order_by(AuditEntry.id)).yield_per(1000):
        if entry.prev_hash != expected_prev:
            yield ChainBreak(entry.id, "previous hash does not match the entry before it")
        if _digest(entry) != entry.hash:
            yield ChainBreak(entry.id, "content does not match its hash")
        expected_prev = entry.hash
