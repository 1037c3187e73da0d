"""A many-host fieldcal that starts and stops itself: N app hosts (`fieldcal serve
--no-worker`, each in its own network namespace or on its own loopback address),
M outbox workers (`fieldcal worker`), one scratch PostgreSQL database and HAProxy in
front (deploy/haproxy.cfg from the repo) terminating TLS with a certificate made here.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import httpx
from live import (
    AUDIT_KEY,
    ORGANIZER,
    PG_ADMIN_URL,
    REPO,
    create_postgres_database,
    drop_postgres_database,
    free_port,
)
from netkit import Isolation, Network, Place, make_network, unix_socket_url

from server.vault import Vault

PROXY_CONFIG = REPO / "deploy" / "haproxy.cfg"
STARTUP_TIMEOUT_S = 120.0  # three hosts importing the app at once on a loaded machine
PHONE = "+49 30 555 0100"


def _deploy_module(name: str) -> ModuleType:
    """A script of deploy/ (not a package) as a module."""
    spec = importlib.util.spec_from_file_location(f"deploy_{name}", REPO / "deploy" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost: (PEM of certificate + key for HAProxy, CA file)."""
    bundle, ca = folder / "proxy.pem", folder / "ca.pem"
    _deploy_module("selfsigned").write_self_signed(bundle, ca, days=2)
    return bundle, ca


def backend_config(places: list[Place], port: int) -> str:
    """The `backend fieldcal` section that goes with deploy/haproxy.cfg."""
    lines = ["backend fieldcal", "    balance roundrobin", "    option httpchk GET /healthz",
             "    http-check expect status 200"]
    lines += [f"    server h{i + 1} {p.address}:{port} check" for i, p in enumerate(places)]
    return "\n".join(lines) + "\n"


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float,
                  verify: ssl.SSLContext | bool = True) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: exited with {process.returncode} while starting:\n"
                               f"{tail(log)}")
        try:
            if httpx.get(url, timeout=2, verify=verify).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s:\n{tail(log)}")


