"""Reports a service manager asks for: each metric is one SQL statement (SQLite and
PostgreSQL), defined in its module's docstring and in the README."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from server.models import utcnow
from server.reports.activity import visits_by_channel
from server.reports.attendance import no_shows, on_time_arrival
from server.reports.base import Cell, Filters, Metric, Report, check_names
from server.reports.health import integration_health
from server.reports.patterns import booking_hours
from server.reports.service import first_time_fix, time_to_service
from server.reports.utilisation import utilisation

__all__ = ["Cell", "Filters", "Metric", "Report", "run"]


def run(session: Session, metric: Metric, filters: Filters, *, business_zone: str,
        now: dt.datetime | None = None) -> Report:
    """One report; a team or technician that does not exist is NotFound."""
    check_names(session, filters)
    match metric:
        case Metric.VISITS:
            return visits_by_channel(session, filters)
        case Metric.NO_SHOWS:
            return no_shows(session, filters, now or utcnow())
        case Metric.TIME_TO_SERVICE:
            return time_to_service(session, filters)
        case Metric.FIRST_TIME_FIX:
            return first_time_fix(session, filters)
        case Metric.ON_TIME:
            return on_time_arrival(session, filters)
        case Metric.UTILISATION:
            return utilisation(session, filters)
        case Metric.BOOKING_HOURS:
            return booking_hours(session, filters, business_zone)
        case Metric.INTEGRATION_HEALTH:
            return integration_health(session, filters)
