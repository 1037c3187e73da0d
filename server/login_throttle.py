"""Throttling password guesses (CalDAV logins) without locking out the real device.

Only wrong passwords count, in fixed windows kept in the database (every worker
and host sees the same counts), under two keys:

- per client address (any login): past `ADDRESS_FAILURES` in `WINDOW`, the
  address is refused at once, without checking the password (429) — except
  for a login that signed in from that address within `TRUSTED_FOR`: a device
  that works keeps working even when someone at the same address guesses;
- per login (any address): past `LOGIN_FAILURES` in `WINDOW`, a wrong password
  for that login is answered 429 instead of 401. A correct one still signs in,
  from any address, so guesses from elsewhere never lock the owner out.

A successful sign-in notes (login, address) at most once per `NOTE_EVERY`, so a
device polling every minute does not write on every request.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from server import ratelimit
from server.models import utcnow

WINDOW = dt.timedelta(minutes=15)
ADDRESS_FAILURES = 30
LOGIN_FAILURES = 20
TRUSTED_FOR = dt.timedelta(days=30)
NOTE_EVERY = dt.timedelta(hours=1)
KEY_PART = 100  # characters of a login or address in a key (keys hold 200)


def _address_key(address: str) -> str:
    return f"login-fail:addr:{address[:KEY_PART]}"


def _login_key(login: str) -> str:
    return f"login-fail:login:{login[:KEY_PART]}"


def _trusted_key(login: str, address: str) -> str:
    return f"login-ok:{login[:KEY_PART // 2]}:{address[:KEY_PART // 2]}"


@dataclass(frozen=True)
class Standing:
    """What the counts say about one attempt, before its password is checked."""

    refused_for: int | None  # seconds: the address may not try now
    last_success: dt.datetime | None  # this login's last sign-in from this address

    def needs_note(self, now: dt.datetime) -> bool:
        return self.last_success is None or now - self.last_success >= NOTE_EVERY


def standing(session: Session, login: str, address: str) -> Standing:
    last = ratelimit.noted_at(session, _trusted_key(login, address))
    now = utcnow()
    if last is not None and now - last < TRUSTED_FOR:
        return Standing(None, last)
    waits = ratelimit.waiting(session, [_address_key(address)], ADDRESS_FAILURES, WINDOW)
    return Standing(waits.get(_address_key(address)), last)


def note_failure(session: Session, login: str, address: str) -> int | None:
    """Count a wrong password (in a write transaction); seconds to wait once over a limit."""
    waits: list[int] = []
    for key, limit in ((_address_key(address), ADDRESS_FAILURES),
                       (_login_key(login), LOGIN_FAILURES)):
        try:
            ratelimit.hit(session, key, limit, WINDOW)
        except ratelimit.RateLimited as exc:
            waits.append(exc.retry_after)
    return max(waits) if waits else None


def note_success(session: Session, login: str, address: str) -> None:
    """Remember that `login` signed in from `address` (in a write transaction)."""
    ratelimit.note(session, _trusted_key(login, address))
