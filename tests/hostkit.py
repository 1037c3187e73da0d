"""Clients of a many-host topology: a change-stream reader, a retrying load, a slow SMTP inbox."""

from __future__ import annotations

import asyncio
import json
import queue
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from mailkit import Inbox, SmtpServer
from topology import Topology

STREAM = "/api/v1/changes/stream"


@dataclass(frozen=True)
class Arrival:
    id: int
    data: dict[str, Any]
    at: float  # time.monotonic() when its last line arrived


class StreamReader:
    """Follows a change stream in a thread; arrivals go to a queue."""

    def __init__(self, client: httpx.Client, url: str, headers: dict[str, str], after: int) -> None:
        self.arrivals: queue.Queue[Arrival] = queue.Queue()
        self.status = 0
        self._client, self._url, self._after = client, url, after
        self._headers = headers
        self._opened = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StreamReader:
        self._thread.start()
        assert self._opened.wait(30), "the stream did not open"
        assert self.status == 200, f"the stream answered {self.status}"
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._client.close()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            with self._client.stream("GET", self._url, params={"after": str(self._after)},
                                     headers=self._headers, timeout=httpx.Timeout(10, read=70)) as answer:
                self.status = answer.status_code
                self._opened.set()
                current: dict[str, Any] = {}
                for line in answer.iter_lines():
                    if self._stop.is_set():
                        return
                    if not line:
                        if "id" in current:
                            self.arrivals.put(Arrival(current["id"], current["data"], time.monotonic()))
                        current = {}
                    elif line.startswith("id: "):
                        current["id"] = int(line[4:])
                    elif line.startswith("data: "):
                        current["data"] = json.loads(line[6:])
        except (httpx.HTTPError, RuntimeError):
            self._opened.set()

    def until(self, kind: str, entity_id: str, timeout: float) -> tuple[Arrival, list[Arrival]]:
        """The arrival naming (kind, id), and every arrival up to it."""
        seen: list[Arrival] = []
        deadline = time.monotonic() + timeout
        while True:
            arrival = self.arrivals.get(timeout=max(0.01, deadline - time.monotonic()))
            seen.append(arrival)
            resource = arrival.data["resource"]
            if resource["kind"] == kind and resource["id"] == entity_id:
                return arrival, seen


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


@dataclass
class Load:
    """Clients that read and create through the proxy, retrying what failed as a careful client
    would: reads again, creations again with the same Idempotency-Key."""

    topology: Topology
    reader: dict[str, str]
    writer: dict[str, str]
    tag: str = field(default_factory=lambda: secrets.token_hex(4))
    first_try_failures: Counter[str] = field(default_factory=Counter)
    gave_up: list[str] = field(default_factory=list)
    created: dict[str, int] = field(default_factory=dict)  # idempotency key -> customer id
    reads: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _send(self, client: httpx.Client, method: str, path: str, headers: dict[str, str],
              body: dict[str, str] | None, expected: int) -> httpx.Response | None:
        for attempt in range(40):
            try:
                answer = client.request(method, path, headers=headers, json=body)
            except httpx.TransportError as exc:
                failure = type(exc).__name__
            else:
                if answer.status_code == expected:
                    return answer
                failure = str(answer.status_code)
            if attempt == 0:
                with self._lock:
                    self.first_try_failures[f"{method} {failure}"] += 1
            time.sleep(0.25)
        return None

    def _client_loop(self, number: int, stop: threading.Event) -> None:
        with self.topology.client(source=f"127.0.5.{number + 1}") as client:
            sequence = 0
            while not stop.is_set():
                sequence += 1
                if sequence % 2:
                    if self._send(client, "GET", "/api/v1/customers?limit=5", self.reader, None, 200):
                        with self._lock:
                            self.reads += 1
                    else:
                        self.gave_up.append(f"GET by client {number}")
                    continue
                key = f"{self.tag}-{number}-{sequence}"
                answer = self._send(client, "POST", "/api/v1/customers",
                                    {**self.writer, "Idempotency-Key": key},
                                    {"name": f"Load {key}", "email": f"{key}@load.example.test"}, 201)
                if answer is None:
                    self.gave_up.append(f"POST {key}")
                else:
                    with self._lock:
                        self.created[key] = int(answer.json()["id"])

    def run(self, clients: int, seconds: float, during: Any = None, at: float = 0.0) -> None:
        """`clients` loops for `seconds`; `during()` is called `at` seconds in (in this thread)."""
        stop = threading.Event()
        threads = [threading.Thread(target=self._client_loop, args=(i, stop), daemon=True)
                   for i in range(clients)]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        if during is not None:
            time.sleep(at)
            during()
        time.sleep(max(0.0, seconds - (time.monotonic() - started)))
        stop.set()
        for thread in threads:
            thread.join(timeout=60)


class SlowInbox(Inbox):
    """An SMTP inbox that takes `delay` seconds over every message (deliveries overlap a kill)."""

    delay = 0.05

    def __init__(self) -> None:
        super().__init__()
        self.transactions: Counter[str] = Counter()  # Message-ID -> SMTP transactions carrying it

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.delay)
        answer = await super().handle_DATA(server, session, envelope)
        with self.lock:
            self.transactions[str(self.received[-1][1]["Message-ID"])] += 1
        return answer

    def message_ids(self) -> Counter[str]:
        with self.lock:
            return Counter(self.transactions)


def slow_smtp() -> tuple[SmtpServer, SlowInbox]:
    server = SmtpServer()
    inbox = SlowInbox()
    server.inbox = inbox
    server.start()
    return server, inbox