def tail(log: Path, lines: int = 40) -> str:
    if not log.exists():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Process:
    """One child (a host, a worker, the proxy), in its own process group."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(self.argv, cwd=REPO, env=self.env, stdout=out,
                                          stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """kill -9, the whole process group (a host's supervisor, gunicorn and its workers)."""
        if self.popen is None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (graceful), then SIGKILL after `timeout`."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        else:
            try:  # anything the group left behind
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@dataclass
class Host:
    process: Process
    place: Place
    port: int

    @property
    def base(self) -> str:
        return f"http://{self.place.address}:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def served(self, needle: str) -> int:
        """Access-log lines naming `needle` (which requests this host answered)."""
        if not self.process.log.exists():
            return 0
        return sum(needle in line for line in self.process.log.read_text(errors="replace").splitlines())


@dataclass
class Topology:
    folder: Path
    host_count: int = 3
    worker_count: int = 2
    web_workers: int = 1  # gunicorn processes per host: 2 cores shared by everything here
    prefer: Isolation = Isolation.NETNS
    env: dict[str, str] = field(default_factory=dict)  # extra settings for hosts and workers
    worker_env: dict[str, str] = field(default_factory=dict)
    database_name: str = ""
    database_url: str = ""  # TCP, as this process and the workers reach it
    hosts: list[Host] = field(default_factory=list)
    workers: list[Process] = field(default_factory=list)
    proxy: Process | None = None
    proxy_port: int = 0
    ca_file: Path | None = None
    network: Network | None = None
    started_in_s: float = 0.0

    @property
    def isolation(self) -> Isolation:
        assert self.network is not None
        return self.network.isolation

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.proxy_port}"

    def url(self, path: str) -> str:
        return self.base + path

    @property
    def verify(self) -> ssl.SSLContext:
        assert self.ca_file is not None
        return ssl.create_default_context(cafile=str(self.ca_file))

    def client(self, source: str | None = None, **options: object) -> httpx.Client:
        """An HTTPS client of the proxy, speaking from loopback address `source` if given."""
        transport = httpx.HTTPTransport(verify=self.verify, local_address=source, retries=0)
        return httpx.Client(base_url=self.base, transport=transport, timeout=30, **options)  # type: ignore[arg-type]

    def _common_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FIELDCAL_")}
        env.update({
            "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
            "FIELDCAL_SECRET_KEYS": self._secret, "FIELDCAL_AUDIT_KEYS": AUDIT_KEY,
            "FIELDCAL_CREDENTIAL_KEYS": self._credentials, "FIELDCAL_BASE_URL": self.base,
            "FIELDCAL_ORGANIZER_EMAIL": ORGANIZER, "FIELDCAL_BUSINESS_PHONE": PHONE,
        })
        env.update(self.env)
        return env

    def start(self) -> None:
        if shutil.which("haproxy") is None:
            raise RuntimeError("haproxy is not installed (./dev test installs it: apt-get install haproxy)")
        self._secret, self._credentials = secrets.token_urlsafe(32), Vault.new_key()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.database_name, self.database_url = create_postgres_database()
        self.proxy_port = free_port()
        self.network = make_network(self.host_count, self.prefer)
        host_database = self.database_url
        if self.network.isolation is Isolation.NETNS:
            over_socket = unix_socket_url(PG_ADMIN_URL, self.database_name)
            if over_socket is None:  # a namespace cannot reach PostgreSQL on loopback
                self.network.close()
                self.network = make_network(self.host_count, Isolation.LOOPBACK)
            else:
                host_database = over_socket
        app_port = 8000 if self.network.isolation is Isolation.NETNS else free_port()
        started = time.monotonic()
        self.hosts = [self._host(i, place, app_port, host_database)
                      for i, place in enumerate(self.network.places)]
        for host in self.hosts:  # all at the same moment: each migrates on start, once between them
            host.process.start()
        for index in range(self.worker_count):
            self.workers.append(self._worker(index))
        for host in self.hosts:
            assert host.process.popen is not None
            _wait_healthy(host.url("/healthz"), host.process.popen, host.process.log,
                          STARTUP_TIMEOUT_S)
        for worker in self.workers:  # once the hosts have migrated the schema
            worker.start()
        self._start_proxy()
        self.started_in_s = time.monotonic() - started

    def _host(self, index: int, place: Place, port: int, database_url: str) -> Host:
        instance = self.folder / f"host{index + 1}"
        instance.mkdir(exist_ok=True)
        env = self._common_env()
        env.update({"FIELDCAL_INSTANCE": str(instance), "FIELDCAL_DATABASE_URL": database_url,
                    "FIELDCAL_TRUSTED_PROXIES": self.network.proxy_trusts if self.network else ""})
        argv = place.command([sys.executable, "-m", "server.cli", "serve", "--no-worker",
                              "--host", place.address, "--port", str(port),
                              "--workers", str(self.web_workers)])
        return Host(Process(f"host{index + 1}", argv, env, instance / "host.log"), place, port)

    def _worker(self, index: int) -> Process:
        instance = self.folder / f"worker{index + 1}"
        instance.mkdir(exist_ok=True)
        env = self._common_env()
        env.update({"FIELDCAL_INSTANCE": str(instance), "FIELDCAL_DATABASE_URL": self.database_url})
        env.update(self.worker_env)
        argv = [sys.executable, "-m", "server.cli", "worker", "--interval", "0.2"]
        return Process(f"worker{index + 1}", argv, env, instance / "worker.log")

    def _start_proxy(self) -> None:
        bundle, self.ca_file = self_signed(self.folder)
        backend = self.folder / "backend.cfg"
        assert self.network is not None
        backend.write_text(backend_config(self.network.places, self.hosts[0].port))
        env = {**os.environ, "FIELDCAL_PROXY_BIND": f"127.0.0.1:{self.proxy_port}",
               "FIELDCAL_PROXY_CERT": str(bundle)}
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(PROXY_CONFIG), "-f", str(backend)],
                               env=env, capture_output=True, text=True, timeout=30)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refused its configuration:\n{check.stdout}{check.stderr}")
        self.proxy = Process("haproxy", ["haproxy", "-db", "-f", str(PROXY_CONFIG), "-f", str(backend)],
                             env, self.folder / "haproxy.log")
        self.proxy.start()
        assert self.proxy.popen is not None
        _wait_healthy(self.url("/healthz"), self.proxy.popen, self.proxy.log, 30, verify=self.verify)

    def restart_host(self, host: Host) -> None:
        host.process.start()
        assert host.process.popen is not None
        _wait_healthy(host.url("/healthz"), host.process.popen, host.process.log, STARTUP_TIMEOUT_S)

    def stop(self) -> None:
        processes = [p for p in [self.proxy, *self.workers, *(h.process for h in self.hosts)]
                     if p is not None and p.running]
        for process in processes:  # all at once, then wait for each
            assert process.popen is not None
            process.popen.send_signal(signal.SIGTERM)
        for process in processes:
            process.stop(timeout=10)
        if self.network is not None:
            self.network.close()
        if self.database_name:
            drop_postgres_database(self.database_name)

    def processes(self) -> list[Process]:
        return [*(h.process for h in self.hosts), *self.workers, *([self.proxy] if self.proxy else [])]

    def keep_logs(self, folder: Path) -> None:
        """Copy every child's log to `folder` (test artefacts)."""
        folder.mkdir(parents=True, exist_ok=True)
        for process in self.processes():
            if process.log.exists():
                shutil.copyfile(process.log, folder / f"{process.name}.log")

    def logs(self) -> str:
        parts = [f"--- {p.name}\n{tail(p.log)}" for p in self.processes()]
        return "\n".join(parts)
