"""Profile PROPFIND depth 1 inside a one-worker gunicorn of each side and summarise it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench.caldav_bench import CALENDAR_PATH, PROPFIND_BODY, XML
from bench.client import Client
from bench.profiling import breakdown, top_functions
from bench.servers import GunicornSettings, free_port, start
from bench.sides import Side

WARMUPS = 2
PROFILED = 3
TOP = 15


def profile_propfind(sides: Sequence[Side], settings: GunicornSettings, work: Path,
                     repo: Path) -> str:
    sections = []
    for side in sides:
        directory = work / "profile" / side.name
        directory.mkdir(parents=True, exist_ok=True)
        port = free_port()
        server = start(f"{side.name}-profile", side.profile_app,
                       {**side.env, "BENCH_PROFILE_DIR": str(directory)}, settings,
                       work / f"{side.name}-profile.log", port=port, cwd=repo,
                       ready_path=f"{side.prefix}/", workers=1)
        client = Client(side.name, port, "tech", side.password, side.prefix)
        try:
            plain_ms = []
            for index in range(WARMUPS + PROFILED):
                headers = {**XML, "Depth": "1"}
                if index >= WARMUPS:
                    headers["X-Bench-Profile"] = f"propfind-{index - WARMUPS}"
                reply = client.request("PROPFIND", CALENDAR_PATH, PROPFIND_BODY, headers,
                                       expect=(207,))
                if index < WARMUPS:
                    plain_ms.append(reply.ms)
        finally:
            client.close()
            server.stop()
        files = sorted(directory.glob("propfind-*.pstats"))
        total_ms, shares, stats = breakdown(files, repo)
        lines = [f"### {side.name}: PROPFIND depth 1, {len(files)} profiled requests "
                 f"(unprofiled {min(plain_ms):,.0f} ms; under cProfile {total_ms:,.0f} ms "
                 "per request)", "", "where the time goes (ms per request, under cProfile):", ""]
        lines += [f"    {share.ms:9.1f}  {share.label}" for share in shares]
        lines += ["", "top functions by own time (ms per request, calls):", ""]
        lines += ["    " + line for line in top_functions(stats, len(files), TOP, "tottime", repo)]
        lines += ["", "top functions by cumulative time:", ""]
        lines += ["    " + line for line in top_functions(stats, len(files), TOP, "cumtime", repo)]
        text = "\n".join(lines)
        (work / f"profile-{side.name}.txt").write_text(text + "\n", encoding="utf-8")
        sections.append(text)
    return "\n\n".join(sections)
