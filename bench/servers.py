"""gunicorn servers on loopback: start with identical settings, find workers, read memory, stop."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class GunicornSettings:
    workers: int = 2
    timeout_s: int = 600  # a cold 10,000-item stock Radicale request must not be killed

    def arguments(self, port: int) -> list[str]:
        return ["--workers", str(self.workers), "--bind", f"{HOST}:{port}",
                "--timeout", str(self.timeout_s), "--graceful-timeout", "5"]


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    workers: int
    stopped: bool = field(default=False)

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    def worker_pids(self) -> list[int]:
        return children_of(self.process.pid)

    def peak_rss_kib(self) -> dict[int, int]:
        """VmHWM (peak resident set) of each worker, in KiB."""
        return {pid: _status_field(pid, "VmHWM") for pid in self.worker_pids()}

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                _signal_group(self.process.pid, signal.SIGKILL)
                self.process.wait(STOP_TIMEOUT_S)
        self.log_path.with_suffix(".pid").unlink(missing_ok=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def start(
    name: str,
    app: str,
    env: Mapping[str, str],
    settings: GunicornSettings,
    log_path: Path,
    *,
    port: int,
    cwd: Path,
    ready_path: str = "/",
    workers: int | None = None,
) -> Server:
    """Start `gunicorn app` and wait until every worker is up and a request is answered."""
    count = settings.workers if workers is None else workers
    arguments = GunicornSettings(count, settings.timeout_s).arguments(port)
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", *arguments, app],
        cwd=cwd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    log_path.with_suffix(".pid").write_text(f"{process.pid}\n")
    server = Server(name, port, process, log_path, count)
    try:
        _wait_ready(server, ready_path)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: Server, path: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.name} exited at start; see {server.log_path}:\n"
                               + server.log_path.read_text(errors="replace")[-3000:])
        if len(server.worker_pids()) >= server.workers and _answers(server.port, path):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} did not become ready in {START_TIMEOUT_S:.0f} s; "
                       f"see {server.log_path}")


def _answers(port: int, path: str) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        connection.request("OPTIONS", path)
        connection.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        connection.close()


def children_of(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in children.read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def _status_field(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise LookupError(f"{name} not in /proc/{pid}/status")


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def stop_all(servers: Sequence[Server]) -> None:
    for server in servers:
        server.stop()
