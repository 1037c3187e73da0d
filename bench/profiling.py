"""cProfile inside a gunicorn worker, and where a profiled request's time went.

The WSGI wrapper profiles only requests that carry `X-Bench-Profile: <name>` and
writes `<BENCH_PROFILE_DIR>/<name>.pstats`; all other requests pass straight through.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
FuncKey = tuple[str, int, str]


def profiled(app: WSGIApp) -> WSGIApp:
    directory = Path(os.environ["BENCH_PROFILE_DIR"])

    def wrapper(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        name = environ.get("HTTP_X_BENCH_PROFILE", "")
        if not NAME.match(name):
            return app(environ, start_response)
        profile = cProfile.Profile()
        body = profile.runcall(lambda: list(app(environ, start_response)))
        profile.dump_stats(directory / f"{name}.pstats")
        return body

    return wrapper


def fieldcal_app() -> WSGIApp:
    from wsgi import create_wsgi_app

    return profiled(create_wsgi_app())


def radicale_app() -> WSGIApp:
    import radicale

    return profiled(radicale.application)


def floor_app() -> WSGIApp:
    from bench.floor import create_app

    return profiled(create_app())


@dataclass(frozen=True)
class Share:
    label: str
    ms: float


def _table(stats: pstats.Stats) -> dict[FuncKey, Any]:
    return stats.stats  # type: ignore[attr-defined]  # not in typeshed's pstats.Stats


def cumulative(stats: pstats.Stats, path_part: str, func: str) -> float:
    """Seconds spent in a function and everything it called."""
    return sum(row[3] for key, row in _table(stats).items()
               if path_part in key[0] and key[2] == func)


def _owner(key: FuncKey, repo: Path) -> str | None:
    """The part of the stack a function belongs to; None for stdlib and builtins."""
    path, _line, func = key
    if path.startswith(f"{repo}/plugins/"):
        return "fieldcal plugins/radicale"
    if path.startswith(f"{repo}/server/") or path.startswith(f"{repo}/wsgi.py"):
        return "fieldcal server/ (core, guards)"
    if "/radicale/storage/" in path:
        return "Radicale multifilesystem storage"
    if "/radicale/" in path:
        return "Radicale (request handling, filters, XML tree)"
    if "xml/etree" in path:
        return "ElementTree (XML tree and serialisation)"
    if "/sqlalchemy/" in path:
        return "SQLAlchemy"
    if "sqlite3" in func or "/psycopg" in path:
        return "database driver (sqlite3/psycopg)"
    for part, label in (("/icalendar/", "icalendar"), ("/vobject/", "vobject (Radicale's parser)"),
                        ("/ical/", "ical (the strict reader)"), ("/pydantic", "pydantic"),
                        ("/dateutil/", "dateutil"), ("/logging/", "logging"),
                        ("/werkzeug/", "werkzeug/Flask"), ("/flask/", "werkzeug/Flask"),
                        ("bench/profiling.py", "harness")):
        if part in path:
            return label
    return None


def partition(stats: pstats.Stats, repo: Path) -> dict[str, float]:
    """Own time of every function, grouped by owner; stdlib/builtin time goes to its callers'."""
    table = _table(stats)
    memo: dict[FuncKey, str] = {}

    def owner(key: FuncKey, seen: frozenset[FuncKey]) -> str:
        if key in memo:
            return memo[key]
        found = _owner(key, repo)
        if found is None:
            callers = table.get(key, (0, 0, 0, 0, {}))[4]
            ranked = sorted(callers.items(), key=lambda kv: kv[1][3], reverse=True)
            found = next((owner(c, seen | {key}) for c, _ in ranked if c not in seen), "other")
        memo[key] = found
        return found

    groups: dict[str, float] = {}
    for key, (_cc, _nc, tottime, _ct, callers) in table.items():
        if _owner(key, repo) is not None or not callers:
            label = owner(key, frozenset())
            groups[label] = groups.get(label, 0.0) + tottime
            continue
        for caller, row in callers.items():  # split by caller: row[2] is own time via caller
            label = owner(caller, frozenset({key}))
            groups[label] = groups.get(label, 0.0) + row[2]
    return groups


KEY_FUNCTIONS = (
    ("radicale/app/propfind.py", "do_PROPFIND", "Radicale do_PROPFIND, all of it"),
    ("radicale/app/propfind.py", "_collect_allowed_items",
     "  walking discover() + rights check per item"),
    ("radicale/app/propfind.py", "xml_propfind", "  building the XML tree (xml_propfind)"),
    ("radicale/app/report.py", "do_REPORT", "Radicale do_REPORT, all of it"),
    ("radicale/app/report.py", "xml_report", "  xml_report (filters + response tree)"),
    ("radicale/app/get.py", "do_GET", "Radicale do_GET, all of it"),
    ("radicale/app/put.py", "do_PUT", "Radicale do_PUT, all of it"),
    ("radicale/app/base.py", "_xml_response", "Radicale writes the XML (_xml_response)"),
)


def key_functions(stats: pstats.Stats) -> list[tuple[str, float]]:
    found = []
    for path, func, label in KEY_FUNCTIONS:
        seconds = cumulative(stats, path, func)
        if seconds > 0:
            found.append((label, seconds))
    return found


def summarise(files: list[Path], repo: Path) -> tuple[float, list[Share], list[Share],
                                                       pstats.Stats]:
    """Per-request ms under cProfile: total, the partition by owner, key inclusive times."""
    stats = pstats.Stats(*(str(f) for f in files))
    runs = len(files)
    groups = partition(stats, repo)
    total = sum(groups.values())
    owners = [Share(label, seconds * 1000 / runs)
              for label, seconds in sorted(groups.items(), key=lambda kv: -kv[1])]
    keys = [Share(label, seconds * 1000 / runs) for label, seconds in key_functions(stats)]
    return total * 1000 / runs, owners, keys, stats


def top_functions(stats: pstats.Stats, runs: int, count: int, sort: str, repo: Path) -> list[str]:
    """Lines 'ms-per-request  calls  file:line(function)' for the top functions by `sort`."""
    table = _table(stats)
    column = {"tottime": 2, "cumtime": 3}[sort]
    rows = sorted(table.items(), key=lambda item: item[1][column], reverse=True)[:count]
    lines = []
    for (path, line, func), row in rows:
        short = re.sub(r"^.*/site-packages/", "", path)
        short = re.sub(r"^.*/lib/python3\.\d+/", "", short)
        short = short.removeprefix(f"{repo}/")
        lines.append(f"{row[column] * 1000 / runs:9.1f} ms  {row[1] // runs:>7}  "
                     f"{short}:{line}({func})")
    return lines
