"""The client's real address behind reverse proxies (FIELDCAL_TRUSTED_PROXIES).

Unset: X-Forwarded-For is ignored and the peer's address is the client's, so a
client cannot choose the address it is counted under. A number N: exactly N
proxies stand in front (werkzeug's ProxyFix rule: the N-th address from the right
of X-Forwarded-For). CIDRs: the peer and each hop from the right that lies in one
of them is a proxy; the first address outside them is the client.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Any

from server.errors import ConfigError
from server.web.guards import StartResponse, WSGIApp

PEER_KEY = "fieldcal.peer_addr"
MAX_HOPS = 32


@dataclass(frozen=True)
class TrustedProxies:
    hops: int = 0
    networks: tuple[IPv4Network | IPv6Network, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.hops or self.networks)

    @classmethod
    def parse(cls, value: str) -> TrustedProxies:
        value = value.strip()
        if not value:
            return cls()
        if value.isdigit():
            hops = int(value)
            if not 0 <= hops <= MAX_HOPS:
                raise ConfigError(f"FIELDCAL_TRUSTED_PROXIES: at most {MAX_HOPS} proxy hops.")
            return cls(hops=hops)
        networks = []
        for part in (p.strip() for p in value.split(",")):
            try:
                networks.append(ip_network(part, strict=False))
            except ValueError as exc:
                raise ConfigError(
                    f"FIELDCAL_TRUSTED_PROXIES must be a number of proxy hops or comma-separated "
                    f"addresses/CIDRs; {part!r} is neither.") from exc
        return cls(networks=tuple(networks))

    def _trusted(self, address: str) -> bool:
        try:
            parsed = ip_address(address)
        except ValueError:
            return False
        return any(parsed in network for network in self.networks)

    def client(self, peer: str, forwarded_for: Iterable[str]) -> str:
        """The client's address given the peer and the X-Forwarded-For chain (left to right)."""
        chain = [a.strip() for a in forwarded_for if a.strip()]
        if self.hops:
            return chain[-self.hops] if len(chain) >= self.hops else peer
        if not self.networks or not self._trusted(peer):
            return peer
        for hop in reversed(chain):
            if not self._trusted(hop):
                return hop if _is_address(hop) else peer
        return chain[0] if chain else peer


def _is_address(value: str) -> bool:
    try:
        ip_address(value)
    except ValueError:
        return False
    return True


class ClientAddress:
    """WSGI middleware: REMOTE_ADDR becomes the client's address; the peer is kept aside."""

    def __init__(self, app: WSGIApp, proxies: TrustedProxies) -> None:
        self.app = app
        self.proxies = proxies

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Any:
        peer = environ.get("REMOTE_ADDR", "")
        environ[PEER_KEY] = peer
        if self.proxies.enabled:
            header = environ.get("HTTP_X_FORWARDED_FOR", "")
            environ["REMOTE_ADDR"] = self.proxies.client(peer, header.split(","))
        return self.app(environ, start_response)
