"""Coverage-guided fuzzing (atheris/libFuzzer) of the paths that take untrusted bytes.

Each target (tests/fuzz/targets.py) runs 3,000 repeatable inputs (FIELDCAL_FUZZ_RUNS,
FIELDCAL_FUZZ_SEED), or for FIELDCAL_FUZZ_SECONDS when that is set, from the seed corpus in
tests/fuzz/corpus/; an exception other than the project's own
refusals, an input taking over 1 s, or memory over 1 GiB fails the test with the input.
Inputs that once failed live in tests/fuzz/regressions/ and are replayed every run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

import pytest

FUZZ = Path(__file__).resolve().parent / "fuzz"
sys.path.insert(0, str(FUZZ))

import targets  # noqa: E402

SECONDS = int(os.environ.get("FIELDCAL_FUZZ_SECONDS", "0"))  # > 0: fuzz for that long instead
RUNS = int(os.environ.get("FIELDCAL_FUZZ_RUNS", "3000"))  # the suite's bounded, repeatable run
SEED = int(os.environ.get("FIELDCAL_FUZZ_SEED", "1"))
RSS_LIMIT_MB = 1024
INPUT_TIMEOUT_S = 1
NAMES = sorted(targets.TARGETS)


def inputs(name: str) -> list[Path]:
    return sorted(p for folder in ("corpus", "regressions")
                  for p in (FUZZ / folder / name).glob("*") if p.is_file())


@pytest.mark.parametrize("name", NAMES)
def test_seed_corpus_and_past_findings_hold(name: str) -> None:
    found = inputs(name)
    assert len(found) >= 4, f"the {name} target needs a seed corpus"
    for path in found:
        began = time.perf_counter()
        targets.TARGETS[name](path.read_bytes())
        assert time.perf_counter() - began < INPUT_TIMEOUT_S, f"{path.name} took over 1 s"


def test_targets_refuse_what_they_should() -> None:
    """The invariants can fail: each target flags a planted defect."""
    with pytest.raises(targets.Finding, match="declaration reached"):
        targets._Downstream()({"CONTENT_LENGTH": "20", "wsgi.input": __import__("io").BytesIO(
            b"<!DOCTYPE a><a/>    ")}, lambda *a: None)
    original = targets.SIGNER.loads
    try:
        # a payload of the wrong shape (a string id), unlike anything `loads` is typed to return
        targets.SIGNER.loads = lambda token, purpose: cast(Any, ("1", 2))  # type: ignore[method-assign]
        with pytest.raises(targets.Finding, match="payload"):
            targets.tokens_target(b"\x00anything")
    finally:
        targets.SIGNER.loads = original  # type: ignore[method-assign]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_fuzz(name: str, tmp_path: Path) -> None:
    scratch = tmp_path / "corpus"
    scratch.mkdir()
    command = [sys.executable, str(FUZZ / "run.py"), name, str(scratch), str(FUZZ / "corpus" / name),
               *([f"-max_total_time={SECONDS}"] if SECONDS else [f"-runs={RUNS}", f"-seed={SEED}"]),
               f"-timeout={INPUT_TIMEOUT_S}",
               f"-rss_limit_mb={RSS_LIMIT_MB}", "-max_len=16384", "-print_final_stats=1",
               f"-artifact_prefix={tmp_path}/"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=(SECONDS or 60) * 3 + 120,
                            cwd=FUZZ.parents[1], check=False,
                            env={**os.environ, "FIELDCAL_FUZZ_FINDINGS": str(tmp_path)})
    artifacts = sorted(p for p in tmp_path.iterdir() if p.is_file())
    if result.returncode != 0 or artifacts:
        shown = "\n".join(f"{p.name}: {p.read_bytes()[:600]!r}" for p in artifacts)
        pytest.fail(f"fuzz target {name!r} found a problem (exit {result.returncode}); add the "
                    f"input to tests/fuzz/regressions/{name}/ once fixed.\n{shown}\n"
                    f"{result.stderr[-4000:]}", pytrace=False)
    assert "Done" in result.stderr and "stat::number_of_executed_units" in result.stderr
