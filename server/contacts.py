"""The customers a technician visits, as an address book (`<login>/customers`, CardDAV).

A technician's address book holds one vCard (server.vcards) per customer the
technician has a visit with (not cancelled) in a window around today: from
`past_days` before today's midnight to `future_days` after it, in the business's
time zone (settings `contacts_past_days`, `contacts_future_days`, `timezone`).

The book is a `Collection` of kind `addressbook` whose items are the stored cards,
so it has what every calendar has: an ETag per card (from its text, made from the
rows), a collection ETag and sync tokens from the change log. It is kept current
the way calendars are:

- every change of a visit (`scheduling.appointments.changed`) and of a customer's
  sites and equipment (`directory.add_site`, `update_site`) refreshes that
  customer's card in the books concerned, in the same transaction: a customer
  entering or leaving a book is a change-log row like any other (an operation that
  comes to change a customer's name, phone or email must call `follow_customer` too;
  none does yet);
- time passing moves the window without any write. The book remembers the window
  it was last made for (`WINDOW_PROP`); `keep_current` rolls it to today's window
  (adding and removing cards, with change-log rows) and is called by the CardDAV
  face before it answers a request for the book or its home. So the first request
  of a new day sees the customers who entered or left the window by the date alone
  as changes, and a sync token from yesterday gets them in its delta.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from server import audit, changes
from server.actions import Action
from server.context import Context, operation
from server.ical import etag_of
from server.models import (
    Appointment,
    AppointmentStatus,
    CalendarItem,
    Collection,
    CollectionKind,
    Customer,
    Job,
    Role,
    Site,
    User,
    utcnow,
)
from server.vcards import CardData, CardSite, href_of, render

BOOK = "customers"
WINDOW_PROP = "fieldcal:window"
DISPLAY_NAME = "Customers"
DESCRIPTION = "Customers with a visit of yours in the last weeks or the coming weeks (read-only)."


def book_path(login: str) -> str:
    return f"{login}/{BOOK}"


@dataclass(frozen=True)
class Window:
    """Visits from `past_days` before `day`'s midnight to `future_days` after it, in `zone`."""

    day: dt.date
    past_days: int
    future_days: int
    zone: str

    @classmethod
    def around(cls, now: dt.datetime, past_days: int, future_days: int, zone: str) -> Window:
        return cls(now.astimezone(ZoneInfo(zone)).date(), past_days, future_days, zone)

    @classmethod
    def parse(cls, key: str) -> Window | None:
        try:
            day, past, future, zone = key.split("/", 3)
            return cls(dt.date.fromisoformat(day), int(past), int(future), zone)
        except (ValueError, TypeError):
            return None

    @property
    def key(self) -> str:
        return f"{self.day.isoformat()}/{self.past_days}/{self.future_days}/{self.zone}"

    def bounds(self) -> tuple[dt.datetime, dt.datetime]:
        midnight = dt.datetime.combine(self.day, dt.time(), ZoneInfo(self.zone))
        start = midnight - dt.timedelta(days=self.past_days)
        end = midnight + dt.timedelta(days=self.future_days)
        return start.astimezone(dt.UTC), end.astimezone(dt.UTC)


# --------------------------------------------------------------------------- reading


def customers_in_window(session: Session, technician_id: int, window: Window,
                        only: Iterable[int] | None = None) -> set[int]:
    """Customers with a visit of the technician (not cancelled) that meets the window."""
    start, end = window.bounds()
    query = (
        select(Job.customer_id).distinct()
        .join(Appointment, Appointment.job_id == Job.id)
        .where(Appointment.technician_id == technician_id,
               Appointment.status != AppointmentStatus.CANCELLED,
               Appointment.starts_at < end, Appointment.ends_at > start)
    )
    if only is not None:
        query = query.where(Job.customer_id.in_(list(only)))
    return set(session.scalars(query))


def cards(session: Session, customer_ids: Iterable[int]) -> dict[int, str]:
    """customer id -> vCard 4.0 text, in two queries."""
    wanted = sorted(set(customer_ids))
    if not wanted:
        return {}
    sites: dict[int, list[CardSite]] = {}
    for site in session.scalars(select(Site).where(Site.customer_id.in_(wanted))
                                .order_by(Site.id)):
        sites.setdefault(site.customer_id, []).append(CardSite(
            site.address, site.postcode, site.country, site.compressor_make,
            site.compressor_model, site.compressor_serial))
    return {
        customer.id: render(CardData(customer.id, customer.created_at, customer.name,
                                     customer.email, customer.phone,
                                     tuple(sites.get(customer.id, ()))))
        for customer in session.scalars(select(Customer).where(Customer.id.in_(wanted)))
    }


def window_of(book: Collection) -> Window | None:
    return Window.parse(str((book.props or {}).get(WINDOW_PROP, "")))


def needs_roll(session: Session, login: str, window: Window) -> bool:
    """Whether `login` is a technician whose book is missing or made for another window."""
    found = session.execute(
        select(User.role, Collection.props)
        .outerjoin(Collection, and_(Collection.owner_id == User.id,
                                    Collection.path == book_path(login)))
        .where(User.login == login, User.active.is_(True))
    ).first()
    if found is None or found[0] != Role.TECHNICIAN:
        return False
    props = found[1]
    return props is None or props.get(WINDOW_PROP) != window.key


