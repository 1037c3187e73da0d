"""`fieldcal audit verify` finds every alteration: each column, deletions, a recomputed chain.

One instance per backend, written through the CLI; each test tampers with the rows
directly in the database (as someone with database access but not the key would),
runs `audit verify`, and puts the rows back.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from click.testing import CliRunner, Result
from live import AUDIT_KEY, create_postgres_database, drop_postgres_database, postgres_problem
from sqlalchemy import delete, insert, select, update

from server import audit
from server.actions import Action
from server.actors import SYSTEM
from server.audit_anchor import (
    CHECKPOINT_FILE_NAME,
    RECORD_BYTES,
    Checkpoint,
    read_checkpoint,
    write_checkpoint,
)
from server.cli import cli
from server.db import Database, get_database
from server.errors import ConfigError
from server.migrate import upgrade
from server.models import AuditEntry

COLUMNS = [c.name for c in AuditEntry.__table__.columns]


def run(env: dict[str, Any], *args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == code, (
        f"fieldcal {' '.join(args)} -> {result.exit_code}\nstdout: {result.stdout}\n"
        f"stderr: {result.stderr}")
    return result


def database_url(env: dict[str, Any]) -> str:
    return env["FIELDCAL_DATABASE_URL"] or (
        f"sqlite:///{Path(env['FIELDCAL_INSTANCE']).resolve() / 'fieldcal.sqlite3'}")


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql",
                                                               marks=pytest.mark.postgres)])
def instance(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("audit")
    env: dict[str, Any] = {"FIELDCAL_INSTANCE": str(folder / "instance"),
                           "FIELDCAL_SECRET_KEYS": None, "FIELDCAL_AUDIT_KEYS": AUDIT_KEY,
                           "FIELDCAL_DATABASE_URL": None}
    name = None
    if request.param == "postgresql":
        problem = postgres_problem()
        if problem is not None:
            if os.environ.get("CI") == "true":
                pytest.fail(f"{problem} (CI=true: the PostgreSQL tests must run)", pytrace=False)
            pytest.skip(problem)
        name, url = create_postgres_database()
        env["FIELDCAL_DATABASE_URL"] = url
    run(env, "init")
    run(env, "technician", "add", "bob", "--name", "Bob", "--email", "bob@example.test",
        "--tz", "Europe/Berlin")
    for customer in ("Acme", "Globex", "Initech"):
        run(env, "customer", "add", customer)
    run(env, "job", "add", "1", "Compressor leaks")
    run(env, "appointment", "add", "1", "--technician", "bob", "--start", "2031-03-04T09:00",
        "--duration", "90m")
    try:
        yield env
    finally:
        get_database(database_url(env)).dispose()
        if name is not None:
            drop_postgres_database(name)


@pytest.fixture
def rows(instance: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    """The entries as they are; put back exactly after the test, however it tampered."""
    database = get_database(database_url(instance))
    with database.read() as session:
        saved = [dict(r._mapping) for r in session.execute(
            select(AuditEntry.__table__).order_by(AuditEntry.id))]
    checkpoint = Path(instance["FIELDCAL_INSTANCE"]) / CHECKPOINT_FILE_NAME
    saved_checkpoint = checkpoint.read_bytes()
    assert len(saved) >= 8
    yield saved
    with database.write() as session:
        session.execute(delete(AuditEntry))
        session.execute(insert(AuditEntry), saved)
    checkpoint.write_bytes(saved_checkpoint)
    assert run(instance, "audit", "verify").exit_code == 0


def tamper(instance: dict[str, Any], entry_id: int, **values: Any) -> None:
    with get_database(database_url(instance)).write() as session:
        session.execute(update(AuditEntry).where(AuditEntry.id == entry_id).values(**values))


def broken(instance: dict[str, Any], *args: str) -> tuple[set[int | None], str]:
    """Run `audit verify` expecting exit 1: the named entries and the human-readable report."""
    report = json.loads(run(instance, "audit", "verify", "--json", *args, code=1).stdout)
    assert report["ok"] is False
    text = run(instance, "audit", "verify", *args, code=1).stderr
    return {b["entry_id"] for b in report["breaks"]}, text


def test_untouched_chain_holds(instance: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    report = json.loads(run(instance, "audit", "verify", "--json").stdout)
    assert report == {"ok": True, "entries": len(rows), "checkpoint": rows[-1]["id"],
                      "breaks": []}
    assert {r["key_id"] for r in rows} == {audit.key_id(AUDIT_KEY)}
    assert "holds" in run(instance, "audit", "verify").stdout


MIDDLE = 3
TAMPERING: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "before": lambda row: {"before": {"status": "forged"}},
    "after": lambda row: {"after": {**(row["after"] or {}), "name": "Mallory"}},
    "at": lambda row: {"at": row["at"] + dt.timedelta(minutes=1)},
    "hash": lambda row: {"hash": "f" * 64},
    "prev_hash": lambda row: {"prev_hash": "e" * 64},
    "actor": lambda row: {"actor": "mallory"},
    "action": lambda row: {"action": "customer.delete"},
    "key_id": lambda row: {"key_id": None},
    "entity_id": lambda row: {"entity_id": "999"},
    "channel": lambda row: {"channel": "api"},
    "request_id": lambda row: {"request_id": "forged"},
    "entity": lambda row: {"entity": "job"},
}


def test_every_column_is_covered() -> None:
    assert set(COLUMNS) - set(TAMPERING) == {"id"}


@pytest.mark.parametrize("column", sorted(TAMPERING))
def test_editing_any_column_is_found(instance: dict[str, Any], rows: list[dict[str, Any]],
                                     column: str) -> None:
    row = rows[MIDDLE]
    tamper(instance, row["id"], **TAMPERING[column](row))
    named, text = broken(instance)
    assert row["id"] in named
    assert f"entry #{row['id']}" in text


def test_deleting_a_middle_entry_is_found(instance: dict[str, Any],
                                          rows: list[dict[str, Any]]) -> None:
    with get_database(database_url(instance)).write() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.id == rows[MIDDLE]["id"]))
    named, text = broken(instance)
    assert named == {rows[MIDDLE + 1]["id"]}
    assert "previous hash does not match" in text


def test_deleting_the_newest_entry_is_found(instance: dict[str, Any],
                                           rows: list[dict[str, Any]]) -> None:
    newest = rows[-1]["id"]
    with get_database(database_url(instance)).write() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.id == newest))
    named, text = broken(instance)
    assert named == {newest}
    assert f"entry #{newest}: missing" in text and "entries were deleted" in text


def _recompute(instance: dict[str, Any], rows: list[dict[str, Any]], first: int,
               sign: Callable[[AuditEntry], None]) -> None:
    """Rewrite entries from `first` on and recompute every later link, as a forger would."""
    database = get_database(database_url(instance))
    with database.write() as session:
        entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
        prev = entries[first - 1].hash if first else audit.GENESIS
        replaced = [(e.id, e.hash) for e in entries[first:]]
        for entry in entries[first:]:  # move hashes out of the way of the unique constraints
            entry.hash, entry.prev_hash = f"x{entry.id:063d}", f"y{entry.id:063d}"
        session.flush()
        entries[first].actor = "mallory"
        for entry in entries[first:]:
            entry.prev_hash = prev
            sign(entry)
            session.flush()
            prev = entry.hash
        assert all(e.hash != old for e, (_, old) in zip(entries[first:], replaced, strict=True))


def test_a_chain_recomputed_without_the_key_is_found(instance: dict[str, Any],
                                                     rows: list[dict[str, Any]]) -> None:
    def unkeyed(entry: AuditEntry) -> None:  # the old, public algorithm
        entry.hash = audit.legacy_digest(entry)

    _recompute(instance, rows, MIDDLE, unkeyed)
    named, text = broken(instance)
    assert rows[MIDDLE]["id"] in named and f"entry #{rows[MIDDLE]['id']}" in text
    assert "keyed hash" in text


def test_a_chain_recomputed_with_a_guessed_key_is_found(instance: dict[str, Any],
                                                        rows: list[dict[str, Any]]) -> None:
    guessed = b"not-the-audit-key-of-this-instance"

    def forged(entry: AuditEntry) -> None:  # keeps the real key id, signs with another key
        entry.hash = audit.digest(entry, guessed)

    _recompute(instance, rows, MIDDLE, forged)
    named, _ = broken(instance)
    assert rows[MIDDLE]["id"] in named
    assert rows[-1]["id"] in named  # the checkpoint no longer matches the rewritten head


def test_a_whole_chain_marked_unsigned_and_recomputed_is_found(
        instance: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    def unsigned(entry: AuditEntry) -> None:
        entry.key_id = None
        entry.hash = audit.legacy_digest(entry)

    _recompute(instance, rows, 0, unsigned)
    named, text = broken(instance)
    assert {r["id"] for r in rows} <= named
    assert "unsigned entry" in text and "does not match the checkpoint" in text


def test_a_checkpoint_moved_back_or_missing_is_found(instance: dict[str, Any],
                                                     rows: list[dict[str, Any]]) -> None:
    checkpoint = Path(instance["FIELDCAL_INSTANCE"]) / CHECKPOINT_FILE_NAME
    newest = rows[-1]
    with get_database(database_url(instance)).write() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.id == newest["id"]))
    previous = rows[-2]
    data = json.loads(checkpoint.read_text())
    mac = hashlib.sha256(f"{previous['id']}:{previous['hash']}".encode()).hexdigest()
    checkpoint.write_text(json.dumps({**data, "entry_id": previous["id"],
                                      "hash": previous["hash"], "mac": mac}))
    named, text = broken(instance)
    assert named == {previous["id"]} and "not signed by a key" in text
    checkpoint.unlink()
    named, text = broken(instance)
    assert named == {None} and "no audit checkpoint" in text


def test_verify_against_an_exported_checkpoint(instance: dict[str, Any], rows: list[dict[str, Any]],
                                               tmp_path: Path) -> None:
    exported = tmp_path / "kept-elsewhere.json"
    assert f"entry #{rows[-1]['id']}" in run(instance, "audit", "checkpoint",
                                             "--output", str(exported)).stdout
    run(instance, "audit", "verify", "--checkpoint", str(exported))
    # Someone with write access to the instance folder deletes the newest entry and
    # rewinds the local checkpoint to a genuine older copy; the exported one still tells.
    local = Path(instance["FIELDCAL_INSTANCE"]) / CHECKPOINT_FILE_NAME
    with get_database(database_url(instance)).write() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.id == rows[-1]["id"]))
        older = session.get(AuditEntry, rows[-2]["id"])
        assert older is not None
        write_checkpoint(local, Checkpoint.of(older, audit.AuditKeys((AUDIT_KEY,))),
                         only_forward=False)
    run(instance, "audit", "verify")  # the rewound local anchor cannot tell
    named, _ = broken(instance, "--checkpoint", str(exported))
    assert named == {rows[-1]["id"]}
    run(instance, "audit", "verify", "--checkpoint", str(tmp_path / "nope.json"), code=1)


def test_verify_with_another_key_fails(instance: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    other = {**instance, "FIELDCAL_AUDIT_KEYS": "another-audit-key-entirely-0123"}
    named, text = broken(other)
    assert {r["id"] for r in rows} <= named and "not in FIELDCAL_AUDIT_KEYS" in text
    assert "FIELDCAL_AUDIT_KEYS is not set" in run(
        {**instance, "FIELDCAL_AUDIT_KEYS": ""}, "audit", "verify", code=1).stderr


def test_key_rotation_keeps_old_entries_verifiable_and_reseal_retires_the_old_key(
        instance: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    new_key = "the-next-audit-key-after-rotation"
    rotated = {**instance, "FIELDCAL_AUDIT_KEYS": f"{new_key},{AUDIT_KEY}"}
    run(rotated, "customer", "add", "Umbrella")
    run(rotated, "audit", "verify")
    run(instance, "audit", "verify", code=1)  # the new entry is signed with the new key
    assert "Re-signed" in run(rotated, "audit", "reseal").stdout
    run({**instance, "FIELDCAL_AUDIT_KEYS": new_key}, "audit", "verify")
    with get_database(database_url(instance)).read() as session:
        assert {e.key_id for e in session.scalars(select(AuditEntry))} == {audit.key_id(new_key)}
        latest = session.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())).first()
        assert latest is not None
        assert latest.action == "audit.reseal"


def test_writes_without_audit_keys_are_refused(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'keyless.sqlite3'}")
    upgrade(database)
    with pytest.raises(ConfigError, match="FIELDCAL_AUDIT_KEYS is not set"), database.write() as s:
        audit.record(s, SYSTEM, cast(Action, "test"), "test", 1)
    with pytest.raises(ConfigError, match="at least 16"):
        audit.AuditKeys(("short",))
    database.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def old_instance(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """An instance whose schema stops at revision 0004, before the trail was keyed."""
    env: dict[str, Any] = {"FIELDCAL_INSTANCE": str(tmp_path / "instance"),
                           "FIELDCAL_AUDIT_KEYS": AUDIT_KEY, "FIELDCAL_DATABASE_URL": None}
    name = None
    if request.param == "postgresql":
        if postgres_problem() is not None:
            pytest.fail("PostgreSQL is required") if os.environ.get("CI") == "true" else \
                pytest.skip("no PostgreSQL")
        name, env["FIELDCAL_DATABASE_URL"] = create_postgres_database()
    Path(env["FIELDCAL_INSTANCE"]).mkdir()
    database = get_database(database_url(env))
    upgrade(database, "0004")
    try:
        yield env
    finally:
        database.dispose()
        if name is not None:
            drop_postgres_database(name)


def _write_legacy_entries(env: dict[str, Any], count: int, *, break_at: int | None = None) -> str:
    """Entries as revision 0004 wrote them (unkeyed SHA-256 chain); returns the head's hash."""
    prev = audit.GENESIS
    with get_database(database_url(env)).write() as session:
        for number in range(count):
            entry = AuditEntry(at=dt.datetime(2030, 1, 1, 9, number, tzinfo=dt.UTC), actor="ann",
                               channel="cli", action="customer.add", entity="customer",
                               entity_id=str(number), before=None,
                               after={"name": f"Customer {number}"}, request_id="",
                               prev_hash=prev)
            entry.hash = audit.legacy_digest(entry)
            values = {c: getattr(entry, c) for c in COLUMNS if c not in ("id", "key_id")}
            if number == break_at:
                values["actor"] = "mallory"
            session.execute(insert(AuditEntry).values(**values))  # no key_id: revision 0004
            prev = entry.hash
    return prev


