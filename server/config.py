"""One Settings object, from environment variables and an optional file. Fails closed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from ipaddress import ip_address
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from server.errors import ConfigError

ENV_PREFIX = "FIELDCAL_"
CONFIG_FILE_NAME = "fieldcal.env"


@dataclass(frozen=True)
class Settings:
    instance_path: Path
    database_url: str
    secret_keys: tuple[str, ...] = ()
    base_url: str = "http://127.0.0.1:8000"
    smtp_url: str = ""
    timezone: str = "UTC"
    max_body_bytes: int = 2 * 1024 * 1024
    feed_past_days: int = 30
    feed_future_days: int = 180
    feed_refresh_minutes: int = 60
    feed_max_bytes: int = 900_000
    organizer_email: str = ""
    manage_cutoff_hours: int = 24
    business_phone: str = ""
    booking_rate: int = 20
    mail_from: str = ""
    reminders: str = "24h,2h"
    reminder_scan_seconds: int = 60
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def organizer(self) -> str:
        """The ORGANIZER address of our events: FIELDCAL_ORGANIZER_EMAIL or dispatch@<host>."""
        if self.organizer_email:
            return self.organizer_email
        host = urlsplit(self.base_url).hostname or "localhost"
        try:
            ip_address(host)
        except ValueError:
            return f"dispatch@{host}"
        return "dispatch@localhost"

    @property
    def sender(self) -> str:
        """The From address of our email: FIELDCAL_MAIL_FROM or the organizer address."""
        return self.mail_from or self.organizer

    def require_secret_keys(self) -> tuple[str, ...]:
        """The signing keys, newest first; refuse to go on without one."""
        if not self.secret_keys:
            raise ConfigError(
                "FIELDCAL_SECRET_KEYS is not set. Set it to one or more long random strings "
                "(comma-separated, newest first), e.g. in "
                f"{self.instance_path / CONFIG_FILE_NAME}."
            )
        return self.secret_keys

    def with_overrides(self, **values: Any) -> Settings:
        return replace(self, **values)


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and # comments ignored."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE, got {raw!r}")
        values[key.strip()] = value.strip()
    return values


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment; the instance's fieldcal.env fills in what is unset."""
    env = dict(os.environ if environ is None else environ)
    instance = Path(env.get(f"{ENV_PREFIX}INSTANCE", "instance")).resolve()
    merged = {**read_env_file(instance / CONFIG_FILE_NAME), **env}

    def get(name: str, default: str = "") -> str:
        return merged.get(f"{ENV_PREFIX}{name}", default).strip()

    database_url = get("DATABASE_URL") or f"sqlite:///{instance / 'fieldcal.sqlite3'}"
    keys = tuple(k.strip() for k in get("SECRET_KEYS").split(",") if k.strip())

    def number(name: str, default: int) -> int:
        raw = get(name, str(default))
        try:
            return int(raw)
        except ValueError as exc:
            raise ConfigError(f"{ENV_PREFIX}{name} must be a whole number, not {raw!r}") from exc

    return Settings(
        instance_path=instance,
        database_url=database_url,
        secret_keys=keys,
        base_url=get("BASE_URL", "http://127.0.0.1:8000").rstrip("/"),
        smtp_url=get("SMTP_URL"),
        timezone=get("TIMEZONE", "UTC"),
        max_body_bytes=number("MAX_BODY_BYTES", 2 * 1024 * 1024),
        feed_past_days=number("FEED_PAST_DAYS", 30),
        feed_future_days=number("FEED_FUTURE_DAYS", 180),
        feed_refresh_minutes=number("FEED_REFRESH_MINUTES", 60),
        feed_max_bytes=number("FEED_MAX_BYTES", 900_000),
        organizer_email=get("ORGANIZER_EMAIL"),
        manage_cutoff_hours=number("MANAGE_CUTOFF_HOURS", 24),
        business_phone=get("BUSINESS_PHONE"),
        booking_rate=number("BOOKING_RATE", 20),
        mail_from=get("MAIL_FROM"),
        reminders=get("REMINDERS", "24h,2h"),
        reminder_scan_seconds=number("REMINDER_SCAN_SECONDS", 60),
        extra={k: v for k, v in merged.items() if k.startswith(ENV_PREFIX)},
    )
