"""What the booking platforms' connectors share: their times, and the mapping of their event
or appointment types to our service types."""

from __future__ import annotations

import datetime as dt

from server.errors import InvalidInput
from server.platforms import Rejected


def parse_time(platform: str, value: object) -> dt.datetime:
    """An ISO 8601 time with its offset (Z, +01:00 or +0100), as UTC."""
    if not isinstance(value, str) or not value:
        raise Rejected(f"{platform}: {value!r} is not a time")
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Rejected(f"{platform}: {value!r} is not a time") from exc
    if moment.tzinfo is None:
        raise Rejected(f"{platform}: {value!r} has no zone")
    return moment.astimezone(dt.UTC)


def parse_mapping(platform: str, setting: str, text: str) -> dict[str, str]:
    """`ID=slug,ID=slug` (an id, or a URI ending in it) → {id: slug}."""
    mapping: dict[str, str] = {}
    for pair in filter(None, (part.strip() for part in text.split(","))):
        key, sep, slug = pair.rpartition("=")
        if not sep or not key.strip() or not slug.strip():
            raise InvalidInput(f"{platform}: {setting} entry {pair!r} must look like TYPE_ID=service-slug")
        mapping[key.strip().rstrip("/").rsplit("/", 1)[-1]] = slug.strip()
    return mapping
