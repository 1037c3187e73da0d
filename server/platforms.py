"""The connector interface: what a platform plugin implements, and how it is found.

Connectors live in `plugins/platforms/` and are published under the entry point group
`fieldcal.platforms` (name = platform name, value = the Connector subclass), so the core
never imports them. A connector turns a `Visit` into the platform's own object (create,
update, cancel), may look an object up by our UID (so a retry after a timeout finds what
the first try created), and may verify and read the platform's inbound webhooks.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import ClassVar

from server.errors import FieldcalError, InvalidInput

ENTRY_POINT_GROUP = "fieldcal.platforms"


class Op(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    CANCEL = "cancel"


@dataclass(frozen=True)
class Visit:
    """A visit as every platform sees it: times in UTC plus the technician's zone."""

    appointment_id: int
    uid: str
    sequence: int
    action: str  # the change that caused this push, e.g. "appointment.book"
    status: str  # tentative | confirmed | cancelled
    job_status: str
    job_id: int
    title: str
    description: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    timezone: str
    location: str
    customer_id: int
    customer_name: str
    customer_email: str
    customer_phone: str
    technician_login: str
    technician_name: str
    technician_email: str
    team_slugs: tuple[str, ...] = ()
    url: str = ""
    remote: bool = False
    note: str = ""  # a word for the technician, e.g. why a move made on the platform was undone


@dataclass(frozen=True)
class Remote:
    """What a push made on the platform: its id there and, for a meeting, the join link."""

    id: str
    join_url: str = ""


