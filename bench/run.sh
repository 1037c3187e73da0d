#!/usr/bin/env bash
# Side-by-side CalDAV benchmark: stock Radicale vs fieldcal. Usage: bench/run.sh [--quick] [--help]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
work="$repo/bench/.work"
mkdir -p "$work"

stop_servers() {
    # Normally the harness stops its servers itself; this catches a harness that was killed.
    local pidfile pid
    for pidfile in "$work"/n*/*.pid; do
        [ -e "$pidfile" ] || continue
        pid="$(cat "$pidfile")"
        kill -TERM -- "-$pid" 2>/dev/null || true
        sleep 1
        kill -KILL -- "-$pid" 2>/dev/null || true
        rm -f "$pidfile"
    done
}
trap stop_servers EXIT

cd "$repo"
timeout --signal=TERM --kill-after=30 "${BENCH_TIMEOUT_S:-3600}" "$python" -m bench.main "$@"
