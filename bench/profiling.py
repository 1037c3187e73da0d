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


@dataclass(frozen=True)
class Share:
    label: str
    ms: float


def _is(key: FuncKey, path_part: str, func: str | None = None) -> bool:
    return path_part in key[0] and (func is None or key[2] == func)


def cumulative(stats: pstats.Stats, path_part: str, func: str) -> float:
    """Seconds spent in a function and everything it called."""
    table: dict[FuncKey, Any] = stats.stats  # type: ignore[attr-defined]
    return sum(row[3] for key, row in table.items() if _is(key, path_part, func))


def entered_from_outside(stats: pstats.Stats, inside: Callable[[FuncKey], bool]) -> float:
    """Seconds spent in a group of functions (and what they call) when entered from outside it."""
    table: dict[FuncKey, Any] = stats.stats  # type: ignore[attr-defined]
    total = 0.0
    for key, (_cc, _nc, _tt, _ct, callers) in table.items():
        if not inside(key):
            continue
        total += sum(row[3] for caller, row in callers.items() if not inside(caller))
    return total


def breakdown(files: list[Path], repo: Path) -> tuple[float, list[Share], pstats.Stats]:
    """Per-request milliseconds: total and the shares worth naming."""
    stats = pstats.Stats(*(str(f) for f in files))
    runs = len(files)
    table: dict[FuncKey, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(row[2] for row in table.values())
    plugin = f"{repo}/plugins/radicale/"
    core = f"{repo}/server/"
    shares = [
        ("Radicale do_PROPFIND (all of it)", cumulative(stats, "radicale/app/propfind.py",
                                                         "do_PROPFIND")),
        ("  storage discover() (depth 1: the collection + items)",
         entered_from_outside(stats, lambda k: "discover" in k[2] and "radicale" in k[0])),
        ("  Radicale iterates discover() and checks rights per item (_collect_allowed_items)",
         cumulative(stats, "radicale/app/propfind.py", "_collect_allowed_items")),
        ("    of which rights plugin authorization()",
         entered_from_outside(stats, lambda k: k[2] == "authorization")),
        ("  Radicale builds the XML tree, reading item/collection props (xml_propfind)",
         cumulative(stats, "radicale/app/propfind.py", "xml_propfind")),
        ("Radicale writes the XML (_xml_response, ElementTree.write)",
         cumulative(stats, "radicale/app/base.py", "_xml_response")),
        ("fieldcal plugins (storage/auth/rights, incl. SQL they run)",
         entered_from_outside(stats, lambda k: plugin in k[0])),
        ("fieldcal server/ core (incl. SQL it runs)",
         entered_from_outside(stats, lambda k: core in k[0])),
        ("SQLAlchemy + driver (from anywhere)",
         entered_from_outside(stats, lambda k: "/sqlalchemy/" in k[0]
                              or "sqlite3" in k[2] or "psycopg" in k[0])),
        ("Radicale logging", entered_from_outside(stats, lambda k: "/logging/" in k[0])),
    ]
    return (total * 1000 / runs,
            [Share(label, seconds * 1000 / runs) for label, seconds in shares], stats)


def top_functions(stats: pstats.Stats, runs: int, count: int, sort: str, repo: Path) -> list[str]:
    """Lines 'ms-per-request  calls  file:line(function)' for the top functions by `sort`."""
    table: dict[FuncKey, Any] = stats.stats  # type: ignore[attr-defined]
    column = {"tottime": 2, "cumtime": 3}[sort]
    rows = sorted(table.items(), key=lambda item: item[1][column], reverse=True)[:count]
    lines = []
    for (path, line, func), row in rows:
        short = re.sub(r"^.*/site-packages/", "", path)
        short = short.removeprefix(f"{repo}/")
        lines.append(f"{row[column] * 1000 / runs:9.1f} ms  {row[1] // runs:>7}  "
                     f"{short}:{line}({func})")
    return lines