def test_upgrade_re_signs_entries_written_before_the_trail_was_keyed(
        old_instance: dict[str, Any]) -> None:
    old_head = _write_legacy_entries(old_instance, 5)
    keyless = {**old_instance, "FIELDCAL_AUDIT_KEYS": ""}
    assert "FIELDCAL_AUDIT_KEYS is not set" in run(keyless, "init", code=1).stderr
    assert "Re-signed 5 audit entries" in run(old_instance, "init").stdout
    assert "holds (6 entries, anchored at entry #6)" in run(old_instance, "audit", "verify").stdout
    with get_database(database_url(old_instance)).read() as session:
        entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))
    assert [e.actor for e in entries[:5]] == ["ann"] * 5  # content kept, only the hashes change
    assert entries[-1].action == "audit.reseal"
    assert entries[-1].after == {"entries": 5, "unsigned_before": 5, "previous_head_hash": old_head,
                                 "key_id": audit.key_id(AUDIT_KEY)}
    assert "Re-signed" not in run(old_instance, "init").stdout  # only once


def test_upgrade_refuses_to_re_sign_a_broken_legacy_chain(old_instance: dict[str, Any]) -> None:
    _write_legacy_entries(old_instance, 4, break_at=2)
    result = run(old_instance, "init", code=1)
    assert "refusing to re-sign" in result.stderr and "entry #3" in result.stderr
    assert "Traceback" not in result.output


