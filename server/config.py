"""One Settings object, from environment variables and an optional file. Fails closed.

Each setting is declared once, as a field of `Settings` made by `setting(...)`: its
default, its parser and its help (as Radicale declares its configuration schema).
Unknown FIELDCAL_* names are refused with the closest known name suggested.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from ipaddress import ip_address
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from server.errors import ConfigError

ENV_PREFIX = "FIELDCAL_"
CONFIG_FILE_NAME = "fieldcal.env"
SERVED_URL_FILE_NAME = "served-url"  # where `fieldcal serve` last listened (FIELDCAL_BASE_URL unset)
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
SPEC = "fieldcal.setting"
# FIELDCAL_* names read by the developer tools and the test suite, never by the server.
NOT_SETTINGS = frozenset({"FIELDCAL_TEST_POSTGRES_URL", "FIELDCAL_CHROMIUM",
                          "FIELDCAL_UPDATE_TESTER_EXPECTED", "FIELDCAL_TEST_PROCESSES", "FIELDCAL_FUZZ_SEED",
                          "FIELDCAL_FUZZ_SECONDS"})

Parser = Callable[[str], Any]


def _text(raw: str) -> str:
    return raw


def _whole_number(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"must be a whole number, not {raw!r}") from None


def _days(raw: str) -> int:
    days = _whole_number(raw)
    if not 0 <= days <= 3650:
        raise ValueError(f"must be a number of days from 0 to 3650, not {raw!r}")
    return days


def _seconds(raw: str) -> float | None:
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"must be a number of seconds, not {raw!r}") from None


def _comma_list(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _url(raw: str) -> str:
    return raw.rstrip("/")


ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


def _origins(raw: str) -> tuple[str, ...]:
    """Origins that may frame the request form (`https://www.example.com`), comma-separated."""
    origins = tuple(o.strip().rstrip("/") for o in raw.replace(",", " ").split())
    for origin in origins:
        if not ORIGIN.match(origin):
            raise ValueError(f"{origin!r} is not an origin like https://www.example.com")
    return origins


def _addresses(raw: str) -> tuple[str, ...]:
    return tuple(a.strip().lower() for a in raw.split(",") if a.strip())


MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,62}/([a-z0-9][a-z0-9!#$&^_.+-]{0,62}|\*)$")


def _media_types(raw: str) -> tuple[str, ...]:
    """`application/pdf, text/*` → ("application/pdf", "text/*")."""
    found = tuple(t.strip().lower() for t in raw.split(",") if t.strip())
    for kind in found:
        if not MEDIA_TYPE.match(kind):
            raise ValueError(f"{kind!r} is not a media type like application/pdf or text/*")
    return found


def _path(raw: str) -> Path:
    return Path(raw or "instance").resolve()


def _shown(value: Any) -> str:
    """A value as it would be written in fieldcal.env."""
    if value is None:
        return ""
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


DEFAULT_PARSERS: dict[type, Parser] = {str: _text, int: _whole_number, tuple: _comma_list}


@dataclass(frozen=True)
class Spec:
    """How one setting is given: FIELDCAL_<NAME>, parsed from text, explained for people."""

    env: str
    parse: Parser
    help: str
    default_text: str
    secret: bool


def setting(default: Any = MISSING, *, help: str, parse: Parser | None = None, env: str = "",
            default_text: str = "", secret: bool = False) -> Any:
    """Declare a setting as a field of `Settings`: its default, parser and help in one place.

    The variable is FIELDCAL_<FIELD NAME> unless `env` names it; the parser follows the
    default's type (text, whole number, comma-separated list) unless `parse` is given;
    `secret` values are masked by `fieldcal config`.
    """
    if parse is None:
        parse = _text if default is MISSING else DEFAULT_PARSERS[type(default)]
    spec = Spec(env=env, parse=parse, help=help, secret=secret,
                default_text=default_text or ("" if default is MISSING else _shown(default)))
    if default is MISSING:
        return field(metadata={SPEC: spec})
    return field(default=default, metadata={SPEC: spec})


@dataclass(frozen=True)
class Settings:
    """Every setting of fieldcal. Add one as a field declared with `setting(...)` (and a
    line in the README's configuration table); `load_settings` and `fieldcal config`
    follow the declaration."""

    instance_path: Path = setting(env="FIELDCAL_INSTANCE", parse=_path, default_text="./instance",
                                  help="instance folder (SQLite file, fieldcal.env)")
    database_url: str = setting(secret=True, default_text="SQLite in the instance folder",
                                help="sqlite:///path or postgresql://user@host/db")
    secret_keys: tuple[str, ...] = setting((), secret=True,
                                           help="signing keys, comma-separated, newest first")
    audit_keys: tuple[str, ...] = setting((), secret=True, help="audit-trail keys (HMAC-SHA256), "
                                          "comma-separated, newest first; required by serve and writes")
    credential_keys: tuple[str, ...] = setting((), secret=True, help="Fernet keys that encrypt stored "
                                               "platform credentials, comma-separated, newest first")
    trusted_proxies: str = setting("", help="reverse proxies in front: a hop count or addresses/CIDRs; "
                                   "unset: X-Forwarded-For is ignored")
    base_url: str = setting("http://127.0.0.1:8000", parse=_url,
                            help="public URL, used in links and the ORGANIZER address")
    smtp_url: str = setting("", secret=True, help="outgoing mail server (smtp://, smtp+starttls://, "
                            "smtps://); unset: email waits in the outbox")
    timezone: str = setting("UTC", help="the business's time zone")
    max_body_bytes: int = setting(2 * 1024 * 1024, help="largest request body accepted (413 above)")
    feed_past_days: int = setting(30, help="feed window: days before today")
    feed_future_days: int = setting(180, help="feed window: days after today")
    contacts_past_days: int = setting(30, parse=_days, help="technicians' customer address book: customers "
                                      "with a visit since this many days before today")
    contacts_future_days: int = setting(60, parse=_days, help="technicians' customer address book: customers "
                                        "with a visit up to this many days after today")
    feed_refresh_minutes: int = setting(60, help="refresh hint given to feed subscribers")
    feed_max_bytes: int = setting(900_000, help="size cap of one feed")
    organizer_email: str = setting("", help="ORGANIZER of our events (default dispatch@<host>)")
    manage_cutoff_hours: int = setting(24, help="customers may move or cancel until this long before")
    business_phone: str = setting("", help="shown to customers past the cut-off")
    business_email: str = setting("", help="shown to customers past the cut-off (with or instead of phone)")
    booking_rate: int = setting(20, help="booking requests per minute per client address")
    mail_from: str = setting("", help="From address of notification email (default: the organizer)")
    reminders: str = setting("24h,2h", help="reminders before a visit, e.g. 24h,2h; empty: none")
    reminder_scan_seconds: int = setting(60, help="how often the worker looks for due reminders")
    outbox_lease_seconds: int = setting(300, help="how long a worker's claim on an outbox message "
                                        "lasts; a dead worker's claims pass to another after it")
    dav_auth_delay: float | None = setting(None, parse=_seconds, default_text="Radicale's",
                                           help="seconds CalDAV waits after a failed login")
    intake_embed_origins: tuple[str, ...] = setting((), parse=_origins,
                                                    help="origins that may embed the request form")
    intake_rate: int = setting(10, help="request-form posts per hour per client address")
    intake_min_fill_seconds: int = setting(3, help="quicker request forms are taken for robots")
    intake_smtp: str = setting("", help="host:port of the SMTP receiver for service requests by email")
    intake_addresses: tuple[str, ...] = setting((), parse=_addresses, default_text="service@<host>",
                                                help="addresses the SMTP receiver takes mail for")
    intake_lmtp: str = setting("", help="host:port of the LMTP receiver for service requests by email")
    intake_imap_url: str = setting("", secret=True, help="mailbox read for service requests: "
                                   "imaps://user:pass@host[:993][/Folder] or imap:// (STARTTLS)")
    intake_imap_password: str = setting("", secret=True, help="the mailbox's password, if not in the URL")
    intake_imap_ca_file: str = setting("", help="CA certificates (PEM) the IMAP server's certificate "
                                       "is checked against; unset: the system's")
    intake_imap_interval: int = setting(60, help="seconds between looks at the mailbox (also with IDLE)")
    intake_max_message_bytes: int = setting(25 * 1024 * 1024, help="largest email taken in")
    intake_sender_rate: int = setting(20, help="emails per hour per sender that are read")
    intake_attachment_types: tuple[str, ...] = setting((), parse=_media_types, help="non-image "
                                                       "attachment types kept, e.g. application/pdf,text/*")
    export_inline_rows: int = setting(10_000, help="API exports with more rows run in the background "
                                      "(a download link follows)")
    # What was given (FIELDCAL_* name -> text) and where ("env" or the file); not settings.
    extra: Mapping[str, str] = field(default_factory=dict)
    origins: Mapping[str, str] = field(default_factory=dict)

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
    def intake_mailboxes(self) -> tuple[str, ...]:
        """Addresses the SMTP receiver takes mail for: FIELDCAL_INTAKE_ADDRESSES or service@<host>."""
        if self.intake_addresses:
            return self.intake_addresses
        return (f"service@{urlsplit(self.base_url).hostname or 'localhost'}",)

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

    def require_audit_keys(self) -> tuple[str, ...]:
        """The audit trail's keys, newest first; refuse to go on without one (no fallback)."""
        if not self.audit_keys:
            raise ConfigError(
                "FIELDCAL_AUDIT_KEYS is not set. Set it to one or more long random strings "
                "(comma-separated, newest first; keep them out of the database and its backups), "
                f"e.g. in {self.instance_path / CONFIG_FILE_NAME}."
            )
        return self.audit_keys

    def require_business_contact(self) -> None:
        """Customers past the cut-off are told to call or write: refuse to run without a way to."""
        if self.manage_cutoff_hours > 0 and not (self.business_phone or self.business_email):
            raise ConfigError(
                f"Set FIELDCAL_BUSINESS_PHONE or FIELDCAL_BUSINESS_EMAIL (e.g. in "
                f"{self.instance_path / CONFIG_FILE_NAME}): customers whose visit is less than "
                f"FIELDCAL_MANAGE_CUTOFF_HOURS ({self.manage_cutoff_hours}) away must be told "
                "how to reach you. With FIELDCAL_MANAGE_CUTOFF_HOURS=0 neither is needed."
            )

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


def read_served_url(instance: Path) -> str:
    """The address `fieldcal serve` last announced for this instance, or ""."""
    try:
        text = (instance / SERVED_URL_FILE_NAME).read_text(encoding="utf-8").strip()
    except OSError:
        return ""
    return text if urlsplit(text).scheme in ("http", "https") else ""


def write_served_url(instance: Path, url: str) -> Path:
    """Remember where the server listens, so that links printed by the CLI point there."""
    path = instance / SERVED_URL_FILE_NAME
    path.write_text(url.rstrip("/") + "\n", encoding="utf-8")
    return path


def declared() -> list[tuple[str, Spec]]:
    """The schema: (attribute name, spec) of every setting, in declaration order."""
    found = []
    for item in fields(Settings):
        spec = item.metadata.get(SPEC)
        if isinstance(spec, Spec):
            found.append((item.name, replace(spec, env=spec.env or f"{ENV_PREFIX}{item.name.upper()}")))
    return found


def known_names() -> list[str]:
    return [spec.env for _, spec in declared()]


def refuse_unknown(names: Iterable[str], where: str) -> None:
    """An unknown FIELDCAL_* name is a typo until proven otherwise: refuse to start."""
    known = known_names()
    for name in sorted(names):
        if not name.startswith(ENV_PREFIX) or name in known or name in NOT_SETTINGS:
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else f"; known settings: {', '.join(known)}"
        raise ConfigError(f"unknown setting {name} ({where}){hint}")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment; the instance's fieldcal.env fills in what is unset."""
    env = dict(os.environ if environ is None else environ)
    instance = _path(env.get(f"{ENV_PREFIX}INSTANCE", "instance").strip())
    env_file = instance / CONFIG_FILE_NAME
    from_file = read_env_file(env_file)
    refuse_unknown(env, "in the environment")
    refuse_unknown(from_file, f"in {env_file}")
    merged = {**from_file, **env}
    given = {k: v for k, v in merged.items() if k.startswith(ENV_PREFIX) and k not in NOT_SETTINGS}
    values: dict[str, Any] = {"instance_path": instance}
    for name, spec in declared():
        raw = given.get(spec.env)
        if name == "instance_path" or raw is None:
            continue
        try:
            values[name] = spec.parse(raw.strip())
        except ValueError as exc:
            raise ConfigError(f"{spec.env} {exc}") from exc
    if "base_url" not in values:
        values["base_url"] = _url(read_served_url(instance) or DEFAULT_BASE_URL)
    if not values.get("database_url"):
        values["database_url"] = f"sqlite:///{instance / 'fieldcal.sqlite3'}"
    origins = {k: "env" if k in env else str(env_file) for k in given}
    return Settings(**values, extra=given, origins=origins)


def _masked(value: Any) -> str:
    """A secret for display: a URL keeps all but its password; anything else is starred."""
    if isinstance(value, tuple):
        return ",".join("***" for _ in value)
    text = _shown(value)
    parts = urlsplit(text)
    if "://" in text:
        if parts.password is None:
            return text
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
    return "***" if text else ""


def effective(settings: Settings) -> list[dict[str, str]]:
    """Every setting's value (secrets masked), where it came from, its default, what it does."""
    rows = []
    for name, spec in declared():
        value = getattr(settings, name)
        rows.append({
            "name": spec.env,
            "value": _masked(value) if spec.secret else _shown(value),
            "source": settings.origins.get(spec.env, "default"),
            "default": spec.default_text,
            "help": spec.help,
        })
    return rows
