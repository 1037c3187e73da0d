"""`fieldcal audit show|export|verify|checkpoint|reseal`: the keyed, chained record of every change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

import click
from sqlalchemy import func, select

from server import audit as trail_store
from server import audit_anchor, scheduling
from server.audit import AuditKeys
from server.cli.common import Runtime, json_option, pass_runtime, print_json
from server.cli.views import audit_json, audit_line
from server.models import AuditEntry


@click.group()
def audit() -> None:
    """The audit trail."""


@audit.command("show")
@click.argument("appointment_id", type=int)
@json_option
@pass_runtime
def audit_show(runtime: Runtime, appointment_id: int, as_json: bool) -> None:
    """An appointment's audit trail, oldest first."""
    with runtime.read() as session:
        scheduling.get_appointment(session, appointment_id)
        entries = trail_store.trail(session, "appointment", appointment_id)
        rows = [(audit_json(e), audit_line(e)) for e in entries]
    if as_json:
        print_json([data for data, _ in rows])
        return
    for _, line in rows:
        click.echo(line)


@audit.command("export")
@click.option("--output", "-o", type=click.File("w", encoding="utf-8"), default="-",
              help="File to write (default: standard output).")
@click.option("--json", "as_json", is_flag=True, hidden=True, help="Accepted; the export is JSON.")
@pass_runtime
def audit_export(runtime: Runtime, output: TextIO, as_json: bool) -> None:
    """Every entry with its chain hashes, one JSON object per line."""
    with runtime.read() as session:
        for entry in session.scalars(select(AuditEntry).order_by(AuditEntry.id)).yield_per(1000):
            output.write(json.dumps(audit_json(entry, chain=True), ensure_ascii=False,
                                    default=str, sort_keys=True) + "\n")


@audit.command("verify")
@click.option("--checkpoint", "checkpoint_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Check the chain's head against this checkpoint (default: the instance's).")
@json_option
@pass_runtime
def audit_verify(runtime: Runtime, checkpoint_file: Path | None, as_json: bool) -> None:
    """Check the keyed chain and its anchored head; exit status 1 if any entry was altered or removed."""
    settings = runtime.settings
    keys = AuditKeys(settings.require_audit_keys())
    path = checkpoint_file or settings.instance_path / audit_anchor.CHECKPOINT_FILE_NAME
    if checkpoint_file is not None and not checkpoint_file.is_file():
        raise click.ClickException(f"No checkpoint file {checkpoint_file}.")
    checkpoint = audit_anchor.read_checkpoint(path)
    with runtime.read() as session:
        breaks = list(trail_store.verify(session, keys))
        breaks += audit_anchor.check_anchor(session, checkpoint, keys, str(path))
        total = session.scalar(select(func.count()).select_from(AuditEntry)) or 0
    if as_json:
        print_json({"ok": not breaks, "entries": total,
                    "checkpoint": checkpoint.entry_id if checkpoint else None,
                    "breaks": [{"entry_id": b.entry_id, "reason": b.reason} for b in breaks]})
    elif not breaks:
        anchored = f", anchored at entry #{checkpoint.entry_id}" if checkpoint else ""
        click.echo(f"The audit chain holds ({total} entries{anchored}).")
    else:
        for chain_break in breaks:
            click.echo(chain_break.describe(), err=True)
        click.echo(f"The audit chain is broken in {len(breaks)} place(s).", err=True)
    if breaks:
        raise click.exceptions.Exit(1)


@audit.command("checkpoint")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="File to write the signed checkpoint of the chain's current head to.")
@pass_runtime
def audit_checkpoint(runtime: Runtime, output: Path) -> None:
    """Export the chain's head (signed); keep it elsewhere and verify with --checkpoint."""
    keys = AuditKeys(runtime.settings.require_audit_keys())
    with runtime.read() as session:
        breaks = list(trail_store.verify(session, keys))
        newest = audit_anchor.head(session)
    if breaks:
        raise click.ClickException(f"The audit chain does not hold ({breaks[0].describe()}); "
                                   "no checkpoint written.")
    if newest is None:
        raise click.ClickException("The audit trail is empty; nothing to anchor.")
    audit_anchor.write_checkpoint(output, audit_anchor.Checkpoint.of(newest, keys),
                                  only_forward=False)
    click.echo(f"Checkpoint of entry #{newest.id} written to {output}.")


@audit.command("reseal")
@pass_runtime
def audit_reseal(runtime: Runtime) -> None:
    """Re-sign every entry with the newest key (to retire an older one); the chain must hold."""
    runtime.settings.require_audit_keys()
    with runtime.write() as ctx:
        count = audit_anchor.reseal(ctx.session, ctx.actor, only_if_unsigned=False)
    click.echo(f"Re-signed {count} audit entries with the newest FIELDCAL_AUDIT_KEYS key.")
