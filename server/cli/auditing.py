"""`fieldcal audit show|export|verify`: the hash-chained record of every change."""

from __future__ import annotations

import json
from typing import TextIO

import click
from sqlalchemy import func, select

from server import audit as trail_store
from server import scheduling
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
@json_option
@pass_runtime
def audit_verify(runtime: Runtime, as_json: bool) -> None:
    """Check the hash chain; exit status 1 if any entry was altered or removed."""
    with runtime.read() as session:
        breaks = list(trail_store.verify(session))
        total = session.scalar(select(func.count()).select_from(AuditEntry)) or 0
    if as_json:
        print_json({"ok": not breaks, "entries": total,
                    "breaks": [{"entry_id": b.entry_id, "reason": b.reason} for b in breaks]})
    elif not breaks:
        click.echo(f"The audit chain holds ({total} entries).")
    else:
        for chain_break in breaks:
            click.echo(f"entry #{chain_break.entry_id}: {chain_break.reason}", err=True)
        click.echo(f"The audit chain is broken in {len(breaks)} place(s).", err=True)
    if breaks:
        raise click.exceptions.Exit(1)