@dataclass(frozen=True)
class Inbound:
    """An inbound webhook request as received: raw body bytes and headers."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    query: Mapping[str, str] = field(default_factory=dict)
    url: str = ""

    def header(self, name: str) -> str:
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return ""


@dataclass(frozen=True)
class InboundBooking:
    """A booking made on a platform, as the core books it: `key` is the platform's own id for
    it (the same key never books twice; a later one with other times moves the visit)."""

    key: str
    starts_at: dt.datetime  # UTC
    ends_at: dt.datetime
    name: str
    email: str
    phone: str = ""
    timezone: str = "UTC"  # the customer's
    address: str = ""  # the service address, "" when the booking named none
    service_slug: str = ""  # our service type, mapped from the platform's event type
    title: str = ""
    notes: str = ""


@dataclass(frozen=True)
class InboundCancel:
    """A booking cancelled on the platform (by the platform's `key` for it)."""

    key: str
    reason: str = ""


@dataclass(frozen=True)
class Reply:
    """What we answer a platform's inbound request with, and what the core is to apply."""

    status: int = 200
    body: str = ""
    content_type: str = "text/plain; charset=utf-8"
    pull: bool = False  # the platform says something changed: read it back
    bookings: tuple[InboundBooking | InboundCancel, ...] = ()  # booked/moved/cancelled there
    changes: tuple[RemoteChange, ...] = ()  # our visits as the platform now holds them (read back)


class PlatformError(FieldcalError):
    """A platform call failed; the subclass says whether retrying can help."""

    status = 502


class Transient(PlatformError):
    """A timeout, a 5xx, a dropped connection: retried with backoff."""


class RateLimited(PlatformError):
    """HTTP 429: retried after `retry_after` seconds, not counted toward dead-lettering."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthExpired(PlatformError):
    """The platform refused our credentials (401/invalid_grant). `refused_token` names the
    access token it refused, when a refresh might help."""

    def __init__(self, message: str, refused_token: str | None = None) -> None:
        super().__init__(message)
        self.refused_token = refused_token


class Rejected(PlatformError):
    """The platform refused the request itself (4xx): retrying the same request cannot help."""


class InvalidSignature(FieldcalError):
    """An inbound request is not signed by the platform (or is stale): answered 401."""

    status = 401


@dataclass(frozen=True)
class Config:
    """An integration as its connector sees it: decrypted secrets, never logged."""

    integration_id: int
    name: str
    settings: Mapping[str, str]
    secrets: Mapping[str, str] = field(repr=False)
    base_url: str = ""

    def setting(self, key: str, default: str = "") -> str:
        return str(self.settings.get(key, default) or default)

    def secret(self, key: str) -> str:
        value = self.secrets.get(key, "")
        if not value:
            raise AuthExpired(f"the integration has no {key!r} secret; set it with "
                              f"`fieldcal integration add ... --secret {key}=...`")
        return value


class Grant(enum.StrEnum):
    """How an integration gets its access token."""

    AUTHORIZATION_CODE = "authorization_code"  # a person signs in once; refreshed with a refresh token
    CLIENT_CREDENTIALS = "client_credentials"  # the client id and secret ask for a new token (no person)


@dataclass(frozen=True)
class OAuth:
    """A platform's OAuth 2.0 endpoints (overridable per integration with the `auth_url` and
    `token_url` settings, e.g. for a sovereign cloud or a test double)."""

    authorize_url: str
    token_url: str
    scopes: tuple[str, ...]
    pkce: bool = True
    extra_authorize: tuple[tuple[str, str], ...] = ()
    grant: Grant = Grant.AUTHORIZATION_CODE


@dataclass(frozen=True)
class RemoteChange:
    """A change read back from a platform: an object of ours moved, or deleted there."""

    remote_id: str
    uid: str
    starts_at: dt.datetime | None
    ends_at: dt.datetime | None
    deleted: bool = False


@dataclass(frozen=True)
class Listed:
    """One object of ours as the platform holds it now (for reconciling)."""

    remote_id: str
    uid: str
    starts_at: dt.datetime | None
    ends_at: dt.datetime | None


@dataclass(frozen=True)
class Pulled:
    changes: tuple[RemoteChange, ...]
    cursor: str  # the platform's sync token / delta link for next time
    full: bool = False  # a full resync (the old cursor expired)


class Connector:
    """Base of every platform connector. Subclasses set the class attributes and override
    what the platform supports; `push` is required, the rest optional."""

    name: ClassVar[str]
    default_base_url: ClassVar[str]
    required_settings: ClassVar[frozenset[str]] = frozenset()
    optional_settings: ClassVar[frozenset[str]] = frozenset()
    secret_names: ClassVar[frozenset[str]] = frozenset()
    keeps_objects: ClassVar[bool] = True  # False: each change is a message (Slack), no external ref
    alerts: ClassVar[bool] = False  # True: dispatch's alerts (dead letters, reconnects) go here too
    oauth: ClassVar[OAuth | None] = None
    pushes: ClassVar[bool] = True  # False: only takes bookings in (Calendly); never sent visits
    listing: ClassVar[bool] = False  # True: `list_objects` lists what carries our UIDs (reconcile)

    def __init__(self, config: Config, timeout: float = 10.0) -> None:
        self.config = config
        self.base_url = (config.base_url or config.setting("base_url") or self.default_base_url).rstrip("/")
        self.timeout = timeout

    @classmethod
    def validate_settings(cls, settings: Mapping[str, str], secrets: Mapping[str, str]) -> None:
        known = cls.required_settings | cls.optional_settings | {"base_url"}
        if cls.oauth is not None:
            known |= {"auth_url", "token_url"}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise InvalidInput(f"{cls.name} has no setting {', '.join(unknown)}; "
                               f"known: {', '.join(sorted(known))}")
        missing = sorted(cls.required_settings - set(settings))
        if missing:
            raise InvalidInput(f"{cls.name} needs --set {'=... --set '.join(missing)}=...")
        strange = sorted(set(secrets) - cls.secret_names)
        if strange:
            raise InvalidInput(f"{cls.name} has no secret {', '.join(strange)}; "
                               f"known: {', '.join(sorted(cls.secret_names)) or 'none'}")

    @classmethod
    def takes_pushes(cls, settings: Mapping[str, str]) -> bool:
        """Whether an integration with these settings is sent our visits."""
        return cls.pushes

    def push(self, op: Op, visit: Visit, remote_id: str | None) -> Remote | None:
        """Create, update or cancel the platform's object; returns it (None: nothing kept)."""
        raise NotImplementedError

    def alert(self, text: str, url: str) -> None:
        """Tell dispatch something needs a person (only where `alerts` is True)."""
        raise Rejected(f"{self.name} takes no alerts")

    def find(self, visit: Visit) -> str | None:
        """The id of the object that carries our UID, if the platform can search for it."""
        return None

    def list_objects(self, since: dt.datetime) -> list[Listed]:
        """Every live object that carries one of our UIDs and ends after `since`."""
        raise Rejected(f"{self.name} cannot list its objects")

    def pull(self, cursor: str) -> Pulled:
        """Changes made on the platform since `cursor` ("" = start)."""
        raise Rejected(f"{self.name} does not read changes back")

    def check(self) -> str:
        """A cheap authenticated call; returns a line saying what was reached."""
        raise Rejected(f"{self.name} has no connection test")

    def verify(self, request: Inbound, now: dt.datetime) -> None:
        """Raise InvalidSignature unless the platform signed `request` (recently enough)."""
        raise InvalidSignature(f"{self.name} does not send us webhooks")

    def receive(self, request: Inbound) -> Reply:
        """Answer a verified inbound request (handshakes, acknowledgements)."""
        return Reply(200, "ok")


class UnknownPlatform(InvalidInput):
    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"no platform called {name!r}; known: {', '.join(known) or 'none'}")
        self.platform = name


@cache
def connectors() -> dict[str, type[Connector]]:
    """Every installed connector, by platform name."""
    found: dict[str, type[Connector]] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        found[entry.name] = entry.load()
    return found


def connector_class(name: str) -> type[Connector]:
    known = connectors()
    if name not in known:
        raise UnknownPlatform(name, sorted(known))
    return known[name]
