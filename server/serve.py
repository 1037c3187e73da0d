"""`fieldcal serve`: gunicorn (the WSGI app) and the outbox worker, as child processes.

The supervisor forwards SIGTERM/SIGINT to its children and waits for them; if the
web server dies it stops everything; if the worker dies it is restarted (a few
times a minute at most).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from gunicorn.config import Config as GunicornConfig

from server.config import ENV_PREFIX, Settings
from server.web.proxies import TrustedProxies

ROOT = Path(__file__).resolve().parent.parent
GRACE_S = 35.0  # gunicorn's graceful timeout is 30 s
WORKER_CLASS = "server.web.gunicorn_worker.DeadlineThreadWorker"
THREADS_PER_WORKER = 16
REQUEST_READ_S = 30  # gunicorn's --timeout: the deadline for reading one request (and per send)
READY_TIMEOUT_S = 60.0
WORKER_RESTARTS_PER_MINUTE = 5
POLL_S = 0.2


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 2
    worker: bool = True
    trusted_proxies: str = ""  # FIELDCAL_TRUSTED_PROXIES: they may also say the scheme (https)


def app_spec() -> str:
    """The WSGI app: wsgi.py's combined app (Flask + Radicale under /dav), else Flask alone."""
    if (ROOT / "wsgi.py").is_file():
        return "wsgi:create_wsgi_app()"
    return "server.app:create_app()"


def gunicorn_command(options: ServeOptions, extra: tuple[str, ...] = ()) -> list[str]:
    """gunicorn's command line; `extra` options come last (gunicorn lets the last one win)."""
    command = [
        sys.executable, "-m", "gunicorn",
        "--bind", f"{_bind_host(options.host)}:{options.port}",
        "--workers", str(options.workers),
        "--worker-class", WORKER_CLASS,
        "--threads", str(THREADS_PER_WORKER),
        "--timeout", str(REQUEST_READ_S),
        "--pythonpath", str(ROOT),
        "--graceful-timeout", "30",
        "--forwarded-allow-ips", forwarded_allow_ips(options.trusted_proxies),
        "--access-logfile", "-",
        "--logger-class", "server.web.access_log.RedactingLogger",
    ]
    if "control_socket_disable" in GunicornConfig().settings:
        command.append("--no-control-socket")  # one shared per-user socket path otherwise
    return [*command, *extra, app_spec()]


def forwarded_allow_ips(trusted_proxies: str) -> str:
    """Whose X-Forwarded-Proto gunicorn believes: loopback, and the proxies the app trusts for
    the client's address (a proxy on another machine terminates TLS too; without this the
    app would build http:// links behind an https proxy)."""
    proxies = TrustedProxies.parse(trusted_proxies)
    if proxies.hops:
        return "*"  # a fixed number of proxies always stands in front
    return ",".join(["127.0.0.1", "::1", *(str(n) for n in proxies.networks)])


def worker_command() -> list[str]:
    return [sys.executable, "-m", "server.cli", "worker"]


def _bind_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def local_url(options: ServeOptions) -> str:
    host = options.host
    if host in ("0.0.0.0", "::", ""):
        host = lan_address()
    return f"http://{_bind_host(host)}:{options.port}"


def lan_address() -> str:
    """This machine's address on its default route (no packet is sent), else loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def public_url(options: ServeOptions, settings: Settings) -> str:
    """FIELDCAL_BASE_URL if it is set, else where this server listens."""
    if f"{ENV_PREFIX}BASE_URL" in settings.extra:
        return settings.base_url.rstrip("/")
    return local_url(options)


def child_environment(options: ServeOptions, settings: Settings) -> dict[str, str]:
    """Children see the same instance whatever their working directory, and the public URL."""
    return {**os.environ, "FIELDCAL_INSTANCE": str(settings.instance_path),
            f"{ENV_PREFIX}BASE_URL": public_url(options, settings), "PYTHONUNBUFFERED": "1"}


def port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def wait_until_listening(host: str, port: int, process: subprocess.Popen[bytes],
                         stopping: Callable[[], bool]) -> bool:
    target = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None and not stopping():
        try:
            with socket.create_connection((target.strip("[]"), port), timeout=1):
                return True
        except OSError:
            time.sleep(POLL_S)
    return False


class Supervisor:
    def __init__(self, options: ServeOptions, settings: Settings,
                 say: Callable[[str], None] = print) -> None:
        self.options = options
        self.settings = settings
        self.say = say
        self.env = child_environment(options, settings)
        self.stop_signal: int | None = None
        self.web: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.worker_starts: list[float] = []

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum

    def _start_worker(self) -> None:
        self.worker_starts = [t for t in self.worker_starts if time.monotonic() - t < 60]
        self.worker_starts.append(time.monotonic())
        self.worker = subprocess.Popen(worker_command(), env=self.env)

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            return self._run()
        finally:
            self._stop_children()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run(self) -> int:
        options = self.options
        self.web = subprocess.Popen(gunicorn_command(options), env=self.env)
        if options.worker:
            self._start_worker()
        if wait_until_listening(options.host, options.port, self.web, lambda: bool(self.stop_signal)):
            self._announce()
        while self.stop_signal is None:
            code = self.web.poll()
            if code is not None:
                self.say(f"fieldcal: the web server exited with status {code}; stopping.")
                return code or 1
            if self.worker is not None and self.worker.poll() is not None:
                code = self.worker.returncode
                if len(self.worker_starts) >= WORKER_RESTARTS_PER_MINUTE:
                    self.say(f"fieldcal: the outbox worker keeps exiting (status {code}); stopping.")
                    return 1
                time.sleep(1)
                if self.stop_signal is not None:
                    break
                self.say(f"fieldcal: the outbox worker exited with status {code}; restarting it.")
                self._start_worker()
            time.sleep(POLL_S)
        return 0

    def _announce(self) -> None:
        local = local_url(self.options)
        public = self.env[f"{ENV_PREFIX}BASE_URL"]
        worker = f"outbox worker pid {self.worker.pid}" if self.worker else "no outbox worker"
        lines = [
            f"fieldcal is running (gunicorn, {self.options.workers} workers × "
            f"{THREADS_PER_WORKER} threads; {worker}):",
            f"  web:    {local}/",
            f"  CalDAV: {local}/dav/   (clients may also discover it at {local}/.well-known/caldav)",
        ]
        if public != local:
            lines.append(f"  public: {public}/  (FIELDCAL_BASE_URL)")
        lines.append("Press Ctrl-C to stop.")
        self.say("\n".join(lines))

    def _stop_children(self) -> None:
        children = [p for p in (self.web, self.worker) if p is not None and p.poll() is None]
        sig = self.stop_signal or signal.SIGTERM
        for process in children:
            try:
                process.send_signal(sig)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + GRACE_S
        for process in children:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def serve(options: ServeOptions, settings: Settings, say: Callable[[str], None] = print) -> int:
    return Supervisor(options, settings, say).run()
