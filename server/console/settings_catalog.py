"""Settings of the business: the settings index, service types and holidays.

Arrival windows are wall-clock times in the business's zone (where the domain offers them);
holidays are read and typed in the signed-in person's zone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import request
from werkzeug.wrappers import Response

from server.actions import Action
from server.console.routes import bp, page, refused
from server.console.settings_common import (
    Problems,
    Saved,
    StaleForm,
    acting,
    back,
    check_version,
    listed,
    local_span,
    reader_zone,
    saved_message,
    span,
    staff_pages,
    text,
    version,
    whole,
)
from server.errors import FieldcalError, InvalidInput, NotFound
from server.models import utcnow
from server.scheduling import capacity
from server.web.context import database, settings

# the service type's whole-number fields, as the form labels them
NUMBERS = {
    "duration_minutes": "Duration (minutes)",
    "buffer_before_minutes": "Buffer before (minutes)",
    "buffer_after_minutes": "Buffer after (minutes)",
    "travel_minutes": "Fixed travel (minutes)",
    "min_notice_minutes": "Minimum notice (minutes)",
    "horizon_days": "Bookable up to (days ahead)",
    "window_capacity": "Visits per arrival window (0: no limit)",
}
TEXTS = ("slug", "name", "description", "skills", "arrival_windows")
SERVICE_FIELDS = {name: name for name in (*NUMBERS, *TEXTS)}
HOLIDAY_FIELDS = {"starts_at": "first_day", "ends_at": "last_day", "first_day": "first_day",
                  "from_time": "from_time", "last_day": "last_day", "until_time": "until_time",
                  "reason": "reason"}
SERVICE_PAGE = "console/settings/service.html"


@bp.get("/settings")
@staff_pages
def settings_index() -> Response:
    return page("Settings", "console/settings/index.html")


def _form_values(service: Any) -> dict[str, str]:
    """A service type as its form shows it."""
    data = capacity.service_type_json(service)
    values = {name: str(data[name]) for name in NUMBERS}
    values.update(slug=data["slug"], name=data["name"], description=data["description"],
                  skills=", ".join(data["skills"]),
                  arrival_windows=", ".join(data["arrival_windows"]))
    values.update(remote="on" if data["remote"] else "", active="on" if data["active"] else "")
    return values


def _services_page(problems: Problems | None = None,
                   given: Mapping[str, str] | None = None) -> Response:
    problems = problems or Problems()
    with database().read() as session:
        services = [capacity.service_type_json(s) for s in capacity.service_types(session)]
    defaults = {"duration_minutes": "60", "buffer_before_minutes": "0",
                "buffer_after_minutes": "0", "travel_minutes": "0", "min_notice_minutes": "120",
                "horizon_days": "30", "window_capacity": "0"}
    return page("Service types · Settings", "console/settings/services.html", problems.status,
                services=services, values={**defaults, **(given or {})}, numbers=NUMBERS,
                errors=problems.messages, saved=saved_message(),
                business_zone=settings().timezone)


def _service_values(*, adding: bool) -> dict[str, Any]:
    """The form as the domain function's arguments (text → numbers and lists only)."""
    values: dict[str, Any] = {name: whole(name, label.split(" (")[0]) for name, label in
                              NUMBERS.items()}
    values.update(name=text("name", 200), description=text("description", 5000),
                  skills=listed("skills"),
                  arrival_windows=[w.replace("–", "-").replace(" ", "")
                                   for w in listed("arrival_windows")],
                  remote=request.form.get("remote") == "on")
    if not adding:
        values["active"] = request.form.get("active") == "on"
    return values


def _numbers_problems() -> Problems:
    """Every number field that is not a whole number, each beside its field."""
    problems = Problems()
    for name, label in NUMBERS.items():
        try:
            whole(name, label.split(" (")[0])
        except InvalidInput as exc:
            problems.add(exc, SERVICE_FIELDS)
    return problems


@bp.get("/settings/services")
@staff_pages
def settings_services() -> Response:
    return _services_page()


