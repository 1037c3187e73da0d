"""`fieldcal technician|dispatcher|team|password ...`: who works here and how they log in."""

from __future__ import annotations

import secrets

import click
from sqlalchemy import select

from server import directory, staff
from server.cli import staffing
from server.cli.common import Runtime, json_option, pass_runtime, print_json
from server.cli.views import (
    credential_json,
    credential_line,
    team_json,
    team_line,
    user_json,
    user_line,
)
from server.models import Credential, Role, Team, User


def split_values(values: tuple[str, ...]) -> list[str]:
    """`--skill a --skill b,c` -> [a, b, c]."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


@click.group()
def technician() -> None:
    """Technicians: the people whose phones show their jobs."""


@technician.command("add")
@click.argument("login")
@click.option("--name", required=True, help="Full name.")
@click.option("--email", required=True)
@click.option("--tz", "timezone", required=True, help="IANA time zone, e.g. Europe/Berlin.")
@click.option("--team", "teams", multiple=True, metavar="SLUG", help="Team to join (repeatable).")
@click.option("--skill", "skills", multiple=True, metavar="S",
              help="A skill (repeatable, or comma-separated).")
@click.option("--active/--inactive", default=True, show_default=True,
              help="Inactive technicians get no new work (and cannot sign in).")
@json_option
@pass_runtime
def technician_add(runtime: Runtime, login: str, name: str, email: str, timezone: str,
                   teams: tuple[str, ...], skills: tuple[str, ...], active: bool,
                   as_json: bool) -> None:
    """Add a technician (with their `jobs` and `personal` calendars)."""
    with runtime.write() as ctx:
        user = directory.add_user(ctx, login, name=name, email=email, role=Role.TECHNICIAN,
                                  timezone=timezone, skills=split_values(skills), active=active)
        for slug in split_values(teams):
            directory.add_member(ctx, directory.find_team(ctx.session, slug), user)
        ctx.session.refresh(user, ["teams"])
        data, line = user_json(user), user_line(user)
    if as_json:
        print_json(data)
    else:
        click.echo(f"Added technician {line}")
        click.echo(f"Issue a device password with: fieldcal password new {login} --label phone")


@technician.command("edit")
@click.argument("login")
@click.option("--name", default=None)
@click.option("--email", default=None)
@click.option("--tz", "timezone", default=None, help="IANA time zone, e.g. Europe/Berlin.")
@click.option("--skill", "skills", multiple=True, metavar="S",
              help="The technician's skills, replacing the old ones (repeatable).")
@click.option("--active/--inactive", default=None,
              help="Inactive technicians get no new work (and cannot sign in).")
@json_option
@pass_runtime
def technician_edit(runtime: Runtime, login: str, name: str | None, email: str | None,
                    timezone: str | None, skills: tuple[str, ...], active: bool | None,
                    as_json: bool) -> None:
    """Change a technician's details."""
    with runtime.write() as ctx:
        user = directory.find_user(ctx.session, login)
        directory.update_user(ctx, user, name=name, email=email, timezone=timezone,
                              skills=split_values(skills) if skills else None, active=active)
        data, line = user_json(user), user_line(user)
    if as_json:
        print_json(data)
    else:
        click.echo(f"Changed technician {line}")


@technician.command("list")
@json_option
@pass_runtime
def technician_list(runtime: Runtime, as_json: bool) -> None:
    """List technicians."""
    _list_users(runtime, Role.TECHNICIAN, as_json)


for _command in (staffing.hours, staffing.technician_area, staffing.timeoff, staffing.day):
    technician.add_command(_command)


@click.group()
def dispatcher() -> None:
    """Dispatchers: they see and change every calendar."""


@dispatcher.command("add")
@click.argument("login")
@click.option("--name", required=True)
@click.option("--email", required=True)
@click.option("--tz", "timezone", default=None, help="IANA time zone (default: FIELDCAL_TIMEZONE).")
@click.option("--readonly", is_flag=True,
              help="Staff who may look at the console's settings but change nothing.")
@json_option
@pass_runtime
def dispatcher_add(runtime: Runtime, login: str, name: str, email: str, timezone: str | None,
                   readonly: bool, as_json: bool) -> None:
    """Add a dispatcher (or, with --readonly, staff who only look)."""
    with runtime.write() as ctx:
        user = directory.add_user(ctx, login, name=name, email=email,
                                  role=Role.READONLY if readonly else Role.DISPATCHER,
                                  timezone=timezone or runtime.settings.timezone)
        data, line = user_json(user), user_line(user)
    if as_json:
        print_json(data)
    else:
        click.echo(f"Added dispatcher {line}")


@dispatcher.command("password")
@click.argument("login")
@click.option("--generate", is_flag=True,
              help="Make up a strong password and print it (once) instead of asking for one.")
