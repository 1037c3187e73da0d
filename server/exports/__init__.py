"""Exports of visits, jobs, customers and the audit trail as CSV, NDJSON or iCalendar.

Streamed: rows are read in batches (`yield_per`) and written out as they come, so a
100,000-visit export needs no more memory than a batch. Every export is audited
(`export.run`) before its first byte, as the actor who asked for it.
"""

from __future__ import annotations

from server.exports.base import (
    BATCH,
    ExportRequest,
    Format,
    Kind,
    UnsupportedFormat,
    audit_export,
    media_type,
)
from server.exports.formats import neutralise, stream

__all__ = [
    "BATCH",
    "ExportRequest",
    "Format",
    "Kind",
    "UnsupportedFormat",
    "audit_export",
    "media_type",
    "neutralise",
    "stream",
]
