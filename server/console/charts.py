"""Bar charts drawn on the server as SVG: every bar carries its label and its number as text,
so a chart reads the same without colour (and the page puts a table beside it)."""

from __future__ import annotations

from dataclasses import dataclass

from server.reports import Report
from server.reports.patterns import by_hour, by_weekday

BAR_HEIGHT = 22
GAP = 6
LABEL_WIDTH = 150
PLOT_WIDTH = 360
VALUE_WIDTH = 80


@dataclass(frozen=True)
class Table:
    caption: str
    columns: tuple[str, ...]
    rows: list[tuple[object, ...]]


def table(caption: str, report: Report) -> Table:
    return Table(caption, report.columns, list(report.rows))


@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    shown: str  # the value as the chart prints it ("12", "33.3 %")
    y: int
    width: int


@dataclass(frozen=True)
class Chart:
    key: str  # for ids
    title: str
    bars: list[Bar]

    @property
    def height(self) -> int:
        return max(1, len(self.bars)) * (BAR_HEIGHT + GAP) + GAP

    @property
    def width(self) -> int:
        return LABEL_WIDTH + PLOT_WIDTH + VALUE_WIDTH

    label_width = LABEL_WIDTH
    bar_height = BAR_HEIGHT


def chart(key: str, title: str, points: list[tuple[str, float, str]], scale: float | None = None) -> Chart:
    """`points`: (label, value, value as shown); bars are scaled to `scale` (default: the
    largest value)."""
    top = scale if scale is not None else max((v for _, v, _ in points), default=0.0)
    bars = []
    for n, (label, value, shown) in enumerate(points):
        width = round(PLOT_WIDTH * value / top) if top > 0 else 0
        bars.append(Bar(label, value, shown, GAP + n * (BAR_HEIGHT + GAP), max(0, min(width, PLOT_WIDTH))))
    return Chart(key, title, bars)


def percent(rate: float | int | str | None) -> tuple[float, str]:
    if not isinstance(rate, int | float):
        return 0.0, "no data"
    return float(rate), f"{rate * 100:.1f} %"


def visits_chart(report: Report) -> Chart:
    return chart("visits", "Visits by what happened", [
        (kind.replace("_", " ").capitalize(), float(n), str(n)) for kind, n in report.summary.items()
        if isinstance(n, int)])


def rates_chart(no_shows: Report, first_fix: Report, on_time: Report) -> Chart:
    points = []
    for label, rate in (("No-shows", no_shows.summary.get("no_show_rate")),
                        ("First-time fix", first_fix.summary.get("first_time_fix_rate")),
                        ("On-time arrival", on_time.summary.get("on_time_rate"))):
        value, shown = percent(rate)
        points.append((label, value, shown))
    return chart("rates", "Rates", points, scale=1.0)


def waiting_chart(report: Report) -> Chart:
    return chart("waiting", "Time to service (jobs)",
                 [(str(label), float(n or 0), str(n)) for label, n in report.rows])


def utilisation_chart(report: Report) -> Chart:
    points = []
    for row in report.rows:
        value, shown = percent(row[4])
        points.append((str(row[0]), value, shown))
    return chart("utilisation", "Utilisation per technician", points,
                 scale=max([1.0, *(p[1] for p in points)]))


def weekday_chart(report: Report) -> Chart:
    return chart("weekdays", "Visits by weekday", [(d, float(n), str(n)) for d, n in by_weekday(report)])


def weekday_table(report: Report) -> Table:
    return Table("Visits by weekday", ("weekday", "visits"), list(by_weekday(report)))


def hour_table(report: Report) -> Table:
    return Table("Visits by hour of day", ("hour", "visits"),
                 [(f"{h:02d}:00", n) for h, n in by_hour(report)])


def hour_chart(report: Report) -> Chart:
    return chart("hours", "Visits by hour of day",
                 [(f"{h:02d}:00", float(n), str(n)) for h, n in by_hour(report)])


def health_chart(report: Report) -> Chart:
    summary = report.summary
    return chart("health", "Outbox messages", [
        (label.replace("_", " ").capitalize(), float(n), str(n))
        for label, n in summary.items() if isinstance(n, int)])
