"""Link tokens never reach a log whole: a logged URL or token must not be a working link.

Two layers:
- `RedactingLogger` (gunicorn's --logger-class) shortens tokens in the access
  log's atoms and puts `RedactTokens` on gunicorn's error and access logs
  ("Error handling request /feeds/<token>.ics").
- `RedactTokens` is a logging filter that rewrites a record's message, its
  formatted traceback and stack before any handler sees them;
  `install_redaction` puts it on Flask's app logger ("Exception on
  /m/<token>/reschedule"), the root logger, its handlers and logging's
  last-resort handler, so records of every other logger are covered too.

What counts as a token: the path segment after /feeds/, /s/, /m/, /d/, /book/hold/
and /book/confirmed/ (whatever its spelling), and anything shaped like an
itsdangerous timed token (payload.timestamp.signature) anywhere in the text.
"""

from __future__ import annotations

import logging
import re
from collections.abc import MutableMapping
from typing import Any

from gunicorn.config import Config
from gunicorn.glogging import Logger

from server.links import redact

TOKEN_PATH = re.compile(r"(/(?:feeds|s|m|d|book/hold|book/confirmed)/)"
                        r"([^/?#\s\"'<>]+?)(?=\.ics\b|[/?#\s\"'<>]|$)")
TOKEN_SHAPE = re.compile(r"(?<![A-Za-z0-9_\-.])"
                         r"(\.?[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]{4,12}\.[A-Za-z0-9_\-]{20,})")


def redact_paths(text: str) -> str:
    """`text` with every link token in a URL path shortened."""
    return TOKEN_PATH.sub(lambda m: m.group(1) + redact(m.group(2)), text)


def redact_text(text: str) -> str:
    """`text` with link tokens shortened, in URL paths and standing alone."""
    return TOKEN_SHAPE.sub(lambda m: redact(m.group(1)), redact_paths(text))


class RedactTokens(logging.Filter):
    """Shortens tokens in a record's message, traceback and stack; never drops a record."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_text(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def _add_filter(target: logging.Logger | logging.Handler) -> None:
    if not any(isinstance(f, RedactTokens) for f in target.filters):
        target.addFilter(RedactTokens())


def install_redaction(*loggers: logging.Logger) -> None:
    """Put RedactTokens on these loggers and their handlers, and on the root and last-resort ones."""
    root = logging.getLogger()
    targets: list[logging.Logger | logging.Handler] = [root, *root.handlers]
    for logger in loggers:
        targets += [logger, *logger.handlers]
    if logging.lastResort is not None:
        targets.append(logging.lastResort)
    for target in targets:
        _add_filter(target)


class RedactingLogger(Logger):
    def setup(self, cfg: Config) -> None:
        super().setup(cfg)
        install_redaction(self.error_log, self.access_log)

    def atoms(  # type: ignore[override]  # the stubs' return type is a TypedDict gunicorn keeps private
        self, resp: Any, req: Any, environ: MutableMapping[str, Any], request_time: Any
    ) -> dict[str, Any]:
        atoms = super().atoms(resp, req, environ, request_time)
        return {key: redact_paths(value) if isinstance(value, str) else value
                for key, value in atoms.items()}
