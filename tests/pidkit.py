"""Which gunicorn worker answered: bursts of concurrent requests, told apart by the access log."""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests
from live import HTTP_TIMEOUT_S, LiveServer

BURST = 8
MAX_BURSTS = 40  # a fast answer lets one worker accept a whole burst: try long enough
PROBES = itertools.count(1)
ACCESS_FORMAT = "%(p)s %(q)s"  # gunicorn writes %(p)s as <pid>


def with_access_log(database_url: str, folder: Path, env: dict[str, str]) -> tuple[LiveServer, str]:
    """A 2-worker live server whose access log names the worker of every request."""
    access_log = str(folder / "access.log")
    server = LiveServer(database_url, folder, env, workers=2,
                        gunicorn_options=("--access-logfile", access_log,
                                          "--access-logformat", ACCESS_FORMAT))
    return server, access_log


@dataclass
class Workers:
    server: LiveServer
    access_log: str

    def pids_of(self, probes: set[int]) -> dict[int, str]:
        found = {}
        with open(self.access_log, encoding="utf-8") as log:
            for line in log:
                match = re.match(r"<(\d+)> .*probe=(\d+)", line)
                if match and int(match.group(2)) in probes:
                    found[int(match.group(2))] = match.group(1)
        return found

    def burst(self, send: Callable[[str], requests.Response],
              answers: dict[int, requests.Response]) -> None:
        probes = [next(PROBES) for _ in range(BURST)]
        threads = [threading.Thread(target=lambda p=p: answers.__setitem__(p, send(f"probe={p}")))
                   for p in probes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(HTTP_TIMEOUT_S)

    def read_on_both(self, send: Callable[[str], requests.Response]) -> list[tuple[str, requests.Response]]:
        """Send concurrent bursts of one request until both workers have answered; every answer."""
        answers: dict[int, requests.Response] = {}
        for _ in range(MAX_BURSTS):
            self.burst(send, answers)
            pids = self.pids_of(set(answers))
            if len(set(pids.values())) >= 2 and len(pids) == len(answers):
                return [(pids[p], answers[p]) for p in sorted(answers)]
        raise AssertionError(f"only one worker answered {len(answers)} requests")
