"""Append-only, keyed and hash-chained audit trail.

Each entry's hash is an HMAC-SHA256, under a key kept outside the database
(FIELDCAL_AUDIT_KEYS, newest first), of its content, the previous entry's hash
and the id of the key that signed it. `prev_hash` is unique, so the chain cannot
fork; without the key nobody can edit an entry and recompute the later hashes.
The chain's head is also anchored outside the row set (`server.audit_anchor`),
so deleting the newest entries is found too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Table, insert, select, text
from sqlalchemy.orm import Session, SessionTransaction

from server.actions import Action, AppointmentSnapshot
from server.actors import Actor
from server.db import normalise_url
from server.errors import ConfigError
from server.models import AuditEntry, utcnow

GENESIS = "0" * 64
AUDIT_LOCK_KEY = 0x61756469
KEY_ID_LENGTH = 12
MIN_KEY_LENGTH = 16
PENDING = "fieldcal.audit.pending"
AUDIT_ENTRY = cast("Table", AuditEntry.__table__)
COLUMNS = ("at", "actor", "channel", "action", "entity", "entity_id", "before", "after",
           "request_id", "prev_hash", "hash", "key_id")
HEAD = select(AUDIT_ENTRY.c.hash).order_by(AUDIT_ENTRY.c.id.desc()).limit(1)
APPEND = insert(AUDIT_ENTRY).returning(AUDIT_ENTRY.c.id)  # built once (see server.changes)
# PostgreSQL, one round trip: the chain's lock, and a notification that wakes change
# streams on every host when the transaction commits (NOTIFY is delivered only then).
LOCK_AND_NOTIFY = text("SELECT pg_advisory_xact_lock(:k), pg_notify('fieldcal_changes', '')")


@dataclass(frozen=True)
class AuditKeys:
    """The keys of one database's audit trail, newest first, and where its head is anchored."""

    keys: tuple[str, ...]
    checkpoint: Path | None = None
    _by_id: dict[str, bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise ConfigError("FIELDCAL_AUDIT_KEYS is not set: the audit trail cannot be signed.")
        short = [k for k in self.keys if len(k) < MIN_KEY_LENGTH]
        if short:
            raise ConfigError(f"Each FIELDCAL_AUDIT_KEYS key must be at least {MIN_KEY_LENGTH} "
                              "characters long (use a long random string).")
        object.__setattr__(self, "_by_id", {key_id(k): k.encode("utf-8") for k in self.keys})

    @property
    def signing_id(self) -> str:
        return key_id(self.keys[0])

    def key(self, identifier: str | None) -> bytes | None:
        return self._by_id.get(identifier or "")


def key_id(key: str) -> str:
    """A short public name for a key (recorded with each entry; reveals nothing usable)."""
    return hmac.new(key.encode("utf-8"), b"fieldcal audit key id", hashlib.sha256).hexdigest()[
        :KEY_ID_LENGTH]


_configured: dict[str, AuditKeys] = {}


def configure(database_url: str, keys: AuditKeys) -> None:
    """Use these keys for the audit trail of this database in this process."""
    _configured[normalise_url(database_url)] = keys


def keys_for(session: Session) -> AuditKeys:
    """The configured keys of the session's database; refuse to go on without them."""
    url = session.get_bind().engine.url.render_as_string(hide_password=False)
    found = _configured.get(normalise_url(url))
    if found is None:
        raise ConfigError("FIELDCAL_AUDIT_KEYS is not set: refusing to write an unsigned "
                          "audit entry. Set it (comma-separated, newest first) in the "
                          "instance's fieldcal.env.")
    return found


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


def _body(entry: AuditEntry, **extra: Any) -> bytes:
    return json.dumps({**content(entry), "prev": entry.prev_hash, **extra},
                      sort_keys=True, default=str).encode("utf-8")


def legacy_digest(entry: AuditEntry) -> str:
    """The unkeyed SHA-256 of entries written before the trail was keyed (revision 0005)."""
    return hashlib.sha256(_body(entry)).hexdigest()


def digest(entry: AuditEntry, key: bytes) -> str:
    return hmac.new(key, _body(entry, key_id=entry.key_id), hashlib.sha256).hexdigest()


def sign(entry: AuditEntry, keys: AuditKeys) -> None:
    """Sign with the newest key (the entry's prev_hash must be set)."""
    entry.key_id = keys.signing_id
    entry.hash = digest(entry, keys.key(entry.key_id) or b"")


def record(
    session: Session,
    actor: Actor,
    action: Action,
    entity: str,
    entity_id: object,
    before: AppointmentSnapshot | dict[str, Any] | None = None,
    after: AppointmentSnapshot | dict[str, Any] | None = None,
) -> AuditEntry:
    keys = keys_for(session)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(LOCK_AND_NOTIFY, {"k": AUDIT_LOCK_KEY})
    session.flush()  # what is pending goes first (ids assigned, constraints checked)
    connection = session.connection()
    previous = connection.execute(HEAD).scalar_one_or_none()
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
    sign(entry, keys)
    # A Core insert (the entry is append-only; the ORM's unit of work adds nothing here):
    # the entry returned is not in the session, its id is the row's.
    entry.id = connection.execute(
        APPEND, {column: getattr(entry, column) for column in COLUMNS},
    ).scalar_one()
    transaction = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(PENDING, []).append(Pending(entry.id, entry.hash, transaction))
    return entry


@dataclass(frozen=True)
class Pending:
    """An entry written in a transaction not yet committed (the anchor's next checkpoint)."""

    id: int
    hash: str
    transaction: SessionTransaction | None  # the innermost transaction it was written in

    def written_in(self, transaction: SessionTransaction) -> bool:
        """Was it written in `transaction` or in one nested inside it?"""
        current = self.transaction
        while current is not None:
            if current is transaction:
                return True
            current = current.parent
        return False


def _jsonable(value: AppointmentSnapshot | dict[str, Any] | None) -> dict[str, Any] | None:
    if isinstance(value, AppointmentSnapshot):
        return value.as_record()
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
    entry_id: int | None
    reason: str

    def describe(self) -> str:
        return f"entry #{self.entry_id}: {self.reason}" if self.entry_id is not None else self.reason


def entry_breaks(entry: AuditEntry, expected_prev: str, keys: AuditKeys) -> list[str]:
    """Why this entry does not hold (empty when it does)."""
    reasons = []
    if entry.prev_hash != expected_prev:
        reasons.append("previous hash does not match the entry before it "
                       "(an earlier entry was removed, inserted or altered)")
    key = keys.key(entry.key_id)
    if entry.key_id is None:
        reasons.append("unsigned entry (written before the trail was keyed, or marked so by hand)")
    elif key is None:
        reasons.append(f"signed with key id {entry.key_id}, which is not in FIELDCAL_AUDIT_KEYS")
    elif not hmac.compare_digest(digest(entry, key), entry.hash or ""):
        reasons.append("content does not match its keyed hash (the entry was altered)")
    return reasons


def verify(session: Session, keys: AuditKeys | None = None) -> Iterator[ChainBreak]:
    """Every place where the chain does not hold (the head's anchor is checked apart)."""
    keys = keys or keys_for(session)
    expected_prev = GENESIS
    for entry in session.scalars(select(AuditEntry).order_by(AuditEntry.id)).yield_per(1000):
        for reason in entry_breaks(entry, expected_prev, keys):
            yield ChainBreak(entry.id, reason)
        expected_prev = entry.hash
