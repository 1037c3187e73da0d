"""One domain call for a service request, whatever channel it came through.

`receive(ctx, request)` in the caller's transaction: find the customer by email (or
phone), find or add the site at the address given (with the equipment named), add a
job with no visit (it waits in the dispatcher's tray), store the photos, issue a share
link the customer follows the request with, write the audit entry and queue the
acknowledgement (outbox kind `intake.acknowledge`; the notifier composes the email).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import func, select

from server import audit, directory, links, outbox
from server.actions import Action
from server.context import Context, operation
from server.errors import InvalidInput
from server.intake.photos import MAX_PHOTOS, Photo
from server.models import Customer, Job, JobPhoto, ShareLink, Site
from server.text import clean_text, one_line

ACKNOWLEDGE = "intake.acknowledge"
CHANNELS = ("web", "email")
URGENCIES = ("low", "normal", "high", "urgent")
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
PHONE_PATTERN = re.compile(r"^\+?[0-9()./ -]{6,}$")
TITLE_LENGTH = 80
LIMITS = {"name": 200, "email": 320, "phone": 50, "address": 500, "problem": 4000,
          "make": 100, "model": 100, "serial": 100}


class RequestRefused(InvalidInput):
    """Input that cannot become a request; `field` names the form field to mark."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name


@dataclass(frozen=True)
class ServiceRequest:
    """What a customer asks for, as they told it."""

    source: str  # "web" or "email"
    name: str
    email: str = ""
    phone: str = ""
    address: str = ""
    make: str = ""
    model: str = ""
    serial: str = ""
    problem: str = ""
    urgency: str = "normal"
    timezone: str = "UTC"
    photos: tuple[Photo, ...] = field(default=())

    def problems(self) -> dict[str, str]:
        """Each field that cannot be accepted, with a message a person can act on."""
        found: dict[str, str] = {}
        if not one_line(self.name):
            found["name"] = "Please tell us your name."
        email, phone = one_line(self.email), one_line(self.phone)
        if not email and not phone:
            found["email"] = "Please give an email address or a phone number."
        elif email and not EMAIL_PATTERN.match(email):
            found["email"] = f"{email!r} does not look like an email address."
        if phone and not PHONE_PATTERN.match(phone):
            found["phone"] = "A phone number has digits, spaces and + ( ) - / . only."
        if self.source == "web" and not clean_text(self.address):
            found["address"] = "Please give the address where the compressor is."
        if not clean_text(self.problem):
            found["problem"] = "Please describe the problem."
        for name, limit in LIMITS.items():
            if len(getattr(self, name)) > limit and name not in found:
                found[name] = f"Please keep this under {limit} characters."
        if self.urgency not in URGENCIES:
            found["urgency"] = "Please choose how urgent it is."
        if len(self.photos) > MAX_PHOTOS:
            found["photos"] = f"Please send at most {MAX_PHOTOS} photos."
        if self.source not in CHANNELS:
            found["source"] = f"Requests come by {' or '.join(CHANNELS)}, not {self.source!r}."
        return found


@dataclass(frozen=True)
class Received:
    job: Job
    customer: Customer
    link: ShareLink
    created_customer: bool


def _customer_for(ctx: Context, request: ServiceRequest) -> tuple[Customer, bool]:
    email = one_line(request.email).lower()
    phone = one_line(request.phone)
    query = select(Customer).order_by(Customer.id)
    if email:
        query = query.where(func.lower(Customer.email) == email)
    else:
        query = query.where(Customer.phone == phone)
    customer = ctx.session.scalars(query).first()
    if customer is not None:
        return customer, False
    return directory.add_customer(ctx, request.name, email=email, phone=phone,
                                  timezone=request.timezone), True


def _site_for(ctx: Context, customer: Customer, request: ServiceRequest) -> Site | None:
    address = clean_text(request.address)
    if not address:
        return customer.sites[0] if customer.sites else None
    for site in customer.sites:
        if site.address == address:
            return site
    return directory.add_site(ctx, customer, address, compressor_make=request.make,
                              compressor_model=request.model, compressor_serial=request.serial)


def _title(request: ServiceRequest) -> str:
    first = one_line(clean_text(request.problem).split("\n", 1)[0])
    equipment = one_line(f"{request.make} {request.model}")
    title = f"{equipment}: {first}" if equipment else first
    return title if len(title) <= TITLE_LENGTH else title[: TITLE_LENGTH - 1] + "…"


def _problem_text(request: ServiceRequest) -> str:
    lines = [clean_text(request.problem)]
    equipment = [f"{label}: {one_line(value)}" for label, value in
                 (("Make", request.make), ("Model", request.model), ("Serial", request.serial))
                 if one_line(value)]
    if equipment:
        lines.append("\n".join(equipment))
    return "\n\n".join(lines)


@operation
def receive(ctx: Context, request: ServiceRequest) -> Received:
    """A job (no visit yet) for a service request, with its photos, link, audit and ack."""
    found = request.problems()
    if found:
        name, message = next(iter(found.items()))
        raise RequestRefused(name, message)
    customer, created = _customer_for(ctx, request)
    site = _site_for(ctx, customer, request)
    job = directory.add_job(ctx, customer, _title(request), problem=_problem_text(request),
                            priority=request.urgency, source=request.source, site=site)
    for photo in request.photos:
        ctx.session.add(JobPhoto(job_id=job.id, content_type=photo.content_type,
                                 filename=photo.filename, size=len(photo.data),
                                 sha256=photo.sha256, data=photo.data))
    subject = links.Subject(links.SubjectKind.CUSTOMER, customer.id, customer.name)
    link = links.issue(ctx, links.Purpose.SHARE, subject, label=f"request #{job.id}")
    audit.record(ctx.session, ctx.actor, Action.INTAKE_RECEIVE, "job", job.id,
                 after={"source": request.source, "customer": customer.id,
                        "new_customer": created, "site": site.id if site else None,
                        "photos": len(request.photos), "urgency": request.urgency})
    email = one_line(request.email).lower() or customer.email
    if email:
        outbox.enqueue(ctx.session, ACKNOWLEDGE,
                       {"job_id": job.id, "link_id": link.id, "to": email,
                        "name": one_line(request.name)},
                       idempotency_key=f"{ACKNOWLEDGE}:{job.id}")
    ctx.session.flush()
    return Received(job, customer, link, created)


def photos_of(ctx: Context, job: Job) -> list[JobPhoto]:
    return list(ctx.session.scalars(select(JobPhoto).where(JobPhoto.job_id == job.id)
                                    .order_by(JobPhoto.id)))
