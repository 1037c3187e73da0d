"""`fieldcal technician hours|area|timeoff|day` and `fieldcal team area|travel`:
when and where technicians work."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import click
from sqlalchemy.orm import Session

from server import directory
from server.cli.common import (
    Runtime,
    iso,
    json_option,
    parse_moment,
    parse_point,
    pass_runtime,
    print_json,
)
from server.cli.views import local_span
from server.context import Context
from server.errors import InvalidInput
from server.models import ServiceArea, Team, TimeOff, User
from server.scheduling import areas, capacity, travel
from server.scheduling.hours import WEEKDAYS


def technician_of(session: Session, login: str) -> User:
    user = directory.find_user(session, login)
    if user.role != "technician":
        raise InvalidInput(f"{login!r} is a {user.role}, not a technician.")
    return user


def weekdays(values: tuple[str, ...]) -> list[int]:
    """`--day mon --day wed,fri --day mon-fri` -> weekday numbers."""
    days: set[int] = set()
    for value in values:
        for part in (p.strip() for p in value.split(",") if p.strip()):
            first, _, last = part.partition("-")
            low, high = capacity.weekday_number(first), capacity.weekday_number(last or first)
            if high < low:
                raise click.BadParameter(f"{part!r}: name the days in week order, e.g. mon-fri")
            days.update(range(low, high + 1))
    return sorted(days)


def spans(start: str | None, end: str | None, more: tuple[str, ...]) -> list[tuple[str, str]]:
    found = []
    if (start is None) != (end is None):
        raise click.UsageError("Give --from and --to together.")
    if start is not None and end is not None:
        found.append((start, end))
    for value in more:
        first, sep, last = value.partition("-")
        if not sep:
            raise click.BadParameter(f"{value!r} is not a span like 08:00-12:00")
        found.append((first.strip(), last.strip()))
    return found


def _hours_rows(session: Session, user: User) -> list[dict[str, Any]]:
    return [{"id": row.id, "login": user.login, "weekday": WEEKDAYS[row.weekday],
             "starts": row.starts, "ends": row.ends, "timezone": user.timezone}
            for row in capacity.working_hours_of(session, user)]


def _print_rows(rows: list[dict[str, Any]], lines: list[str], as_json: bool) -> None:
    if as_json:
        print_json(rows)
        return
    for line in lines:
        click.echo(line)
    if not rows:
        click.echo("(none)", err=True)


@click.command("hours")
@click.argument("login")
@click.option("--day", "days", multiple=True, metavar="DAY",
              help="Weekday(s): mon, tue ... sun; mon-fri; mon,wed (repeatable).")
@click.option("--from", "start", default=None, metavar="HH:MM", help="Start of work that day.")
@click.option("--to", "end", default=None, metavar="HH:MM", help="End of work that day.")
@click.option("--span", "more", multiple=True, metavar="HH:MM-HH:MM",
              help="A working span (repeatable: 08:00-12:00 --span 13:00-17:00).")
@click.option("--clear", is_flag=True, help="Remove the hours of the --day(s), or of every day.")
@json_option
@pass_runtime
def hours(runtime: Runtime, login: str, days: tuple[str, ...], start: str | None,
          end: str | None, more: tuple[str, ...], clear: bool, as_json: bool) -> None:
    """Working hours per weekday, in the technician's own time zone.

    Without options: list them. With --day and --from/--to (or --span): replace those
    days' hours. --clear [--day ...]: remove hours. Self-booking offers only these hours;
    a dispatcher booking outside them must force it.
    """
    given = spans(start, end, more)
    if clear and given:
        raise click.UsageError("--clear takes no --from/--to/--span.")
    if given and not days:
        raise click.UsageError("Name the --day(s) these hours are for, e.g. --day mon-fri.")
    if days and not (given or clear):
        raise click.UsageError("Give --from/--to (or --span), or --clear.")
    if given or clear:
        with runtime.write() as ctx:
            user = technician_of(ctx.session, login)
            capacity.set_day_hours(ctx, user, weekdays(days) if days else range(7), given)
            rows = _hours_rows(ctx.session, user)
    else:
        with runtime.read() as session:
            rows = _hours_rows(session, technician_of(session, login))
    _print_rows(rows, [f"{r['weekday']}  {r['starts']}-{r['ends']}  ({r['timezone']})"
                       for r in rows], as_json)


def _area_lines(rules: list[ServiceArea]) -> list[str]:
    return [f"#{rule.id:<4} {areas.rule_label(rule)}"
            + (f"  (team #{rule.team_id})" if rule.team_id else "") for rule in rules]


def _change_areas(ctx: Context, owner: User | Team, country: str | None,
                  postcodes: tuple[str, ...], centre: str | None, radius_km: float | None,
                  remove: tuple[int, ...]) -> None:
    technician = owner if isinstance(owner, User) else None
    team = owner if isinstance(owner, Team) else None
    for area_id in remove:
        areas.remove_service_area(ctx, area_id, technician=technician, team=team)
    if not (country or postcodes or centre or radius_km is not None):
        return
    if not country:
        raise click.UsageError("Give the --country (e.g. DE, US, GB, FR).")
    if (centre is None) != (radius_km is None):
        raise click.UsageError("A circle needs --centre LAT,LON and --radius-km together.")
    prefixes = [p for value in postcodes for p in value.split(",") if p.strip()]
    if centre is None and not prefixes:
        prefixes = [""]  # the whole country
    for prefix in prefixes:
        areas.add_service_area(ctx, technician=technician, team=team, country=country,
                               postcode_prefix=prefix.strip())
    if centre is not None:
        areas.add_service_area(ctx, technician=technician, team=team, country=country,
                               centre=parse_point(centre), radius_km=radius_km)


def area_options(func: Any) -> Any:
    for option in reversed((
        click.option("--country", default=None, help="ISO country: DE, US, GB, FR ..."),
        click.option("--postcode", "postcodes", multiple=True, metavar="PREFIX",
                     help="A postcode/ZIP prefix served, e.g. 10 or SW1 (repeatable)."),
        click.option("--centre", "--center", "centre", default=None, metavar="LAT,LON",
                     help="Centre of a circle served (sites with coordinates)."),
        click.option("--radius-km", type=float, default=None, help="Radius of that circle."),
        click.option("--remove", multiple=True, type=int, metavar="ID",
                     help="Remove a service area by id (repeatable)."),
        json_option,
    )):
        func = option(func)
    return func


@click.command("area")
@click.argument("login")
@area_options
@pass_runtime
def technician_area(runtime: Runtime, login: str, country: str | None, postcodes: tuple[str, ...],
                    centre: str | None, radius_km: float | None, remove: tuple[int, ...],
                    as_json: bool) -> None:
    """Where a technician works: postcode prefixes per country, or a circle.

    Without options: list the technician's own areas and their teams'. A technician
    with no area at all serves every site.
    """
    with runtime.write() as ctx:
        user = technician_of(ctx.session, login)
        _change_areas(ctx, user, country, postcodes, centre, radius_km, remove)
        rules = areas.rules_by_technician(ctx.session, [user.id]).get(user.id, [])
        rows, lines = [areas.area_json(r) for r in rules], _area_lines(rules)
    if not rows and not as_json:
        click.echo("(no service area: serves every site)")
        return
    _print_rows(rows, lines, as_json)


@click.command("area")
@click.argument("slug")
@area_options
@pass_runtime
def team_area(runtime: Runtime, slug: str, country: str | None, postcodes: tuple[str, ...],
              centre: str | None, radius_km: float | None, remove: tuple[int, ...],
              as_json: bool) -> None:
    """Where a whole team works (its members serve these areas too)."""
    with runtime.write() as ctx:
        team = directory.find_team(ctx.session, slug)
        _change_areas(ctx, team, country, postcodes, centre, radius_km, remove)
        rules = areas.areas_of(ctx.session, team=team)
        rows, lines = [areas.area_json(r) for r in rules], _area_lines(rules)
    _print_rows(rows, lines, as_json)


@click.command("travel")
@click.argument("slug")
@click.option("--road-factor", type=float, default=None,
              help="Road km per straight-line km (default 1.3).")
@click.option("--speed-kmh", type=float, default=None, help="Average speed (default 40).")
@json_option
@pass_runtime
def team_travel(runtime: Runtime, slug: str, road_factor: float | None, speed_kmh: float | None,
                as_json: bool) -> None:
    """The travel model of a team: drive = distance x road factor / speed."""
    with runtime.write() as ctx:
        team = directory.find_team(ctx.session, slug)
        if road_factor is not None or speed_kmh is not None:
            travel.set_team_travel(ctx, team, road_factor=road_factor, speed_kmh=speed_kmh)
        data = {"id": team.id, "slug": team.slug, "road_factor": team.road_factor,
                "speed_kmh": team.speed_kmh}
    if as_json:
        print_json(data)
    else:
        click.echo(f"{slug}: road factor {data['road_factor']:g}, {data['speed_kmh']:g} km/h")


def _time_off_row(row: TimeOff, zone: str) -> tuple[dict[str, Any], str]:
    data = {"id": row.id, "starts_at": iso(row.starts_at), "ends_at": iso(row.ends_at),
            "reason": row.reason, "timezone": zone}
    return data, f"#{row.id:<4} {local_span(row.starts_at, row.ends_at, zone)}  {row.reason}"


@click.command("timeoff")
@click.argument("login")
@click.option("--from", "start", default=None, help="Start: a date or an ISO time.")
@click.option("--to", "end", default=None, help="End: a date (that day included) or an ISO time.")
@click.option("--reason", default="")
@click.option("--remove", multiple=True, type=int, metavar="ID", help="Remove time off by id.")
@click.option("--all", "show_all", is_flag=True, help="List past time off too.")
@json_option
@pass_runtime
def timeoff(runtime: Runtime, login: str, start: str | None, end: str | None, reason: str,
            remove: tuple[int, ...], show_all: bool, as_json: bool) -> None:
    """A technician's leave (in their zone): add with --from/--to, --remove ID; list without."""
    if (start is None) != (end is None):
        raise click.UsageError("Give --from and --to together.")
    with runtime.write() as ctx:
        user = technician_of(ctx.session, login)
        zone = ZoneInfo(user.timezone)
        for time_off_id in remove:
            capacity.remove_time_off(ctx, time_off_id, user)
        if start is not None and end is not None:
            capacity.add_time_off(ctx, user, parse_moment(start, zone),
                                  parse_moment(end, zone, end=True), reason)
        since = None if show_all else dt.datetime.now(dt.UTC)
        rows = [_time_off_row(r, user.timezone)
                for r in capacity.time_off_of(ctx.session, user, since=since)]
    _print_rows([r for r, _ in rows], [line for _, line in rows], as_json)