@bp.post("/settings/services")
@staff_pages
def settings_add_service() -> Response:
    problems = _numbers_problems()
    if problems:
        return _services_page(problems, request.form.to_dict())
    try:
        with acting() as ctx:
            service = capacity.add_service_type(ctx, text("slug", 64), **_service_values(
                adding=True))
            slug = service.slug
    except FieldcalError as exc:
        return _services_page(Problems().add(exc, SERVICE_FIELDS), request.form.to_dict())
    return back("console.settings_service", Saved.SERVICE_ADDED, slug=slug)


def _service_page(slug: str, problems: Problems | None = None,
                  given: Mapping[str, str] | None = None) -> Response:
    problems = problems or Problems()
    with database().read() as session:
        try:
            service = capacity.find_service_type(session, slug)
        except NotFound as exc:
            return refused(404, "No such service type", exc.message)
        values = _form_values(service)
        current = version(capacity.service_type_json(service))
    if given is not None:
        values = {**values, "remote": "", "active": "", **given}
    return page(f"{values['name']} · Service types", SERVICE_PAGE, problems.status, slug=slug,
                values=values, numbers=NUMBERS, errors=problems.messages, saved=saved_message(),
                business_zone=settings().timezone, version=current)


@bp.get("/settings/services/<slug>")
@staff_pages
def settings_service(slug: str) -> Response:
    return _service_page(slug)


@bp.post("/settings/services/<slug>")
@staff_pages
def settings_edit_service(slug: str) -> Response:
    problems = _numbers_problems()
    if problems:
        return _service_page(slug, problems, request.form.to_dict())
    try:
        with acting() as ctx:
            service = capacity.find_service_type(ctx.session, slug)
            ctx.session.refresh(service, with_for_update=True)
            check_version(ctx.session, capacity.service_type_json(service), "service_type",
                          service.id, Action.SERVICE_TYPE_EDIT, "This service type was")
            capacity.edit_service_type(ctx, service, **_service_values(adding=False))
    except NotFound as exc:
        return refused(404, "No such service type", exc.message)
    except StaleForm as exc:
        return _service_page(slug, Problems().add(exc))
    except FieldcalError as exc:
        return _service_page(slug, Problems().add(exc, SERVICE_FIELDS), request.form.to_dict())
    return back("console.settings_service", Saved.SERVICE_SAVED, slug=slug)


def _holidays_page(problems: Problems | None = None,
                   given: Mapping[str, str] | None = None) -> Response:
    problems = problems or Problems()
    zone = reader_zone()
    with database().read() as session:
        rows = [(row.id, local_span(row.starts_at, row.ends_at, zone), row.reason)
                for row in capacity.time_off_of(session, None, since=utcnow())]
    return page("Holidays · Settings", "console/settings/holidays.html", problems.status,
                holidays=rows, zone=zone.key, values=dict(given or {}),
                errors=problems.messages, saved=saved_message())


@bp.get("/settings/holidays")
@staff_pages
def settings_holidays() -> Response:
    return _holidays_page()


@bp.post("/settings/holidays")
@staff_pages
def settings_add_holiday() -> Response:
    try:
        with acting() as ctx:
            starts_at, ends_at = span("first_day", "from_time", "last_day", "until_time",
                                      reader_zone())
            capacity.add_holiday(ctx, starts_at, ends_at, text("reason", 200))
    except FieldcalError as exc:
        return _holidays_page(Problems().add(exc, HOLIDAY_FIELDS), request.form.to_dict())
    return back("console.settings_holidays", Saved.HOLIDAY_ADDED)


@bp.post("/settings/holidays/<int:time_off_id>/remove")
@staff_pages
def settings_remove_holiday(time_off_id: int) -> Response:
    try:
        with acting() as ctx:
            capacity.remove_time_off(ctx, time_off_id, None)
    except FieldcalError as exc:
        return _holidays_page(Problems().add(exc))
    return back("console.settings_holidays", Saved.HOLIDAY_REMOVED)