def test_demo_writes_an_audit_key_and_serve_refuses_without_one(tmp_path: Path) -> None:
    folder = tmp_path / "instance"
    env: dict[str, Any] = {"FIELDCAL_INSTANCE": str(folder), "FIELDCAL_SECRET_KEYS": "s" * 40,
                           "FIELDCAL_AUDIT_KEYS": None, "FIELDCAL_DATABASE_URL": None,
                           "FIELDCAL_TIMEZONE": "UTC"}
    keyless = run(env, "serve", "--port", "1", code=1)
    assert "FIELDCAL_AUDIT_KEYS is not set" in keyless.stderr and "Traceback" not in keyless.output
    assert "Generated an audit key" in run(env, "init", "--demo").stdout
    env_file = (folder / "fieldcal.env").read_text()
    (key,) = [line.split("=", 1)[1] for line in env_file.splitlines()
              if line.startswith("FIELDCAL_AUDIT_KEYS=")]
    assert len(key) >= 32
    assert "holds" in run(env, "audit", "verify").stdout
    assert json.loads((folder / CHECKPOINT_FILE_NAME).read_text())["key_id"] == audit.key_id(key)


def test_the_checkpoint_is_written_in_place_forward_only(tmp_path: Path) -> None:
    """One padded record at the file's start, rewritten in place (same file, no rename):
    an older checkpoint never replaces a newer one; a longer file written over is cut to
    the record; what is written reads back as the same checkpoint, and as plain JSON."""
    keys = audit.AuditKeys((AUDIT_KEY,))
    path = tmp_path / CHECKPOINT_FILE_NAME
    path.write_text(json.dumps({"version": 1}) + " " * 2000 + "\n")  # an earlier, longer file
    first = Checkpoint(7, "a" * 64, keys.signing_id, "b" * 64)
    assert write_checkpoint(path, first)
    inode = path.stat().st_ino
    assert path.stat().st_size == RECORD_BYTES and read_checkpoint(path) == first
    newer = Checkpoint(9, "c" * 64, keys.signing_id, "d" * 64)
    assert write_checkpoint(path, newer)
    assert not write_checkpoint(path, first)  # never back
    assert path.stat().st_ino == inode and read_checkpoint(path) == newer
    assert json.loads(path.read_text())["entry_id"] == 9
    assert write_checkpoint(path, first, only_forward=False)  # an export may name any entry
    assert read_checkpoint(path) == first and path.stat().st_size == RECORD_BYTES
