"""/api/v1 reports (one metric per URL) and streamed exports."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from flask import Response, send_file, stream_with_context, url_for
from spectree import Response as Answers

from server import exports, reports
from server.api.auth import require
from server.api.base import answers as ans
from server.api.base import bp, endpoint, params, reading, settings, writing
from server.api.problems import ApiProblem
from server.api.report_schemas import ExportQuery, ExportQueued, ReportOut, ReportQuery
from server.api.schemas import Problem
from server.apikeys import Scope
from server.exports import ExportRequest, Format, Kind, files
from server.reports import Filters, Metric
from server.reports.base import moment
from server.web.context import database

F = TypeVar("F", bound=Callable[..., Any])
METRIC_NAMES = ", ".join(m.value for m in Metric)
KIND_NAMES = ", ".join(k.value for k in Kind)
RETRY_AFTER_S = 5
NEEDS = {Metric.INTEGRATION_HEALTH: Scope.ADMIN}  # the rest need READ
EXPORT_NEEDS = {Kind.AUDIT: Scope.AUDIT}


def _metric(name: str) -> Metric:
    try:
        return Metric(name)
    except ValueError as exc:
        raise ApiProblem(404, f"No report {name[:40]!r}; the reports are {METRIC_NAMES}.") from exc


def _kind(name: str) -> Kind:
    try:
        return Kind(name)
    except ValueError as exc:
        raise ApiProblem(404, f"No export {name[:40]!r}; the exports are {KIND_NAMES}.") from exc


def _rights_first(func: F) -> F:
    """Some reports and exports need more than READ: check the caller's right for the one
    asked for before the query is validated (401, 403 and 404 come before 422)."""

    @functools.wraps(func)
    def view(**kwargs: str) -> Any:
        if "metric" in kwargs:
            require(NEEDS.get(_metric(kwargs["metric"]), Scope.READ))
        else:
            require(EXPORT_NEEDS.get(_kind(kwargs["kind"]), Scope.READ))
        return func(**kwargs)

    return view  # type: ignore[return-value]


@bp.get("/reports/<metric>")
@_rights_first
@endpoint(Scope.READ, tags=("reports",), query=ReportQuery, resp=ans(200, ReportOut))
def report(metric: str) -> Any:
    """One metric over a range, optionally for one team or technician (definitions: README,
    "Reports"). Integration health needs a dispatcher key."""
    chosen = _metric(metric)
    query = params(ReportQuery)
    zone = settings().timezone
    filters = Filters(moment(query.from_, zone), moment(query.to, zone, end=True),
                      team=query.team, technician=query.technician)
    with reading() as session:
        found = reports.run(session, chosen, filters, business_zone=zone)
    return ReportOut(metric=found.metric.value, start=filters.start, end=filters.end,
                     team=filters.team, technician=filters.technician, columns=list(found.columns),
                     rows=[list(row) for row in found.rows], summary=found.summary, timezone=zone)


@bp.get("/exports/<kind>")
@_rights_first
@endpoint(Scope.READ, tags=("exports",), query=ExportQuery,
          resp=Answers(HTTP_200=None, HTTP_202=ExportQueued, HTTP_401=Problem, HTTP_403=Problem,
                       HTTP_404=Problem, HTTP_422=Problem))
def export(kind: str) -> Any:
    """Visits, jobs, customers or the audit trail, streamed as CSV, NDJSON or iCalendar (visits).
    Above FIELDCAL_EXPORT_INLINE_ROWS rows it runs in the background: 202 with a download
    link. The audit trail needs a dispatcher or readonly key. Every export is audited."""
    chosen = _kind(kind)
    query = params(ExportQuery)
    zone = settings().timezone
    request = ExportRequest(chosen, query.format,
                            start=moment(query.from_, zone) if query.from_ is not None else None,
                            end=moment(query.to, zone, end=True) if query.to is not None else None,
                            bom=query.bom)
    with reading() as session:
        rows = files.count(session, request)
    if rows > settings().export_inline_rows:
        with writing() as ctx:
            file_id = files.queue(ctx, request)
        return _queued(file_id, files.State.WAITING, rows)
    with writing() as ctx:
        exports.audit_export(ctx, request)
    db, organizer = database(), settings().organizer

    def pieces() -> Iterator[bytes]:
        with db.read() as session:
            yield from exports.stream(session, request, organizer=organizer)

    return _attachment(Response(stream_with_context(pieces()), content_type=exports.media_type(request.fmt)),
                       request)


def _attachment(response: Response, request: ExportRequest) -> Response:
    name = f"fieldcal-{request.kind.value}.{files.SUFFIX[request.fmt]}"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _queued(file_id: str, state: files.State, rows: int | None) -> Any:
    download = url_for("api.export_file", file_id=file_id, _external=True)
    answer = ExportQueued(id=file_id, status=state.value, rows=rows, download=download)
    return answer, 202, {"Location": download, "Retry-After": str(RETRY_AFTER_S)}


@bp.get("/exports/files/<file_id>")
@endpoint(Scope.READ, tags=("exports",),
          resp=Answers(HTTP_200=None, HTTP_202=ExportQueued, HTTP_401=Problem, HTTP_403=Problem,
                       HTTP_404=Problem, HTTP_410=Problem))
def export_file(file_id: str) -> Any:
    """A background export: 202 while it is written, then the file (the audit trail needs a
    dispatcher or readonly key, as when it was asked for)."""
    with reading() as session:
        found = files.find(session, settings().instance_path / files.FOLDER, file_id)
    if found is None:
        raise ApiProblem(404, "No such export (they are kept for a day); ask for it again.")
    require(EXPORT_NEEDS.get(found.request.kind, Scope.READ))
    if found.state is files.State.FAILED:
        raise ApiProblem(410, "This export failed; ask for it again.")
    if found.path is None:
        return _queued(file_id, found.state, None)
    response = send_file(found.path, conditional=False)
    response.direct_passthrough = False  # the app's after-request steps may read the body
    response.headers["Content-Type"] = exports.media_type(found.request.fmt)
    return _attachment(response, found.request)


def describe_files(document: dict[str, Any]) -> None:
    """Name the media types of the exports' 200 answers in the OpenAPI document."""
    content = {exports.media_type(fmt).split(";")[0]: {"schema": {"type": "string"}} for fmt in Format}
    for path in ("/api/v1/exports/{kind}", "/api/v1/exports/files/{file_id}"):
        answer = document["paths"].get(path, {}).get("get", {}).get("responses", {}).get("200")
        if answer is not None:
            answer["content"] = content
