"""gunicorn's access log with link tokens shortened: a logged URL must not be a working link."""

from __future__ import annotations

import re
from typing import Any

from gunicorn.glogging import Logger

from server.links import redact

TOKEN_PATH = re.compile(r"(/(?:feeds|s|m|book/hold|book/confirmed)/)"
                        r"([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-.]+?)(?=\.ics\b|[/?\s]|$)")


def redact_paths(text: str) -> str:
    return TOKEN_PATH.sub(lambda m: m.group(1) + redact(m.group(2)), text)


class RedactingLogger(Logger):
    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        return {key: redact_paths(value) if isinstance(value, str) else value
                for key, value in atoms.items()}
