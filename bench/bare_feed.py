"""A bare WSGI app that returns one file's bytes from memory: the ceiling for the feed path."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any


def create_app() -> Callable[..., Iterable[bytes]]:
    body = open(os.environ["BENCH_FEED_FILE"], "rb").read()
    headers = [("Content-Type", "text/calendar; charset=utf-8"), ("Content-Length", str(len(body))),
               ("ETag", '"bare"')]

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("200 OK", headers)
        return [body]

    return app
