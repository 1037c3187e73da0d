"""Where the hosts of a test topology live: network namespaces joined by veth pairs, or
separate loopback addresses when namespaces cannot be made (not root, no `ip netns`,
or a PostgreSQL that a namespace cannot reach through its Unix socket)."""

from __future__ import annotations

import enum
import ipaddress
import os
import random
import secrets
import shutil
import subprocess
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

SUBNET = ipaddress.ip_network("172.31.0.0/16")  # one /30 per host is carved out of it


class Isolation(enum.StrEnum):
    NETNS = "netns"  # each host in its own network namespace, reached over a veth pair
    LOOPBACK = "loopback"  # each host on its own 127.0.0.x address


@dataclass(frozen=True)
class Place:
    """Where one host listens, and how the proxy reaches it."""

    address: str  # the host binds here
    proxy_side: str  # the address the proxy's connections come from
    netns: str | None = None

    def command(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def unix_socket_url(admin_url: str, database: str) -> str | None:
    """The database's URL over PostgreSQL's Unix socket, if the server has one here."""
    with psycopg.connect(admin_url, connect_timeout=5) as connection:
        row = connection.execute("SHOW unix_socket_directories").fetchone()
        port = connection.execute("SHOW port").fetchone()
    folders = [f.strip() for f in str(row[0] if row else "").split(",") if f.strip()]
    for folder in folders:
        if Path(folder, f".s.PGSQL.{port[0] if port else 5432}").exists():
            user = urllib.parse.urlsplit(admin_url).username or "postgres"
            return f"postgresql://{user}@/{database}?host={urllib.parse.quote(folder)}"
    return None


@dataclass
class Network:
    """The places of `count` hosts; `close()` removes what was made."""

    isolation: Isolation
    places: list[Place]
    proxy_trusts: str  # FIELDCAL_TRUSTED_PROXIES for the hosts
    _namespaces: list[str] = field(default_factory=list)

    def close(self) -> None:
        for name in self._namespaces:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
        self._namespaces.clear()


def _free_block() -> ipaddress.IPv4Network:
    taken = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True,
                           timeout=10).stdout
    for _ in range(50):
        block = ipaddress.ip_network(f"172.31.{random.randrange(1, 255)}.0/24")
        if f" {str(block.network_address).rsplit('.', 1)[0]}." not in taken:
            return block  # type: ignore[return-value]
    raise RuntimeError("no free 172.31.x.0/24 block for the test namespaces")


def namespaces(count: int) -> Network:
    """`count` namespaces, each with a veth pair to this one (a /30 each)."""
    block = _free_block()
    tag = secrets.token_hex(3)
    network = Network(Isolation.NETNS, [], proxy_trusts=str(block))
    try:
        for index in range(count):
            name = f"fc{tag}h{index + 1}"
            outside, inside = f"{name}a", f"{name}b"
            base = int(block.network_address) + 4 * index
            near, far = str(ipaddress.ip_address(base + 1)), str(ipaddress.ip_address(base + 2))
            _ip("netns", "add", name)
            network._namespaces.append(name)
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", name)
            _ip("addr", "add", f"{near}/30", "dev", outside)
            _ip("link", "set", outside, "up")
            _ip("-n", name, "addr", "add", f"{far}/30", "dev", inside)
            _ip("-n", name, "link", "set", inside, "up")
            _ip("-n", name, "link", "set", "lo", "up")
            network.places.append(Place(far, near, name))
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
        network.close()
        raise
    return network


def loopback_addresses(count: int) -> Network:
    """127.0.0.2, 127.0.0.3, ...: the proxy connects from 127.0.0.1."""
    places = [Place(f"127.0.0.{index + 2}", "127.0.0.1") for index in range(count)]
    return Network(Isolation.LOOPBACK, places, proxy_trusts="127.0.0.1/32")


def can_use_namespaces() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


def make_network(count: int, prefer: Isolation = Isolation.NETNS) -> Network:
    """Namespaces when possible (and preferred), else loopback addresses."""
    if prefer is Isolation.NETNS and can_use_namespaces():
        try:
            return namespaces(count)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, RuntimeError):
            pass
    return loopback_addresses(count)
