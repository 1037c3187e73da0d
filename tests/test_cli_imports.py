"""`fieldcal export` imports the export code alone: no web app, CalDAV server or platforms.

Run in a fresh interpreter (this test process has imported everything already)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, sys
import click
from server.cli import cli
with click.Context(cli) as ctx:
    command = cli.get_command(ctx, sys.argv[1])
    names = cli.list_commands(ctx)
print(json.dumps({"name": command.name if command else None, "names": names,
                  "modules": sorted(sys.modules)}))
"""

HEAVY = ("flask", "radicale", "server.web", "server.api", "server.console", "server.platforms", "plugins",
         "ical", "server.scheduling")


def probe(command: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", PROBE, command], check=True, capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    found: dict[str, object] = json.loads(done.stdout)
    return found


def loaded(modules: object, package: str) -> bool:
    assert isinstance(modules, list)
    return any(m == package or m.startswith(package + ".") for m in modules)


def test_export_loads_no_face_and_no_calendar_stack() -> None:
    found = probe("export")
    assert found["name"] == "export"
    assert [package for package in HEAVY if loaded(found["modules"], package)] == []


def test_every_command_is_listed_and_loads_by_name() -> None:
    found = probe("appointment")
    assert found["name"] == "appointment"
    assert loaded(found["modules"], "server.scheduling")  # what booking needs, loaded on demand
    names = found["names"]
    assert isinstance(names, list) and names == sorted(names) and len(names) == 20
    assert {"init", "export", "appointment", "service-type"} <= set(names)


def test_unknown_command_is_none() -> None:
    assert probe("no-such-command")["name"] is None
