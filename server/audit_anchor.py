"""The audit chain's head, anchored outside the row set; re-signing old entries.

A checkpoint names the newest entry (id and keyed hash) and carries an HMAC
under the audit key, so it cannot be forged or moved back to an older entry
without the key. The writer updates the instance's checkpoint file after every
commit that added audit entries (only ever forward, under a file lock);
`fieldcal audit checkpoint --output FILE` exports one to keep elsewhere.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session, SessionTransaction

from server.actions import Action
from server.actors import Actor
from server.audit import (
    GENESIS,
    PENDING,
    AuditKeys,
    ChainBreak,
    Pending,
    configure,
    digest,
    keys_for,
    legacy_digest,
    record,
    sign,
)
from server.config import Settings
from server.errors import ConfigError
from server.models import AuditEntry

CHECKPOINT_FILE_NAME = "audit-checkpoint.json"
CHECKPOINT_VERSION = 1


class CheckpointError(ConfigError):
    """A checkpoint file that cannot be read or does not hold."""


@dataclass(frozen=True)
class Checkpoint:
    entry_id: int
    hash: str
    key_id: str
    mac: str

    @staticmethod
    def _message(entry_id: int, entry_hash: str, key_id: str) -> bytes:
        return f"fieldcal audit checkpoint v{CHECKPOINT_VERSION}:{entry_id}:{entry_hash}:{key_id}".encode()

    @classmethod
    def of(cls, entry: AuditEntry | Pending, keys: AuditKeys) -> Checkpoint:
        key_id = keys.signing_id
        mac = hmac.new(keys.key(key_id) or b"", cls._message(entry.id, entry.hash, key_id),
                       hashlib.sha256).hexdigest()
        return cls(entry.id, entry.hash, key_id, mac)

    def authentic(self, keys: AuditKeys) -> bool:
        key = keys.key(self.key_id)
        if key is None:
            return False
        expected = hmac.new(key, self._message(self.entry_id, self.hash, self.key_id),
                            hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.mac)

    def as_json(self) -> dict[str, Any]:
        return {"version": CHECKPOINT_VERSION, "entry_id": self.entry_id, "hash": self.hash,
                "key_id": self.key_id, "mac": self.mac}

    @classmethod
    def parse(cls, text: str, source: str) -> Checkpoint:
        try:
            data = json.loads(text)
            if data.get("version") != CHECKPOINT_VERSION:
                raise ValueError("unknown version")
            return cls(int(data["entry_id"]), str(data["hash"]), str(data["key_id"]),
                       str(data["mac"]))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise CheckpointError(f"{source} is not an audit checkpoint ({exc}).") from exc


# One checkpoint is one JSON object padded to this size and written in place at the file's
# start: no rename (a rename over a file makes ext4 write the file's data out at once, about
# 0.4 ms on every commit that adds entries) and no truncation; the record lies within one
# disk sector, so a crash leaves the old record or the new one.
RECORD_BYTES = 512


@contextmanager
def _locked(path: Path, *, exclusive: bool) -> Iterator[None]:
    """The checkpoint's lock file beside it (writers exclusive, readers shared). A reader
    that cannot create it (a read-only copy kept elsewhere) reads without it."""
    try:
        descriptor = os.open(path.with_name(path.name + ".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    except OSError:
        if exclusive:
            raise
        yield
        return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)


def read_checkpoint(path: Path) -> Checkpoint | None:
    try:
        with _locked(path, exclusive=False):
            text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CheckpointError(f"Cannot read the audit checkpoint {path}: {exc.strerror}.") from exc
    return Checkpoint.parse(text, str(path))


def _record(checkpoint: Checkpoint) -> bytes:
    text = json.dumps(checkpoint.as_json(), sort_keys=True)
    if len(text) >= RECORD_BYTES:
        raise ValueError(f"a checkpoint of {len(text)} bytes does not fit {RECORD_BYTES}")
    return text.ljust(RECORD_BYTES - 1).encode() + b"\n"


def write_checkpoint(path: Path, checkpoint: Checkpoint, *, only_forward: bool = True) -> bool:
    """Write the checkpoint in place (under a lock); never move it back to an older entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = _record(checkpoint)
    with _locked(path, exclusive=True):
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if only_forward:
                try:
                    current = Checkpoint.parse(os.pread(descriptor, 4 * RECORD_BYTES, 0).decode(),
                                               str(path))
                except (CheckpointError, UnicodeDecodeError):
                    current = None  # empty or unreadable: replaced; verify reports a gap if any
                if current is not None and current.entry_id >= checkpoint.entry_id:
                    return False
            os.pwrite(descriptor, record, 0)
            if os.fstat(descriptor).st_size > len(record):  # another file written over
                os.ftruncate(descriptor, len(record))
            return True
        finally:
            os.close(descriptor)


