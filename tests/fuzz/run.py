"""Run one fuzz target under atheris (libFuzzer): `python tests/fuzz/run.py TARGET [libFuzzer flags]`.

The test suite runs it as `tests/test_fuzz.py` does: a scratch corpus folder first
(new inputs go there), the seed corpus in the repository second, and bounds on time
(-max_total_time), per-input time (-timeout=1) and memory (-rss_limit_mb).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent))

with atheris.instrument_imports(include=["server", "share", "icalendar", "ical", "itsdangerous",
                                         "targets"]):
    import targets


def keeping_findings(target: Callable[[bytes], None], folder: Path) -> Callable[[bytes], None]:
    """The target, saving an input that raises to `folder` before the engine stops."""

    def run(data: bytes) -> None:
        try:
            target(data)
        except BaseException:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"finding-{hashlib.sha1(data).hexdigest()}").write_bytes(data)
            raise

    return run


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in targets.TARGETS:
        raise SystemExit(f"usage: run.py {{{','.join(targets.TARGETS)}}} [libFuzzer flags]")
    findings = Path(os.environ.get("FIELDCAL_FUZZ_FINDINGS", "fuzz-findings"))
    target = keeping_findings(targets.TARGETS[sys.argv[1]], findings)
    atheris.Setup([sys.argv[0], *sys.argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
