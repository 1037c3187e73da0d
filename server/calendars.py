"""CalDAV collections and their items: the calendars people see, kept from the jobs data.

Collections of kind jobs/team/customer hold renderings of appointments that
`project` keeps current on every write; kind `calendar` holds what clients store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.util import identity_key

from server import audit, changes
from server.actions import Action
from server.context import Context, operation
from server.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.ical import Audience, etag_of, parse_object, render_appointment
from server.models import (
    Appointment,
    CalendarItem,
    Collection,
    CollectionKind,
    Job,
    Team,
    TeamMember,
    User,
    utcnow,
)

JOBS = "jobs"
PERSONAL = "personal"
SEGMENT = re.compile(r"^[^/\x00-\x1f]{1,200}$")
ITEMS = cast("Table", CalendarItem.__table__)
# Statements of every write, built once: constructing one costs more than executing it
# (SQLAlchemy's cache then finds the compiled form by the statement's key).
COLLECTION_AT = select(Collection).where(Collection.path == bindparam("b_path"))
# The item at href and any item with this UID, in one statement: each branch of the OR is
# an index lookup (SQLite's multi-index OR, PostgreSQL's bitmap OR), never a scan.
HREF_OR_UID = select(ITEMS.c.id, ITEMS.c.href, ITEMS.c.uid, ITEMS.c.etag).where(or_(
    and_(ITEMS.c.collection_id == bindparam("b_collection"), ITEMS.c.href == bindparam("b_href")),
    and_(ITEMS.c.collection_id == bindparam("b_collection"), ITEMS.c.uid == bindparam("b_uid")),
))
INSERT_ITEM = insert(ITEMS).returning(ITEMS.c.id)


def jobs_path(login: str) -> str:
    return f"{login}/{JOBS}"


def personal_path(login: str) -> str:
    return f"{login}/{PERSONAL}"


def team_path(slug: str) -> str:
    return f"team-{slug}/schedule"


def customer_path(customer_id: int) -> str:
    return f"customer-{customer_id}/appointments"


def appointment_href(appointment: Appointment) -> str:
    return f"{appointment.uid}.ics"


def get_collection(session: Session, path: str) -> Collection | None:
    return session.scalars(COLLECTION_AT, {"b_path": path}).first()


def require_collection(session: Session, path: str) -> Collection:
    collection = get_collection(session, path)
    if collection is None:
        raise NotFound(f"No calendar at {path!r}.")
    return collection


@operation
def create_collection(
    ctx: Context,
    path: str,
    kind: CollectionKind,
    *,
    owner: User | None = None,
    team: Team | None = None,
    customer_id: int | None = None,
    props: dict[str, str] | None = None,
) -> Collection:
    segments = path.split("/")
    if len(segments) != 2 or not all(SEGMENT.match(s) for s in segments):
        raise InvalidInput(f"A calendar lives at <owner>/<name>; {path!r} is not such a path.")
    if get_collection(ctx.session, path) is not None:
        raise Conflict(f"A calendar already exists at {path!r}.")
    collection = Collection(
        path=path,
        kind=kind,
        owner_id=owner.id if owner else None,
        team_id=team.id if team else None,
        customer_id=customer_id,
        props={"tag": "VCALENDAR", **(props or {})},
        sync_seq=0,
        pruned_seq=0,
    )
    ctx.session.add(collection)
    ctx.session.flush()
    audit.record(ctx.session, ctx.actor, Action.COLLECTION_CREATE, "collection", collection.id,
                 after={"path": path, "kind": str(kind)})
    return collection


@operation
def set_props(ctx: Context, collection: Collection, props: dict[str, str]) -> Collection:
    before = dict(collection.props)
    collection.props = {"tag": before.get("tag", "VCALENDAR"), **props}
    changes.record(ctx.session, collection.id, [])
    audit.record(ctx.session, ctx.actor, Action.COLLECTION_PROPS, "collection", collection.id,
                 before=before, after=collection.props)
    return collection


@operation
def delete_collection(ctx: Context, collection: Collection) -> None:
    if collection.kind != CollectionKind.CALENDAR or collection.path.endswith(f"/{PERSONAL}"):
        raise Forbidden(f"The calendar {collection.path!r} is kept by fieldcal and cannot be deleted.")
    audit.record(ctx.session, ctx.actor, Action.COLLECTION_DELETE, "collection", collection.id,
                 before={"path": collection.path})
    ctx.session.execute(delete(CalendarItem).where(CalendarItem.collection_id == collection.id))
    ctx.session.delete(collection)


def get_item(session: Session, collection: Collection, href: str) -> CalendarItem | None:
    return session.scalars(
        select(CalendarItem).where(
            CalendarItem.collection_id == collection.id, CalendarItem.href == href
        )
    ).first()


def _require_free_form(collection: Collection) -> None:
    if collection.kind != CollectionKind.CALENDAR:
        raise Forbidden(
            f"{collection.path!r} is a view of the jobs database: items cannot be added or "
            "removed here."
        )


@dataclass(frozen=True)
class Known:
    """What the caller read, in the current write transaction, of the collection an object
    goes into: the item at its href (None: there is none; else its UID and ETag), and
    that no other item of the collection has the UID `uid`."""

    uid: str
    current: tuple[str, str] | None


@operation
def put_item(ctx: Context, collection: Collection, href: str, text: str, *,
             known: Known | None = None) -> tuple[CalendarItem, bool]:
    """Store a client's object (personal events, time off). Returns (item, replaced).

    The item returned is not in the session (the row is written with Core statements);
    `known` spares the lookup of the item at href and of the UID when it is of this UID.
    """
    _require_free_form(collection)
    parsed = parse_object(text)
    session = ctx.session
    connection = session.connection()
    if known is not None and known.uid == parsed.uid:
        current = known.current
        item_id = None
    else:
        found = connection.execute(HREF_OR_UID, {
            "b_collection": collection.id, "b_href": href, "b_uid": parsed.uid}).all()
        other = next((f.href for f in found if f.href != href and f.uid == parsed.uid), None)
        if other is not None:
            raise Conflict(f"UID {parsed.uid!r} is already used by {other!r} in this calendar.")
        row = next((f for f in found if f.href == href), None)
        current = None if row is None else (row.uid, row.etag)
        item_id = None if row is None else row.id
    before = None if current is None else {"uid": current[0], "etag": current[1]}
    values = {
        "uid": parsed.uid, "component": parsed.component, "text": text, "etag": etag_of(text),
        "dtstart": parsed.dtstart, "dtend": parsed.dtend, "transparent": parsed.transparent,
        "updated_at": utcnow(),
    }
    if current is None:
        item_id = connection.execute(
            INSERT_ITEM, {"collection_id": collection.id, "href": href, **values},
        ).scalar_one()
    else:
        item_id = connection.execute(
            update(ITEMS).where(ITEMS.c.collection_id == collection.id, ITEMS.c.href == href)
            .values(values).returning(ITEMS.c.id)
        ).scalar_one()
        loaded = session.identity_map.get(identity_key(CalendarItem, item_id))
        if loaded is not None:  # read earlier in this session: read again when next used
            session.expire(loaded)
    item = CalendarItem(id=item_id, collection_id=collection.id, href=href, appointment_id=None,
                        **values)
    changes.record(session, collection.id, [(href, "put")])
    audit.record(session, ctx.actor, Action.ITEM_PUT, "collection", collection.id,
                 before=before, after={"href": href, "uid": item.uid, "etag": item.etag})
    return item, before is not None


@operation
def delete_item(ctx: Context, collection: Collection, href: str) -> None:
    _require_free_form(collection)
    item = get_item(ctx.session, collection, href)
    if item is None:
        raise NotFound(f"No item {href!r} in {collection.path!r}.")
    ctx.session.delete(item)
    changes.record(ctx.session, collection.id, [(href, "delete")])
    audit.record(ctx.session, ctx.actor, Action.ITEM_DELETE, "collection", collection.id,
                 before={"href": href, "uid": item.uid})


def _views(session: Session, appointment: Appointment) -> dict[int, Audience]:
    """Collection id -> audience, for every calendar that shows this appointment."""
    paths: dict[str, Audience] = {}
    technician = appointment.technician
    if technician is not None:
        paths[jobs_path(technician.login)] = Audience.TECHNICIAN
        slugs = session.scalars(
            select(Team.slug).join(TeamMember).where(TeamMember.user_id == technician.id)
        )
        for slug in slugs:
            paths[team_path(slug)] = Audience.TEAM
    paths[customer_path(appointment.job.customer_id)] = Audience.CUSTOMER
    rows = session.execute(select(Collection.id, Collection.path).where(Collection.path.in_(paths)))
    return {cid: paths[path] for cid, path in rows}


def project(ctx: Context, appointment: Appointment) -> None:
    """Re-render an appointment into every calendar that shows it; tombstone where it left."""
    session = ctx.session
    session.flush()
    href = appointment_href(appointment)
    wanted = _views(session, appointment)
    existing = {
        item.collection_id: item
        for item in session.scalars(
            select(CalendarItem).where(CalendarItem.appointment_id == appointment.id)
        )
    }
    rendered: dict[Audience, str] = {}
    for collection_id, audience in wanted.items():
        if audience not in rendered:
            rendered[audience] = render_appointment(appointment, audience, ctx.organizer)
        text = rendered[audience]
        item = existing.get(collection_id)
        if item is not None and item.text == text:
            continue
        if item is None:
            item = CalendarItem(collection_id=collection_id, href=href, appointment_id=appointment.id)
            session.add(item)
        item.uid = appointment.uid
        item.component = "VEVENT"
        item.text = text
        item.etag = etag_of(text)
        item.dtstart = appointment.starts_at
        item.dtend = appointment.ends_at
        item.transparent = False
        item.updated_at = utcnow()
        changes.record(session, collection_id, [(href, "put")])
    for collection_id, item in existing.items():
        if collection_id not in wanted:
            session.delete(item)
            changes.record(session, collection_id, [(href, "delete")])


def project_all_of(ctx: Context, technician: User) -> None:
    """Re-project every appointment of a technician (after a team membership change)."""
    appointments = ctx.session.scalars(
        select(Appointment)
        .where(Appointment.technician_id == technician.id)
        .options(selectinload(Appointment.job).selectinload(Job.customer))
    )
    for appointment in appointments:
        project(ctx, appointment)
