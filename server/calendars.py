"""CalDAV collections and their items: the calendars people see, kept from the jobs data.

Collections of kind jobs/team/customer hold renderings of appointments that
`project` keeps current on every write; kind `calendar` holds what clients store.
"""

from __future__ import annotations

import re

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.orm import Session, selectinload

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
    return session.scalars(select(Collection).where(Collection.path == path)).first()


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


@operation
def put_item(ctx: Context, collection: Collection, href: str, text: str) -> tuple[CalendarItem, bool]:
    """Store a client's object (personal events, time off). Returns (item, replaced)."""
    _require_free_form(collection)
    parsed = parse_object(text)
    # The item at href and any item with this UID, in one statement: each branch of the OR
    # is an index lookup (SQLite's multi-index OR, PostgreSQL's bitmap OR), never a scan.
    found = ctx.session.scalars(
        select(CalendarItem).where(or_(
            and_(CalendarItem.collection_id == collection.id, CalendarItem.href == href),
            and_(CalendarItem.collection_id == collection.id, CalendarItem.uid == parsed.uid),
        ))
    ).all()
    other = next((f.href for f in found if f.href != href and f.uid == parsed.uid), None)
    if other is not None:
        raise Conflict(f"UID {parsed.uid!r} is already used by {other!r} in this calendar.")
    item = next((f for f in found if f.href == href), None)
    before = None if item is None else {"uid": item.uid, "etag": item.etag}
    if item is None:
        item = CalendarItem(collection_id=collection.id, href=href)
        ctx.session.add(item)
    item.uid = parsed.uid
    item.component = parsed.component
    item.text = text
    item.etag = etag_of(text)
    item.dtstart = parsed.dtstart
    item.dtend = parsed.dtend
    item.transparent = parsed.transparent
    item.updated_at = utcnow()
    changes.record(ctx.session, collection.id, [(href, "put")])
    audit.record(ctx.session, ctx.actor, Action.ITEM_PUT, "collection", collection.id,
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
