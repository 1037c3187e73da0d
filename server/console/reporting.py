"""The reports page (/console/reports): a date range, team and technician filters, a chart
and a table for every metric."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from flask import request
from sqlalchemy import select
from werkzeug.wrappers import Response

from server import reports
from server.console import charts
from server.console.routes import bp, dispatcher_only, page
from server.errors import InvalidInput, NotFound
from server.models import Role, Team, User
from server.reports import Filters, Metric, Report
from server.reports.base import moment
from server.web.context import database, settings

DEFAULT_DAYS = 28
TITLES = {Metric.VISITS: "Visits by channel", Metric.NO_SHOWS: "No-shows",
          Metric.TIME_TO_SERVICE: "Time to service", Metric.FIRST_TIME_FIX: "First-time fix",
          Metric.ON_TIME: "On-time arrival", Metric.UTILISATION: "Utilisation",
          Metric.BOOKING_HOURS: "Visits by hour and weekday",
          Metric.INTEGRATION_HEALTH: "Integration health"}


def _day(name: str, default: dt.date) -> dt.date:
    given = request.args.get(name, "").strip()
    if not given:
        return default
    try:
        return dt.date.fromisoformat(given)
    except ValueError as exc:
        raise InvalidInput(f"{given[:20]!r} is not a date: use YYYY-MM-DD.") from exc


def _filters(zone: str) -> tuple[Filters, dt.date, dt.date]:
    today = dt.datetime.now(ZoneInfo(zone)).date()
    last = _day("to", today)
    first = _day("from", last - dt.timedelta(days=DEFAULT_DAYS - 1))
    if last < first:
        raise InvalidInput("The range must end on or after its first day.")
    filters = Filters(moment(first, zone), moment(last, zone, end=True),
                      team=request.args.get("team") or None,
                      technician=request.args.get("technician") or None)
    return filters, first, last


@bp.get("/reports")
@dispatcher_only
def reports_page() -> Response:
    zone = settings().timezone
    message, status = "", 200
    try:
        filters, first, last = _filters(zone)
    except InvalidInput as exc:
        today = dt.datetime.now(ZoneInfo(zone)).date()
        first, last = today - dt.timedelta(days=DEFAULT_DAYS - 1), today
        filters = Filters(moment(first, zone), moment(last, zone, end=True))
        message, status = exc.message, 400
    found: dict[Metric, Report] = {}
    with database().read() as session:
        teams = list(session.execute(select(Team.slug, Team.name).order_by(Team.name)))
        technicians = list(session.execute(select(User.login, User.name)
                                           .where(User.role == Role.TECHNICIAN).order_by(User.name)))
        try:
            for metric in Metric:
                found[metric] = reports.run(session, metric, filters, business_zone=zone)
        except NotFound as exc:
            message, status = exc.message, 404
            filters = Filters(filters.start, filters.end)
            found = {m: reports.run(session, m, filters, business_zone=zone) for m in Metric}
    table = charts.table
    sections = [
        (TITLES[Metric.VISITS], charts.visits_chart(found[Metric.VISITS]),
         [table("Visits by channel", found[Metric.VISITS])]),
        ("Rates", charts.rates_chart(found[Metric.NO_SHOWS], found[Metric.FIRST_TIME_FIX],
                                     found[Metric.ON_TIME]),
         [table(TITLES[m], found[m]) for m in (Metric.NO_SHOWS, Metric.FIRST_TIME_FIX, Metric.ON_TIME)]),
        (TITLES[Metric.TIME_TO_SERVICE], charts.waiting_chart(found[Metric.TIME_TO_SERVICE]),
         [table(TITLES[Metric.TIME_TO_SERVICE], found[Metric.TIME_TO_SERVICE])]),
        (TITLES[Metric.UTILISATION], charts.utilisation_chart(found[Metric.UTILISATION]),
         [table(TITLES[Metric.UTILISATION], found[Metric.UTILISATION])]),
        ("Visits by weekday", charts.weekday_chart(found[Metric.BOOKING_HOURS]),
         [charts.weekday_table(found[Metric.BOOKING_HOURS])]),
        ("Visits by hour of day", charts.hour_chart(found[Metric.BOOKING_HOURS]),
         [charts.hour_table(found[Metric.BOOKING_HOURS]),
          table("Visits by weekday and hour", found[Metric.BOOKING_HOURS])]),
        (TITLES[Metric.INTEGRATION_HEALTH], charts.health_chart(found[Metric.INTEGRATION_HEALTH]),
         [table(TITLES[Metric.INTEGRATION_HEALTH], found[Metric.INTEGRATION_HEALTH])]),
    ]
    return page("Reports", "console/reports.html", status, sections=sections,
                first=first, last=last, team=filters.team or "", technician=filters.technician or "",
                teams=teams, technicians=technicians, zone=zone, message=message)