@click.command("day")
@click.argument("login")
@click.option("--date", "day", default=None, metavar="YYYY-MM-DD",
              help="The day, in the technician's zone (default: today).")
@json_option
@pass_runtime
def day(runtime: Runtime, login: str, day: str | None, as_json: bool) -> None:
    """A technician's visits on one day with the travel between them."""
    with runtime.read() as session:
        user = technician_of(session, login)
        zone = ZoneInfo(user.timezone)
        try:
            date = dt.date.fromisoformat(day) if day else dt.datetime.now(zone).date()
        except ValueError as exc:
            raise click.BadParameter(f"{day!r} is not a date like 2026-12-01") from exc
        plan = travel.day_plan(session, user, date)
        data = travel.day_plan_json(plan)
        lines = []
        for visit in plan.visits:
            leg = visit.travel_before
            if leg is not None:
                distance = f"{leg.distance_km:g} km, " if leg.distance_km is not None else ""
                lines.append(f"      ↓ {distance}{leg.minutes} min travel"
                             f"{'' if leg.computed else ' (fixed)'} in a {leg.gap_minutes} min gap"
                             f"{'' if leg.enough else '  NOT ENOUGH'}")
            a = visit.appointment
            site = a.job.site.address.replace(chr(10), ", ") if a.job.site else "no site"
            lines.append(f"#{a.id:<4} {local_span(a.starts_at, a.ends_at, user.timezone)}  "
                         f"{a.job.title} — {site}")
    if as_json:
        print_json(data)
    else:
        for line in lines or ["(no visits)"]:
            click.echo(line)
