"""`fieldcal service-type add|list|edit` and `fieldcal holiday add|list|remove`."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from server.cli.common import (
    Runtime,
    iso,
    json_option,
    parse_moment,
    pass_runtime,
    print_json,
    zone,
)
from server.cli.views import local_span
from server.models import ServiceType, TimeOff
from server.scheduling import capacity


def _split(values: tuple[str, ...]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def service_line(service: ServiceType) -> str:
    extras = [f"{service.duration_minutes} min"]
    if service.buffer_before_minutes or service.buffer_after_minutes:
        extras.append(f"buffers {service.buffer_before_minutes}/{service.buffer_after_minutes} min")
    if service.travel_minutes:
        extras.append(f"travel {service.travel_minutes} min")
    if service.skills:
        extras.append("skills " + ", ".join(service.skills))
    if service.arrival_windows:
        extras.append("windows " + ", ".join(service.arrival_windows)
                      + (f" (max {service.window_capacity})" if service.window_capacity else ""))
    extras.append(f"notice {service.min_notice_minutes} min, horizon {service.horizon_days} d")
    flags = [f for f, on in (("remote", service.remote), ("inactive", not service.active)) if on]
    return (f"#{service.id:<4} {service.slug:<16} {service.name}  ({'; '.join(extras)})"
            + (f"  [{', '.join(flags)}]" if flags else ""))


def service_options(func: Any) -> Any:
    for option in reversed((
        click.option("--name", default=None, help="What customers see."),
        click.option("--description", default=None),
        click.option("--duration", "duration_minutes", type=int, default=None, metavar="MIN",
                     help="Length of the visit in minutes."),
        click.option("--buffer-before", "buffer_before_minutes", type=int, default=None,
                     metavar="MIN", help="Kept free before each visit."),
        click.option("--buffer-after", "buffer_after_minutes", type=int, default=None,
                     metavar="MIN", help="Kept free after each visit."),
        click.option("--travel", "travel_minutes", type=int, default=None, metavar="MIN",
                     help="Fixed travel after each visit (the floor when sites have coordinates)."),
        click.option("--skill", "skills", multiple=True, metavar="S",
                     help="A skill the technician needs (repeatable or comma-separated)."),
        click.option("--no-skills", is_flag=True, help="(edit) Any technician may do it."),
        click.option("--window", "windows", multiple=True, metavar="HH:MM-HH:MM",
                     help="An arrival window offered to customers (repeatable)."),
        click.option("--no-windows", is_flag=True, help="(edit) Offer exact times, not windows."),
        click.option("--window-capacity", type=int, default=None, metavar="N",
                     help="Visits per arrival window (0 = no limit)."),
        click.option("--notice", "min_notice_minutes", type=int, default=None, metavar="MIN",
                     help="Earliest booking this many minutes from now."),
        click.option("--horizon", "horizon_days", type=int, default=None, metavar="DAYS",
                     help="Latest booking this many days ahead."),
        click.option("--remote/--on-site", default=None,
                     help="Remote: no site visit (no service area, no drive)."),
        json_option,
    )):
        func = option(func)
    return func


def _changes(values: dict[str, Any]) -> dict[str, Any]:
    changes = {k: v for k, v in values.items() if v is not None and k not in (
        "skills", "windows", "no_skills", "no_windows", "active")}
    if values["skills"] or values["no_skills"]:
        changes["skills"] = _split(values["skills"])
    if values["windows"] or values["no_windows"]:
        changes["arrival_windows"] = _split(values["windows"])
    if values.get("active") is not None:
        changes["active"] = values["active"]
    return changes


def _show(service: ServiceType, as_json: bool, verb: str) -> None:
    if as_json:
        print_json(capacity.service_type_json(service))
    else:
        click.echo(f"{verb} {service_line(service)}")


@click.group("service-type")
def service_type() -> None:
    """What customers and dispatchers book: length, buffers, travel, skills, windows."""


@service_type.command("add")
@click.argument("slug")
@service_options
@pass_runtime
def service_type_add(runtime: Runtime, slug: str, as_json: bool, **values: Any) -> None:
    """Add a bookable service type (SLUG is its address: /book/SLUG)."""
    changes = _changes(values)
    if "name" not in changes or "duration_minutes" not in changes:
        raise click.UsageError("A new service type needs --name and --duration.")
    remote = bool(changes.pop("remote", False))
    changes.pop("active", None)
    changes["arrival_windows"] = changes.get("arrival_windows", [])
    with runtime.write() as ctx:
        name, duration = changes.pop("name"), changes.pop("duration_minutes")
        new = capacity.add_service_type(ctx, slug, name, duration_minutes=duration, remote=remote,
                                        **changes)
        _show(new, as_json, "Added")


@service_type.command("edit")
@click.argument("slug")
@service_options
@click.option("--active/--inactive", default=None, help="Inactive: no longer bookable online.")
@pass_runtime
def service_type_edit(runtime: Runtime, slug: str, as_json: bool, **values: Any) -> None:
    """Change a service type; fields not given stay as they are."""
    changes = _changes(values)
    with runtime.write() as ctx:
        found = capacity.find_service_type(ctx.session, slug)
        capacity.edit_service_type(ctx, found, **changes)
        _show(found, as_json, "Changed")


@service_type.command("list")
@click.option("--active-only", is_flag=True)
@json_option
@pass_runtime
def service_type_list(runtime: Runtime, active_only: bool, as_json: bool) -> None:
    """List service types."""
    with runtime.read() as session:
        found = capacity.service_types(session, include_inactive=not active_only)
        rows = [(capacity.service_type_json(s), service_line(s)) for s in found]
    if as_json:
        print_json([data for data, _ in rows])
        return
    for _, line in rows:
        click.echo(line)


@click.group()
def holiday() -> None:
    """Days nobody is booked (in the business's time zone, FIELDCAL_TIMEZONE)."""


def _holiday_row(row: TimeOff, zone_name: str) -> tuple[dict[str, Any], str]:
    data = {"id": row.id, "starts_at": iso(row.starts_at), "ends_at": iso(row.ends_at),
            "reason": row.reason, "timezone": zone_name}
    return data, f"#{row.id:<4} {local_span(row.starts_at, row.ends_at, zone_name)}  {row.reason}"


@holiday.command("add")
@click.argument("first", metavar="DATE")
@click.option("--to", "last", default=None, metavar="DATE",
              help="Last day (default: the same day); ISO times work too.")
@click.option("--reason", default="", help="e.g. Christmas Day.")
@json_option
@pass_runtime
def holiday_add(runtime: Runtime, first: str, last: str | None, reason: str,
                as_json: bool) -> None:
    """Add a holiday: whole days from DATE to --to, in the business's zone."""
    business = runtime.settings.timezone
    local = zone(business)
    with runtime.write() as ctx:
        row = capacity.add_holiday(ctx, parse_moment(first, local),
                                   parse_moment(last or first, local, end=True), reason)
        data, line = _holiday_row(row, business)
    if as_json:
        print_json(data)
    else:
        click.echo(f"Added holiday {line}")


@holiday.command("list")
@click.option("--all", "show_all", is_flag=True, help="Past holidays too.")
@json_option
@pass_runtime
def holiday_list(runtime: Runtime, show_all: bool, as_json: bool) -> None:
    """List holidays."""
    business = runtime.settings.timezone
    with runtime.read() as session:
        since = None if show_all else dt.datetime.now(dt.UTC)
        rows = [_holiday_row(r, business)
                for r in capacity.time_off_of(session, None, since=since)]
    if as_json:
        print_json([data for data, _ in rows])
        return
    for _, line in rows:
        click.echo(line)


@holiday.command("remove")
@click.argument("holiday_id", metavar="ID", type=int)
@json_option
@pass_runtime
def holiday_remove(runtime: Runtime, holiday_id: int, as_json: bool) -> None:
    """Remove a holiday."""
    with runtime.write() as ctx:
        row = capacity.remove_time_off(ctx, holiday_id, None)
        data, line = _holiday_row(row, runtime.settings.timezone)
    if as_json:
        print_json(data)
    else:
        click.echo(f"Removed holiday {line}")
