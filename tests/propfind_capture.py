"""Capture the PROPFIND bodies of the `caldav` library and vdirsyncer (tests/data/propfind/).

Runs the composed app on a scratch SQLite database behind wsgiref on 127.0.0.1,
lets both clients discover and list a calendar, and writes each distinct
PROPFIND body they sent as `<client>-<n>.xml` with its Depth in a comment:
`PYTHONPATH=$PWD python tests/propfind_capture.py`.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

sys.path.insert(0, str(Path(__file__).parent))

from conftest import use_audit_key
from seeding import seed_base
from test_radicale_plugin import load_wsgi, settings_for

OUT = Path(__file__).parent / "data" / "propfind"
SEEN: list[tuple[str, bytes]] = []


class Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


def capturing(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] == "PROPFIND":
            import io
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            SEEN.append((environ.get("HTTP_DEPTH", ""), body))
        return app(environ, start_response)
    return wrapped


def run_clients(url: str, login: str, password: str) -> None:
    from caldav.davclient import DAVClient
    from vdirsyncer.storage.dav import CalDAVStorage

    SEEN.clear()
    client = DAVClient(url=url, username=login, password=password)
    for calendar in client.principal().calendars():
        calendar.get_display_name()
        calendar.children()
    write("caldav")

    async def vdirsyncer() -> None:
        import aiohttp
        async with aiohttp.ClientSession() as session:
            async for config in CalDAVStorage.discover(url=url, username=login, password=password,
                                                        connector=session.connector):
                storage = CalDAVStorage(**{"connector": session.connector, **config})
                async for _ in storage.list():
                    pass
    SEEN.clear()
    asyncio.run(vdirsyncer())
    write("vdirsyncer")


def write(client: str) -> None:
    distinct = list(dict.fromkeys(SEEN))
    for number, (depth, body) in enumerate(distinct, 1):
        text = body.decode("utf-8").strip()
        (OUT / f"{client}-{number}.xml").write_text(
            f"{text}\n<!-- captured from {client}, Depth: {depth or '(none)'} -->\n")


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    url = f"sqlite:///{folder / 'capture.sqlite3'}"
    use_audit_key(url)
    seed = seed_base(url)
    app = load_wsgi().create_wsgi_app(settings_for(url, folder))
    server = make_server("127.0.0.1", 0, capturing(app), handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    alice = seed.technicians["alice"]
    try:
        run_clients(f"http://127.0.0.1:{server.server_port}/dav/", alice.login, alice.password)
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