def _after_commit(session: Session) -> None:
    if session.get_nested_transaction() is not None:
        return  # a savepoint released: its entries are committed only with the transaction
    committed: list[Pending] = session.info.pop(PENDING, [])
    if not committed:
        return
    keys = keys_for(session)
    if keys.checkpoint is None:
        return
    newest = max(committed, key=lambda e: e.id)
    write_checkpoint(keys.checkpoint, Checkpoint.of(newest, keys))


def _after_rollback(session: Session) -> None:
    if session.get_nested_transaction() is None:  # a savepoint's: _after_soft_rollback
        session.info.pop(PENDING, None)


def _after_soft_rollback(session: Session, previous: SessionTransaction) -> None:
    """A savepoint rolled back: the entries written inside it are gone."""
    pending: list[Pending] | None = session.info.get(PENDING)
    if pending:
        session.info[PENDING] = [e for e in pending if not e.written_in(previous)]


def anchor_commits() -> None:
    """Write the checkpoint after every commit that added audit entries (idempotent)."""
    if not event.contains(Session, "after_commit", _after_commit):
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_rollback", _after_rollback)
        event.listen(Session, "after_soft_rollback", _after_soft_rollback)


def setup(settings: Settings, *, required: bool = True) -> AuditKeys | None:
    """Sign this process's audit entries with the settings' keys; anchor in the instance folder.

    Without FIELDCAL_AUDIT_KEYS: ConfigError when `required`, else nothing is
    configured and any write that needs an audit entry is refused.
    """
    if not settings.audit_keys and not required:
        return None
    keys = AuditKeys(settings.require_audit_keys(),
                     checkpoint=settings.instance_path / CHECKPOINT_FILE_NAME)
    configure(settings.database_url, keys)
    anchor_commits()
    return keys


def head(session: Session) -> AuditEntry | None:
    return session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)).first()


def check_anchor(session: Session, checkpoint: Checkpoint | None, keys: AuditKeys,
                 source: str) -> Iterator[ChainBreak]:
    """Does the chain still reach the entry the checkpoint names, unchanged?"""
    if checkpoint is None:
        if head(session) is not None:
            yield ChainBreak(None, f"no audit checkpoint at {source}: removal of the newest "
                                   "entries cannot be ruled out")
        return
    if not checkpoint.authentic(keys):
        yield ChainBreak(checkpoint.entry_id, f"the checkpoint {source} is not signed by a "
                                              "key in FIELDCAL_AUDIT_KEYS (forged or altered)")
        return
    named = session.get(AuditEntry, checkpoint.entry_id)
    if named is None:
        yield ChainBreak(checkpoint.entry_id, f"missing: the checkpoint {source} names it as the "
                                              "newest entry (entries were deleted)")
    elif named.hash != checkpoint.hash:
        yield ChainBreak(checkpoint.entry_id, f"does not match the checkpoint {source} "
                                              "(the chain was rewritten)")


def _old_chain_breaks(entries: list[AuditEntry], keys: AuditKeys) -> list[str]:
    breaks, expected = [], GENESIS
    for entry in entries:
        key = keys.key(entry.key_id)
        if entry.key_id is None:
            good = legacy_digest(entry) == entry.hash
        else:
            good = key is not None and hmac.compare_digest(digest(entry, key), entry.hash)
        if entry.prev_hash != expected or not good:
            breaks.append(f"entry #{entry.id}")
        expected = entry.hash
    return breaks


def reseal(session: Session, actor: Actor, *, only_if_unsigned: bool = True) -> int:
    """Re-sign every entry with the newest key, after checking the chain as it stands.

    Used at upgrade for entries written before the trail was keyed (their old
    SHA-256 chain is checked), and to retire an old key. Refuses a broken chain.
    Returns how many entries were re-signed (0 when there was nothing to do).
    """
    keys = keys_for(session)
    entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
    unsigned = sum(1 for e in entries if e.key_id is None)
    if not entries or (only_if_unsigned and not unsigned):
        return 0
    broken = _old_chain_breaks(entries, keys)
    if broken:
        raise ConfigError(
            f"The audit chain does not hold ({', '.join(broken[:5])}); refusing to re-sign it. "
            "Run `fieldcal audit verify` and investigate before upgrading.")
    previous_head = entries[-1].hash
    prev = GENESIS
    for entry in entries:
        entry.prev_hash = prev
        sign(entry, keys)
        session.flush()
        prev = entry.hash
    record(session, actor, Action.AUDIT_RESEAL, "audit", entries[-1].id,
           after={"entries": len(entries), "unsigned_before": unsigned,
                  "previous_head_hash": previous_head, "key_id": keys.signing_id})
    return len(entries)