@pass_runtime
def dispatcher_password(runtime: Runtime, login: str, generate: bool) -> None:
    """Set LOGIN's console password (signs out every console session of LOGIN)."""
    if generate:
        secret = secrets.token_urlsafe(15)
    else:
        secret = click.prompt("New console password", hide_input=True,
                              confirmation_prompt=True)
    with runtime.write() as ctx:
        staff.set_password(ctx, login, secret)
    click.echo(f"Console password set for {login}; sign in at {runtime.settings.base_url}/console")
    if generate:
        click.echo(f"Password (shown only now): {secret}")


@dispatcher.command("list")
@json_option
@pass_runtime
def dispatcher_list(runtime: Runtime, as_json: bool) -> None:
    """List dispatchers."""
    _list_users(runtime, Role.DISPATCHER, as_json)


def _list_users(runtime: Runtime, role: Role, as_json: bool) -> None:
    with runtime.read() as session:
        users = session.scalars(select(User).where(User.role == role).order_by(User.login)).all()
        rows = [(user_json(u), user_line(u)) for u in users]
    if as_json:
        print_json([data for data, _ in rows])
    else:
        for _, line in rows:
            click.echo(line)


@click.group()
def team() -> None:
    """Teams: groups of technicians with a shared read-only schedule calendar."""


@team.command("add")
@click.argument("slug")
@click.option("--name", required=True)
@json_option
@pass_runtime
def team_add(runtime: Runtime, slug: str, name: str, as_json: bool) -> None:
    """Add a team (and its `team-SLUG/schedule` calendar)."""
    with runtime.write() as ctx:
        new = directory.add_team(ctx, slug, name)
        data, line = team_json(new), team_line(new)
    if as_json:
        print_json(data)
    else:
        click.echo(f"Added team {line}")


@team.command("list")
@json_option
@pass_runtime
def team_list(runtime: Runtime, as_json: bool) -> None:
    """List teams and their members."""
    with runtime.read() as session:
        rows = [(team_json(t), team_line(t))
                for t in session.scalars(select(Team).order_by(Team.slug))]
    if as_json:
        print_json([data for data, _ in rows])
    else:
        for _, line in rows:
            click.echo(line)


team.add_command(staffing.team_area)
team.add_command(staffing.team_travel)


@team.group("member")
def member() -> None:
    """Team membership."""


@member.command("add")
@click.argument("slug")
@click.argument("login")
@json_option
@pass_runtime
def member_add(runtime: Runtime, slug: str, login: str, as_json: bool) -> None:
    """Add a technician to a team."""
    with runtime.write() as ctx:
        found = directory.find_team(ctx.session, slug)
        directory.add_member(ctx, found, directory.find_user(ctx.session, login))
        ctx.session.refresh(found, ["members"])
        data, line = team_json(found), team_line(found)
    if as_json:
        print_json(data)
    else:
        click.echo(f"Team {line}")


@click.group()
def password() -> None:
    """Per-device app passwords for CalDAV clients."""


@password.command("new")
@click.argument("login")
@click.option("--label", default="device", show_default=True, metavar="DEVICE",
              help="Which device this password is for, e.g. iphone.")
@json_option
@pass_runtime
def password_new(runtime: Runtime, login: str, label: str, as_json: bool) -> None:
    """Issue a new app password (printed once; only its hash is kept)."""
    with runtime.write() as ctx:
        user = directory.find_user(ctx.session, login)
        credential, secret = directory.issue_password(ctx, user, label)
        data = {**credential_json(credential), "password": secret}
    if as_json:
        print_json(data)
        return
    click.echo(secret)
    click.echo(f"App password #{data['id']} for {login} ({label}). CalDAV: {runtime.dav_url} "
               f"user {login}. It is shown only now.", err=True)


@password.command("list")
@click.argument("login")
@json_option
@pass_runtime
def password_list(runtime: Runtime, login: str, as_json: bool) -> None:
    """List a user's app passwords (never the passwords themselves)."""
    with runtime.read() as session:
        user = directory.find_user(session, login)
        credentials = session.scalars(
            select(Credential).where(Credential.user_id == user.id).order_by(Credential.id)
        ).all()
        rows = [(credential_json(c), credential_line(c)) for c in credentials]
    if as_json:
        print_json([data for data, _ in rows])
    else:
        for _, line in rows:
            click.echo(line)


@password.command("revoke")
@click.argument("credential_id", metavar="ID", type=int)
@json_option
@pass_runtime
def password_revoke(runtime: Runtime, credential_id: int, as_json: bool) -> None:
    """Revoke an app password: the device is logged out on its next request."""
    with runtime.write() as ctx:
        credential = directory.revoke_password(ctx, credential_id)
        data, line = credential_json(credential), credential_line(credential)
    if as_json:
        print_json(data)
    else:
        click.echo(f"Revoked {line}")