# --------------------------------------------------------------------------- writing


def _apply(session: Session, book: Collection, wanted: dict[str, str],
           existing: dict[str, CalendarItem]) -> list[tuple[str, str]]:
    """Make the book's cards at the hrefs of `wanted` and `existing` what `wanted` says."""
    changed: list[tuple[str, str]] = []
    now = utcnow()
    for href, text in sorted(wanted.items()):
        item = existing.get(href)
        if item is not None and item.text == text:
            continue
        if item is None:
            item = CalendarItem(collection_id=book.id, href=href, component="VCARD",
                                transparent=True)
            session.add(item)
        item.uid = _uid_in(text)
        item.text = text
        item.etag = etag_of(text)
        item.dtstart = item.dtend = None
        item.updated_at = now
        changed.append((href, "put"))
    for href, item in sorted(existing.items()):
        if href not in wanted:
            session.delete(item)
            changed.append((href, "delete"))
    if changed:
        changes.record(session, book.id, changed)
    return changed


def _uid_in(text: str) -> str:
    for line in text.split("\r\n"):
        if line.startswith("UID:"):
            return line[len("UID:"):]
    raise ValueError("a card without UID")  # render() always writes one


def _lock(session: Session, book: Collection) -> None:
    """Hold the book's row before reading what it should hold: a roll and a change of a visit
    that meet on PostgreSQL then run one after the other, the second seeing the first's rows
    (SQLite writers are serial already)."""
    session.execute(select(Collection.id).where(Collection.id == book.id).with_for_update())


def _items(session: Session, book: Collection, hrefs: Iterable[str] | None = None
           ) -> dict[str, CalendarItem]:
    query = select(CalendarItem).where(CalendarItem.collection_id == book.id)
    if hrefs is not None:
        query = query.where(CalendarItem.href.in_(list(hrefs)))
    return {item.href: item for item in session.scalars(query)}


def _refresh_whole(session: Session, book: Collection, window: Window
                   ) -> list[tuple[str, str]]:
    assert book.owner_id is not None
    _lock(session, book)
    members = customers_in_window(session, book.owner_id, window)
    wanted = {href_of(cid): text for cid, text in cards(session, members).items()}
    changed = _apply(session, book, wanted, _items(session, book))
    book.props = {**(book.props or {}), WINDOW_PROP: window.key}
    return changed


@operation
def keep_current(ctx: Context, technician: User, window: Window) -> Collection | None:
    """The technician's book, made for `window` (created at first use). One audit entry
    when cards were added, changed or removed; nothing written when it was current."""
    if technician.role != Role.TECHNICIAN:
        return None
    session = ctx.session
    path = book_path(technician.login)
    book = session.scalars(select(Collection).where(Collection.path == path)).first()
    created = book is None
    if book is None:
        book = Collection(path=path, kind=CollectionKind.ADDRESSBOOK, owner_id=technician.id,
                          props={"tag": "VADDRESSBOOK", "D:displayname": DISPLAY_NAME,
                                 "CR:addressbook-description": DESCRIPTION},
                          sync_seq=0, pruned_seq=0)
        session.add(book)
        session.flush()
    elif book.kind != CollectionKind.ADDRESSBOOK:
        return None  # a calendar the technician made with that name before books existed
    elif window_of(book) == window:
        return book
    before = window_of(book)
    changed = _refresh_whole(session, book, window)
    if created or changed:
        audit.record(session, ctx.actor, Action.ADDRESSBOOK_REFRESH, "collection", book.id,
                     before={"window": before.key if before else None},
                     after={"path": path, "window": window.key,
                            "added_or_changed": sum(op == "put" for _, op in changed),
                            "removed": sum(op == "delete" for _, op in changed)})
    return book


def follow_customer(session: Session, customer_id: int,
                    technician_ids: Iterable[int | None] = ()) -> None:
    """Refresh one customer's card in the books that hold it and in the books of
    `technician_ids`, each for the window it was made for. Part of the caller's change."""
    href = href_of(customer_id)
    # Books are few (one per technician): their ids first, then the card by the (collection,
    # href) index, never a scan of every stored item for the href.
    all_books = list(session.scalars(select(Collection.id).where(
        Collection.kind == CollectionKind.ADDRESSBOOK)))
    if not all_books:
        return
    holding = set(session.scalars(select(CalendarItem.collection_id).where(
        CalendarItem.collection_id.in_(all_books), CalendarItem.href == href)))
    owners = sorted({t for t in technician_ids if t is not None})
    books = list(session.scalars(
        select(Collection).where(
            Collection.kind == CollectionKind.ADDRESSBOOK,
            Collection.id.in_(sorted(holding)) | Collection.owner_id.in_(owners))
        .order_by(Collection.id)))
    if not books:
        return
    text = cards(session, [customer_id]).get(customer_id)
    for book in books:
        window = window_of(book)
        if window is None or book.owner_id is None:
            continue  # never made: keep_current makes it whole
        _lock(session, book)
        inside = text is not None and bool(
            customers_in_window(session, book.owner_id, window, only=[customer_id]))
        _apply(session, book, {href: text} if inside and text else {},
               _items(session, book, [href]))
