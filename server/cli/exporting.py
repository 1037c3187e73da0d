"""`fieldcal export visits|jobs|customers|audit`: streamed CSV, NDJSON or iCalendar."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import click

from server import exports
from server.cli.common import Runtime, parse_moment, pass_runtime, zone
from server.exports import ExportRequest, Format, Kind


@click.command("export")
@click.argument("kind", type=click.Choice([k.value for k in Kind]))
@click.option("--format", "fmt", type=click.Choice([f.value for f in Format]), default=Format.CSV.value,
              show_default=True, help="csv (RFC 4180), ndjson (one JSON object a line) or ics (visits).")
@click.option("--from", "start", help="From this date or time (a date: its midnight, business zone).")
@click.option("--to", "end", help="Up to this date (inclusive) or time (exclusive).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to FILE (replaced only once the export is complete); default: stdout.")
@click.option("--bom", is_flag=True, help="Start a CSV with a UTF-8 byte order mark (for Excel).")
@pass_runtime
def export_command(runtime: Runtime, kind: str, fmt: str, start: str | None, end: str | None,
                   output: Path | None, bom: bool) -> None:
    """Export visits, jobs, customers or the audit trail (times in UTC; audited)."""
    where = zone(runtime.settings.timezone)
    request = ExportRequest(
        Kind(kind), Format(fmt),
        start=parse_moment(start, where) if start else None,
        end=parse_moment(end, where, end=True) if end else None,
        bom=bom)
    with runtime.write() as ctx:
        exports.audit_export(ctx, request)
    with runtime.read() as session:
        pieces = exports.stream(session, request, organizer=runtime.settings.organizer)
        if output is None:
            out = sys.stdout.buffer
            for piece in pieces:
                out.write(piece)
            out.flush()
            return
        partial = output.with_name(f".{output.name}.part")
        try:
            with partial.open("wb") as handle:
                for piece in pieces:
                    handle.write(piece)
            os.replace(partial, output)
        finally:
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
