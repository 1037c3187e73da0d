"""A minimal CalDAV client on one http.client connection (reopened when the server closes it)."""

from __future__ import annotations

import base64
import http.client
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from bench.servers import HOST

DAV = "{DAV:}"
CALDAV = "{urn:ietf:params:xml:ns:caldav}"
REQUEST_TIMEOUT_S = 600.0


class BenchError(RuntimeError):
    """A server gave a wrong answer; the benchmark stops rather than time it."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    ms: float

    def text(self) -> str:
        return self.body.decode("utf-8")

    def xml(self) -> ET.Element:
        return ET.fromstring(self.body)

    def responses(self) -> list[ET.Element]:
        return self.xml().findall(f"{DAV}response")

    def sync_token(self) -> str:
        token = self.xml().find(f".//{DAV}sync-token")
        if token is None or not token.text:
            raise BenchError("no sync-token in the response")
        return token.text


class Client:
    def __init__(self, name: str, port: int, login: str, password: str, prefix: str) -> None:
        self.name = name
        self.port = port
        self.prefix = prefix.rstrip("/")
        secret = base64.b64encode(f"{login}:{password}".encode()).decode("ascii")
        self._auth = f"Basic {secret}"
        self._connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
        self.profile_as = ""  # when set, requests ask the profiling wrapper for a profile
        self._profiled = 0

    def path(self, path: str) -> str:
        return f"{self.prefix}{path}"

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, *, expect: tuple[int, ...]) -> Reply:
        all_headers = {"Authorization": self._auth, **(headers or {})}
        if self.profile_as:
            self._profiled += 1
            all_headers["X-Bench-Profile"] = f"{self.profile_as}.{method}.{self._profiled}"
        if body is not None:
            all_headers["Content-Length"] = str(len(body))
        for attempt in (1, 2):
            began = time.perf_counter()
            try:
                self._connection.request(method, self.path(path), body, all_headers)
                response = self._connection.getresponse()
                data = response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # An idle keep-alive connection closed by the server: reopen once.
                self._connection.close()
                if attempt == 2:
                    raise
                continue
            ms = (time.perf_counter() - began) * 1000
            reply = Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                          data, ms)
            if response.will_close:
                self._connection.close()
            if reply.status not in expect:
                raise BenchError(
                    f"{self.name}: {method} {self.path(path)} -> {reply.status} "
                    f"(expected {expect}): {data[:500]!r}")
            return reply
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._connection.close()
