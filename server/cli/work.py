"""`fieldcal customer|job|appointment ...`: the dispatcher's desk."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import click
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from server import directory, scheduling
from server.cli.common import (
    Runtime,
    json_option,
    parse_duration,
    parse_point,
    parse_time,
    pass_runtime,
    print_json,
    zone,
)
from server.cli.views import (
    appointment_json,
    appointment_line,
    customer_json,
    customer_line,
    job_json,
    job_line,
)
from server.errors import NotFound
from server.models import Appointment, AppointmentStatus, Customer, Job, User
from server.scheduling import capacity
from server.scheduling.rules import Override

F = TypeVar("F", bound=Callable[..., Any])
PRIORITIES = ("low", "normal", "high", "urgent")
SOURCES = ("web", "phone", "email", "api", "platform")


@click.group()
def customer() -> None:
    """Customers, their sites and compressors."""


@customer.command("add")
@click.argument("name")
@click.option("--email", default="")
@click.option("--phone", default="")
@click.option("--tz", "timezone", default=None, help="IANA zone (default: FIELDCAL_TIMEZONE).")
@click.option("--address", default="", help="Service address (creates the customer's site).")
@click.option("--make", default="", help="Compressor make at the site.")
@click.option("--model", default="", help="Compressor model.")
@click.option("--serial", default="", help="Compressor serial number.")
@click.option("--postcode", default="", help="The site's postcode (default: read from --address).")
@click.option("--country", default="", help="The site's country, e.g. DE (default: from the address).")
@click.option("--coords", default=None, metavar="LAT,LON",
              help="The site's coordinates (for travel times; never looked up).")
@json_option
@pass_runtime
def customer_add(runtime: Runtime, name: str, email: str, phone: str, timezone: str | None,
                 address: str, make: str, model: str, serial: str, postcode: str, country: str,
                 coords: str | None, as_json: bool) -> None:
    """Add a customer (with a site if --address is given)."""
    if (make or model or serial or postcode or country or coords) and not address:
        raise click.UsageError("--make/--model/--serial/--postcode/--country/--coords describe "
                               "a site: give --address too.")
    point = parse_point(coords) if coords else (None, None)
    with runtime.write() as ctx:
        new = directory.add_customer(
            ctx, name, email=email, phone=phone, timezone=timezone or runtime.settings.timezone,
            address=address, compressor_make=make, compressor_model=model,
            compressor_serial=serial, postcode=postcode, country=country, latitude=point[0],
            longitude=point[1],
        )
        ctx.session.flush()
        ctx.session.refresh(new, ["sites"])
        data, line = customer_json(new), customer_line(new)
    if as_json:
        print_json(data)
    else:
        click.echo(f"Added customer {line}")


@customer.command("list")
@json_option
@pass_runtime
def customer_list(runtime: Runtime, as_json: bool) -> None:
    """List customers with their sites."""
    with runtime.read() as session:
        customers = session.scalars(
            select(Customer).options(selectinload(Customer.sites)).order_by(Customer.id)
        ).all()
        rows = [(customer_json(c), customer_line(c)) for c in customers]
    _print_rows(rows, as_json)


@click.group()
def job() -> None:
    """Jobs: service requests."""


@job.command("add")
@click.argument("customer_id", type=int)
@click.argument("title")
@click.option("--problem", default="", help="What the customer reported.")
@click.option("--priority", type=click.Choice(PRIORITIES), default="normal", show_default=True)
@click.option("--source", type=click.Choice(SOURCES), default="phone", show_default=True)
@json_option
@pass_runtime
def job_add(runtime: Runtime, customer_id: int, title: str, problem: str, priority: str,
            source: str, as_json: bool) -> None:
    """Add a job for a customer (at the customer's first site)."""
    with runtime.write() as ctx:
        owner = directory.find_customer(ctx.session, customer_id)
        new = directory.add_job(ctx, owner, title, problem=problem, priority=priority,
                                source=source)
        data, line = job_json(new), job_line(new)
    if as_json:
        print_json(data)
    else:
        click.echo(f"Added job {line}")


@job.command("list")
@click.option("--customer", "customer_id", type=int, default=None, metavar="ID")
@json_option
@pass_runtime
def job_list(runtime: Runtime, customer_id: int | None, as_json: bool) -> None:
    """List jobs."""
    with runtime.read() as session:
        query = select(Job).options(selectinload(Job.customer)).order_by(Job.id)
        if customer_id is not None:
            query = query.where(Job.customer_id == customer_id)
        rows = [(job_json(j), job_line(j)) for j in session.scalars(query)]
    _print_rows(rows, as_json)


@click.group()
def appointment() -> None:
    """Appointments: visits of a job by a technician."""


def _naive_zone(runtime: Runtime, tz: str | None, technician: User | None) -> ZoneInfo:
    if tz:
        return zone(tz)
    return zone(technician.timezone if technician else runtime.settings.timezone)


def _end(start: dt.datetime, end: str | None, duration: str | None, naive_zone: ZoneInfo,
         keep: dt.timedelta | None = None) -> dt.datetime:
    if end and duration:
        raise click.UsageError("Give --end or --duration, not both.")
    if end:
        return parse_time(end, naive_zone)
    if duration:
        return start + parse_duration(duration)
    if keep is not None:
        return start + keep
    raise click.UsageError("Give --end or --duration.")


def _show(appointment_row: Appointment, as_json: bool, verb: str) -> None:
    if as_json:
        print_json(appointment_json(appointment_row))
    else:
        click.echo(f"{verb} {appointment_line(appointment_row)}")


def force_options(func: F) -> F:
    func = click.option("--reason", default=None, metavar="TEXT",
                        help="Why the rules are overridden (required with --force).")(func)
    return click.option("--force", is_flag=True,
                        help="Book outside the technician's area, hours or over personal time "
                             "(audited with --reason).")(func)


def _override(force: bool, reason: str | None) -> Override | None:
    if reason and not force:
        raise click.UsageError("--reason goes with --force.")
    if not force:
        return None
    if not (reason or "").strip():
        raise click.UsageError("--force needs --reason TEXT (who asked for it, and why).")
    return Override(reason or "")


@appointment.command("add")
@click.argument("job_id", type=int)
@click.option("--technician", "login", default=None, metavar="LOGIN")
@click.option("--unassigned", is_flag=True, help="Book without a technician (for now).")
@click.option("--start", required=True, help="ISO 8601, e.g. 2025-03-04T09:30.")
@click.option("--end", default=None, help="ISO 8601 end (or --duration).")
@click.option("--duration", default=None, help="e.g. 90m, 1h30m, PT2H.")
@click.option("--tz", default=None, metavar="ZONE",
              help="Zone of times without an offset (default: the technician's).")
@click.option("--window", default=None, metavar="DURATION",
              help="Customer arrival window from the start, e.g. 2h.")
@click.option("--tentative", is_flag=True, help="Book as tentative.")
@click.option("--service", "service_slug", default=None, metavar="SLUG",
              help="Service type (its buffers and travel apply).")
@force_options
@json_option
@pass_runtime
def appointment_add(runtime: Runtime, job_id: int, login: str | None, unassigned: bool, start: str,
                    end: str | None, duration: str | None, tz: str | None, window: str | None,
                    tentative: bool, service_slug: str | None, force: bool, reason: str | None,
                    as_json: bool) -> None:
    """Book a visit of a job.

    The technician must serve the job's site and be free (working hours, time off,
    personal events, travel from the previous visit). --force --reason TEXT books
    outside the area, the hours or over personal time anyway; the override is audited.
    """
    if bool(login) == unassigned:
        raise click.UsageError("Give --technician LOGIN or --unassigned.")
    override = _override(force, reason)
    with runtime.write() as ctx:
        found = ctx.session.get(Job, job_id)
        if found is None:
            raise NotFound(f"No job #{job_id}.")
        tech = directory.find_user(ctx.session, login) if login else None
        naive = _naive_zone(runtime, tz, tech)
        starts_at = parse_time(start, naive)
        ends_at = _end(starts_at, end, duration, naive)
        arrival = (starts_at, starts_at + parse_duration(window)) if window else None
        status = AppointmentStatus.TENTATIVE if tentative else AppointmentStatus.CONFIRMED
        service = capacity.find_service_type(ctx.session, service_slug) if service_slug else None
        if service is not None and not (end or duration):
            ends_at = starts_at + dt.timedelta(minutes=service.duration_minutes)
        booked = scheduling.book(ctx, found, tech, starts_at, ends_at, status=status,
                                 window=arrival, service_type=service, force=override)
        _show(booked, as_json, "Booked")


@appointment.command("move")
@click.argument("appointment_id", metavar="ID", type=int)
@click.option("--start", required=True, help="New start, ISO 8601.")
@click.option("--end", default=None, help="New end (default: keep the duration).")
@click.option("--duration", default=None)
@click.option("--tz", default=None, metavar="ZONE",
              help="Zone of times without an offset (default: the technician's).")
@force_options
@json_option
@pass_runtime
def appointment_move(runtime: Runtime, appointment_id: int, start: str, end: str | None,
                     duration: str | None, tz: str | None, force: bool, reason: str | None,
                     as_json: bool) -> None:
    """Move a visit to another time (refused if the technician's slot is taken)."""
    override = _override(force, reason)
    with runtime.write() as ctx:
        current = scheduling.get_appointment(ctx.session, appointment_id)
        naive = _naive_zone(runtime, tz, current.technician)
        starts_at = parse_time(start, naive)
        ends_at = _end(starts_at, end, duration, naive, keep=current.ends_at - current.starts_at)
        moved = scheduling.reschedule(ctx, current, starts_at, ends_at, force=override)
        _show(moved, as_json, "Moved")


@appointment.command("reassign")
@click.argument("appointment_id", metavar="ID", type=int)
@click.argument("login", required=False)
@click.option("--unassign", is_flag=True, help="Take the visit off its technician.")
@force_options
@json_option
@pass_runtime
def appointment_reassign(runtime: Runtime, appointment_id: int, login: str | None, unassign: bool,
                         force: bool, reason: str | None, as_json: bool) -> None:
    """Give a visit to another technician (LOGIN) or to nobody (--unassign)."""
    if bool(login) == unassign:
        raise click.UsageError("Give a technician LOGIN or --unassign.")
    override = _override(force, reason)
    with runtime.write() as ctx:
        current = scheduling.get_appointment(ctx.session, appointment_id)
        tech = directory.find_user(ctx.session, login) if login else None
        changed = scheduling.reassign(ctx, current, tech, force=override)
        _show(changed, as_json, "Reassigned")


@appointment.command("cancel")
@click.argument("appointment_id", metavar="ID", type=int)
@click.option("--reason", default="")
@json_option
@pass_runtime
def appointment_cancel(runtime: Runtime, appointment_id: int, reason: str, as_json: bool) -> None:
    """Cancel a visit (it stays in calendars as cancelled)."""
    with runtime.write() as ctx:
        current = scheduling.get_appointment(ctx.session, appointment_id)
        cancelled = scheduling.cancel(ctx, current, reason)
        _show(cancelled, as_json, "Cancelled")


@appointment.command("show")
@click.argument("appointment_id", metavar="ID", type=int)
@json_option
@pass_runtime
def appointment_show(runtime: Runtime, appointment_id: int, as_json: bool) -> None:
    """Show one visit."""
    with runtime.read() as session:
        _show(scheduling.get_appointment(session, appointment_id), as_json, "")


@appointment.command("list")
@click.option("--technician", "login", default=None, metavar="LOGIN")
@click.option("--customer", "customer_id", type=int, default=None, metavar="ID")
@click.option("--status", type=click.Choice([s.value for s in AppointmentStatus]), default=None)
@json_option
@pass_runtime
def appointment_list(runtime: Runtime, login: str | None, customer_id: int | None,
                     status: str | None, as_json: bool) -> None:
    """List visits, earliest first."""
    with runtime.read() as session:
        rows = [(appointment_json(a), appointment_line(a))
                for a in _appointments(session, login, customer_id, status)]
    _print_rows(rows, as_json)


def _appointments(session: Session, login: str | None, customer_id: int | None,
                  status: str | None) -> list[Appointment]:
    query = (
        select(Appointment)
        .join(Job, Job.id == Appointment.job_id)
        .options(selectinload(Appointment.job).selectinload(Job.customer),
                 selectinload(Appointment.technician))
        .order_by(Appointment.starts_at, Appointment.id)
    )
    if login is not None:
        query = query.where(Appointment.technician_id == directory.find_user(session, login).id)
    if customer_id is not None:
        directory.find_customer(session, customer_id)
        query = query.where(Job.customer_id == customer_id)
    if status is not None:
        query = query.where(Appointment.status == status)
    return list(session.scalars(query))


def _print_rows(rows: list[tuple[dict[str, object], str]], as_json: bool) -> None:
    if as_json:
        print_json([data for data, _ in rows])
        return
    for _, line in rows:
        click.echo(line)
    if not rows:
        click.echo("(none)", err=True)

