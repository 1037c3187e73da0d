"""The `fieldcal` command (composition): instance setup, serving, and the dispatcher's desk."""

from __future__ import annotations

import click

from server.cli.auditing import audit
from server.cli.common import FieldcalGroup, Runtime
from server.cli.instance import init, serve_command, worker_command
from server.cli.links import link
from server.cli.people import dispatcher, password, team, technician
from server.cli.work import appointment, customer, job


@click.group(cls=FieldcalGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fieldcal")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """fieldcal: jobs, technicians' calendars (CalDAV), feeds and booking for field service.

    Settings come from FIELDCAL_* environment variables and <instance>/fieldcal.env.
    """
    ctx.ensure_object(Runtime)


for command in (init, serve_command, worker_command, technician, dispatcher, team, password,
                customer, job, appointment, link, audit):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="fieldcal")
