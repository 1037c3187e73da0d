"""One export of every visit in this process, then its peak RSS (for bench/reports.py).

    python -m bench.export_rss cli FORMAT TARGET    `fieldcal export visits` (the command line)
    python -m bench.export_rss core FORMAT TARGET   the export path alone (server.exports)

Settings come from the FIELDCAL_* environment. Prints {"before_mb", "peak_mb", "seconds"}
as JSON: RSS after the imports (before the export) and the process's peak after it.
"""

from __future__ import annotations

import json
import os
import sys
import time


def rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not getrusage's ru_maxrss: that one survives exec and
    starts at the RSS of the process that forked us."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def _cli(fmt: str, target: str) -> tuple[float, float]:
    from server.cli import cli

    before = rss_mb()
    began = time.perf_counter()
    cli.main(["export", "visits", "--format", fmt, "--output", target], standalone_mode=False)
    return before, began


def _core(fmt: str, target: str) -> tuple[float, float]:
    from server import audit, exports
    from server.actors import Actor
    from server.audit import AuditKeys
    from server.context import Context
    from server.db import Database

    url = os.environ["FIELDCAL_DATABASE_URL"]
    audit.configure(url, AuditKeys((os.environ["FIELDCAL_AUDIT_KEYS"],)))
    database = Database(url)
    request = exports.ExportRequest(exports.Kind.VISITS, exports.Format(fmt))
    before = rss_mb()
    began = time.perf_counter()
    with database.write() as session:
        exports.audit_export(Context(session, Actor("bench", "cli"), "bench@bench.test"), request)
    with database.read() as session, open(target, "wb") as handle:
        for piece in exports.stream(session, request, organizer="bench@bench.test"):
            handle.write(piece)
    return before, began


def main() -> int:
    mode, fmt, target = sys.argv[1:4]
    before, began = (_cli if mode == "cli" else _core)(fmt, target)
    print(json.dumps({"before_mb": before, "peak_mb": rss_mb(), "seconds": time.perf_counter() - began}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
