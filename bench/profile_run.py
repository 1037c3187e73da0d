"""Profile the operations inside a one-worker gunicorn and summarise where the time goes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.caldav_bench import Operations
from bench.client import Client, Reply
from bench.events import Event
from bench.profiling import summarise, top_functions
from bench.servers import GunicornSettings, free_port, start
from bench.sides import Side

WARMUPS = 2
PROFILED = 3
TOP = 12


@dataclass(frozen=True)
class Profiled:
    name: str
    method: str  # the timed request's method (a sync step also PUTs, untimed)
    step: Callable[[Operations], Callable[[], tuple[Reply, int]]]
    sides: tuple[str, ...]


PROFILED_OPERATIONS = (
    Profiled("PROPFIND depth 1", "PROPFIND", lambda ops: ops.propfind,
             ("stock", "fieldcal", "floor")),
    Profiled("GET whole calendar", "GET", lambda ops: ops.get_all, ("fieldcal",)),
    Profiled("calendar-query (1 week)", "REPORT", lambda ops: ops.calendar_query, ("fieldcal",)),
    Profiled("PUT one event", "PUT", lambda ops: ops.put_new, ("fieldcal",)),
    Profiled("sync-collection (1 change)", "REPORT", lambda ops: ops.sync_after_change,
             ("fieldcal",)),
)


def _section(title: str, files: list[Path], plain_ms: float, repo: Path) -> str:
    total_ms, owners, keys, stats = summarise(files, repo)
    lines = [f"### {title}: unprofiled {plain_ms:,.1f} ms; under cProfile {total_ms:,.1f} ms "
             f"(mean of {len(files)} profiled requests)", "",
             "own time by owner (stdlib/builtins charged to their caller), ms per request:", ""]
    lines += [f"    {share.ms:9.1f}  {share.label}" for share in owners if share.ms >= 0.05]
    if keys:
        lines += ["", "inclusive time of Radicale's steps, ms per request:", ""]
        lines += [f"    {share.ms:9.1f}  {share.label}" for share in keys]
    lines += ["", "top functions by own time (ms per request, calls per request):", ""]
    lines += ["    " + line for line in top_functions(stats, len(files), TOP, "tottime", repo)]
    lines += ["", "top functions by cumulative time:", ""]
    lines += ["    " + line for line in top_functions(stats, len(files), TOP, "cumtime", repo)]
    return "\n".join(lines)


def profile_operations(sides: Sequence[Side], events: list[Event], settings: GunicornSettings,
                       work: Path, repo: Path) -> str:
    """Profile every operation of PROFILED_OPERATIONS on the sides it names."""
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
        ops = Operations(client, events)
        ops.created = 1000  # new events of their own, after those of the timed run
        try:
            for op in PROFILED_OPERATIONS:
                if side.name not in op.sides:
                    continue
                step = op.step(ops)
                plain = [step()[0].ms for _ in range(WARMUPS)]
                slug = op.method.lower() + "-" + str(PROFILED_OPERATIONS.index(op))
                client.profile_as = slug
                for _ in range(PROFILED):
                    step()
                client.profile_as = ""
                files = sorted(directory.glob(f"{slug}.{op.method}.*.pstats"))
                sections.append(_section(f"{side.name}: {op.name}", files, min(plain), repo))
        finally:
            client.close()
            server.stop()
    text = "\n\n".join(sections)
    (work / "profile.txt").write_text(text + "\n", encoding="utf-8")
    return text
