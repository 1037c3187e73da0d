"""gunicorn's threaded worker with a deadline on reading each request.

`fieldcal serve` runs this worker class (`--worker-class
server.web.gunicorn_worker.DeadlineThreadWorker --threads N`). Connections
wait for their first bytes in the worker's poller without a thread (gunicorn
does that); from the first byte of a request on, a thread reads it, and
every read of that request (request line, headers, body) shares one
deadline: gunicorn's `--timeout` seconds. A client that stalls or trickles
holds one thread for at most that long and then gets 408 (the body is read
by `server.web.guards.BodyLimit`) or a closed connection (headers); every
other thread keeps serving. Each send to the client has the same timeout, so
a client that stops reading cannot hold a thread forever either.

In a threaded worker `--timeout` no longer kills workers for a slow request
(the worker's main loop keeps reporting), so it is free to mean this.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from gunicorn.http.errors import NoMoreData
from gunicorn.workers.gthread import TConn, ThreadWorker


class ReadDeadlinePassed(NoMoreData, TimeoutError):
    """The request did not arrive in time.

    A TimeoutError for the app (server.web.guards.BodyLimit answers 408) and,
    while gunicorn reads the headers, gunicorn's "client went away": the
    connection is closed with a debug line instead of an error traceback.
    """

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def __str__(self) -> str:
        return f"the request did not arrive within {self.seconds:g} s"


class DeadlineSocket:
    """A client socket whose reads share one deadline per request; sends have a timeout each.

    Everything else is the wrapped socket's own (fileno for the poller, close, shutdown).
    """

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self._sock = sock
        self._seconds = seconds
        self._blocking = sock.getblocking()
        self._deadline: float | None = None

    def begin_request(self) -> None:
        """The next read starts a new request's deadline."""
        self._deadline = None

    def setblocking(self, flag: bool) -> None:
        self._blocking = flag
        self._sock.setblocking(flag)

    def _arm_read(self) -> None:
        if not self._blocking:
            return
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self._seconds
        remaining = self._deadline - now
        if remaining <= 0:
            raise ReadDeadlinePassed(self._seconds)
        self._sock.settimeout(remaining)

    def _arm_send(self) -> None:
        if self._blocking:
            self._sock.settimeout(self._seconds)

    def recv(self, size: int, flags: int = 0) -> bytes:
        self._arm_read()
        try:
            return self._sock.recv(size, flags)
        except TimeoutError as exc:
            raise ReadDeadlinePassed(self._seconds) from exc

    def recv_into(self, buffer: Any, size: int = 0, flags: int = 0) -> int:
        self._arm_read()
        try:
            return self._sock.recv_into(buffer, size, flags)
        except TimeoutError as exc:
            raise ReadDeadlinePassed(self._seconds) from exc

    def send(self, data: bytes, flags: int = 0) -> int:
        self._arm_send()
        return self._sock.send(data, flags)

    def sendall(self, data: bytes, flags: int = 0) -> None:
        self._arm_send()
        self._sock.sendall(data, flags)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        self._arm_send()
        return self._sock.sendfile(file, offset, count)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class DeadlineThreadWorker(ThreadWorker):
    """gthread, with each connection's socket wrapped in a DeadlineSocket."""

    def enqueue_req(self, conn: TConn) -> None:
        if not isinstance(conn.sock, DeadlineSocket) and not self.cfg.is_ssl:
            conn.sock = DeadlineSocket(conn.sock, float(self.cfg.timeout))  # type: ignore[assignment]  # a socket in all but name
        super().enqueue_req(conn)

    def handle(self, conn: TConn) -> Any:
        if isinstance(conn.sock, DeadlineSocket):
            conn.sock.begin_request()
        return super().handle(conn)
