"""The `fieldcal` command (composition): instance setup, serving, and the dispatcher's desk.

Subcommands are imported on first use, so `fieldcal export ...` loads the export code and
not the web app, the CalDAV server or the platforms (its memory stays that of an export).
"""

from __future__ import annotations

import importlib

import click

from server.cli.common import FieldcalGroup, Runtime

# name -> (module, attribute); `fieldcal --help` lists them by name, as click does.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("server.cli.instance", "init"),
    "config": ("server.cli.instance", "config_command"),
    "serve": ("server.cli.instance", "serve_command"),
    "worker": ("server.cli.instance", "worker_command"),
    "technician": ("server.cli.people", "technician"),
    "dispatcher": ("server.cli.people", "dispatcher"),
    "team": ("server.cli.people", "team"),
    "password": ("server.cli.people", "password"),
    "customer": ("server.cli.work", "customer"),
    "job": ("server.cli.work", "job"),
    "appointment": ("server.cli.work", "appointment"),
    "link": ("server.cli.links", "link"),
    "audit": ("server.cli.auditing", "audit"),
    "service-type": ("server.cli.services", "service_type"),
    "holiday": ("server.cli.services", "holiday"),
    "integration": ("server.cli.integrations", "integration"),
    "webhook": ("server.cli.integrations", "webhook"),
    "apikey": ("server.cli.apikeys", "apikey"),
    "api": ("server.cli.apikeys", "api"),
    "export": ("server.cli.exporting", "export_command"),
}


class LazyGroup(FieldcalGroup):
    """The top-level group: imports a subcommand's module only when that command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        module, attribute = COMMANDS[cmd_name]
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module}.{attribute} is not a click command")
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fieldcal")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """fieldcal: jobs, technicians' calendars (CalDAV), feeds and booking for field service.

    Settings come from FIELDCAL_* environment variables and <instance>/fieldcal.env.
    """
    ctx.ensure_object(Runtime)


def main() -> None:
    cli(prog_name="fieldcal")
