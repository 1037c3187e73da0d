"""caldav-server-tester against the live server: no feature it once found supported may regress.

The expected list lives in tests/data/caldav_server_tester_expected.json. To refresh it
after a deliberate change, run this module with FIELDCAL_UPDATE_TESTER_EXPECTED=1, then
review the diff: new supports are welcome, a lost one needs a reason.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from live import (
    LiveServer,
)
from seeding import (
    Seed,
    fresh_technician,
)

from server.db import Database

TESTER = Path(sys.executable).with_name("caldav-server-tester")
EXPECTED = Path(__file__).with_name("data") / "caldav_server_tester_expected.json"
SUPPORTED = ("full", "quirk")  # what the caldav library counts as supported
TIMEOUT_S = 600
pytestmark = pytest.mark.slow


def parse_hints(output: str) -> dict[str, dict[str, Any]]:
    """The `--format hints` report: a Python dict literal of feature -> {support: ...}."""
    start, end = output.find("{\n"), output.rfind("}")
    assert start >= 0 and end > start, f"no feature report in the output:\n{output[-2000:]}"
    report = ast.literal_eval(output[start:end + 1])
    assert isinstance(report, dict) and report, output[-2000:]
    return report


def support_of(info: object) -> str:
    if isinstance(info, dict):
        return str(info.get("support", "full"))
    return str(info)


def run_tester(live: LiveServer, login: str, password: str, workdir: Path) -> dict[str, str]:
    result = subprocess.run(
        [str(TESTER), "--format", "hints", "--caldav-url", live.dav,
         "--caldav-username", login, "--caldav-password", password],
        cwd=workdir, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=TIMEOUT_S, check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    (workdir / "tester.out").write_text(result.stdout)
    (workdir / "tester.err").write_text(result.stderr)
    assert result.returncode == 0, (
        f"caldav-server-tester exited {result.returncode}:\n{result.stderr[-4000:]}\n"
        f"server log:\n{live.log_tail(40)}"
    )
    return {feature: support_of(info) for feature, info in parse_hints(result.stdout).items()}


def test_no_feature_regresses(live: LiveServer, seed: Seed, db: Database, tmp_path: Path) -> None:
    fresh = fresh_technician(db, seed, "tester", [])
    observed = run_tester(live, fresh.account.login, fresh.account.password, tmp_path)
    supported = sorted(f for f, level in observed.items() if level in SUPPORTED)

    if os.environ.get("FIELDCAL_UPDATE_TESTER_EXPECTED") == "1":
        EXPECTED.parent.mkdir(exist_ok=True)
        EXPECTED.write_text(json.dumps(
            {"supported": supported, "observed": dict(sorted(observed.items()))},
            indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        pytest.skip(f"wrote {EXPECTED}; review it and run again")

    assert EXPECTED.exists(), (
        f"{EXPECTED} is missing: run with FIELDCAL_UPDATE_TESTER_EXPECTED=1 to create it")
    expected = json.loads(EXPECTED.read_text(encoding="utf-8"))
    regressions = {
        feature: observed.get(feature, "(not reported)")
        for feature in expected["supported"]
        if observed.get(feature) not in SUPPORTED
    }
    assert not regressions, f"features no longer supported: {regressions}"
