"""Service requests in the core: one call makes the customer, site, job, photos, link and ack."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from intakekit import jpeg_with_exif
from mailkit import SECRET, SmtpServer, domain, post_office, settings_for
from PIL import Image
from sqlalchemy import func, select

from server.actors import Actor
from server.db import Database
from server.errors import InvalidInput
from server.intake.photos import clean_photo
from server.intake.requests import ACKNOWLEDGE, RequestRefused, ServiceRequest, receive
from server.links import LinkSigner, Purpose, resolve
from server.migrate import upgrade
from server.models import Appointment, AuditEntry, Customer, Job, JobPhoto, OutboxMessage

WEB = Actor(name="web form", channel="web", role="customer")


@pytest.fixture(scope="module")
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    upgrade(database)
    yield database
    database.dispose()


def request(**changes: object) -> ServiceRequest:
    fields: dict[str, object] = {
        "source": "web", "name": "Greta Hahn", "email": "greta@hahn.example",
        "phone": "+49 30 1234567", "address": "Werkstr. 5, 10115 Berlin",
        "make": "Kaeser", "model": "SK 22", "serial": "KS-9911",
        "problem": "Compressor trips after 5 minutes\nIt smells hot.", "urgency": "high",
    }
    fields.update(changes)
    return ServiceRequest(**fields)  # type: ignore[arg-type]


def test_a_request_becomes_a_job_with_no_visit(db: Database) -> None:
    photo = clean_photo("IMG_0001.jpg", jpeg_with_exif())
    with domain(db, WEB) as ctx:
        received = receive(ctx, request(photos=(photo,)))
        job_id, customer_id = received.job.id, received.customer.id
        assert received.created_customer
    with db.read() as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.source, job.status, job.priority) == ("web", "new", "high")
        assert job.title == "Kaeser SK 22: Compressor trips after 5 minutes"
        assert "Serial: KS-9911" in job.problem
        assert job.site is not None and job.site.postcode == "10115"
        assert job.site.compressor_serial == "KS-9911"
        assert session.scalar(select(func.count()).select_from(Appointment)
                              .where(Appointment.job_id == job_id)) == 0
        stored = session.scalars(select(JobPhoto).where(JobPhoto.job_id == job_id)).one()
        assert stored.content_type == "image/jpeg"
        assert b"SecretCam" not in stored.data and b"serial-0042" not in stored.data
        assert not Image.open(io.BytesIO(stored.data)).getexif()
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "intake.receive")
                                .where(AuditEntry.entity_id == str(job_id))).one()
        assert entry.channel == "web" and entry.after and entry.after["photos"] == 1
        ack = session.scalars(select(OutboxMessage)
                              .where(OutboxMessage.idempotency_key == f"{ACKNOWLEDGE}:{job_id}")).one()
        assert ack.payload["to"] == "greta@hahn.example"
    # the same person again (any case of their address) is the same customer, a new job
    with domain(db, WEB) as ctx:
        again = receive(ctx, request(email="GRETA@hahn.example", problem="Oil leak"))
        assert again.customer.id == customer_id and not again.created_customer
        assert again.job.site_id is not None
    # and by phone alone
    with domain(db, WEB) as ctx:
        by_phone = receive(ctx, request(email="", problem="Noise"))
        assert by_phone.customer.id == customer_id and by_phone.job.site_id == again.job.site_id
        assert by_phone.job.id not in (job_id, again.job.id)


@pytest.mark.parametrize(("changes", "field"), [
    ({"name": " "}, "name"),
    ({"email": "", "phone": ""}, "email"),
    ({"email": "not-an-address"}, "email"),
    ({"phone": "call me maybe"}, "phone"),
    ({"address": ""}, "address"),
    ({"problem": "\n"}, "problem"),
    ({"urgency": "yesterday"}, "urgency"),
    ({"serial": "x" * 101}, "serial"),
])
def test_invalid_requests_store_nothing(db: Database, changes: dict[str, object],
                                        field: str) -> None:
    with db.read() as session:
        jobs = session.scalar(select(func.count()).select_from(Job))
        customers = session.scalar(select(func.count()).select_from(Customer))
    with domain(db, WEB) as ctx, pytest.raises(RequestRefused) as refused:
        receive(ctx, request(**{"email": "new@person.example", **changes}))
    assert refused.value.field == field and refused.value.message
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == jobs
        assert session.scalar(select(func.count()).select_from(Customer)) == customers


@pytest.mark.parametrize("raw", [b"", b"%PDF-1.4 not a photo", b"GIF89a broken",
                                 b"\xff\xd8\xff" + b"\0" * 100])
def test_only_readable_images_are_photos(raw: bytes) -> None:
    with pytest.raises(InvalidInput):
        clean_photo("x.jpg", raw)


def test_a_photo_over_5_mb_is_refused() -> None:
    with pytest.raises(InvalidInput, match="5 MB"):
        clean_photo("big.png", b"\x89PNG" + b"\0" * (5 * 1024 * 1024))


def test_the_acknowledgement_answers_with_a_link_to_follow(db: Database, tmp_path: Path) -> None:
    smtp = SmtpServer()
    smtp.start()
    try:
        settings = settings_for(db.url, tmp_path, smtp.url)
        post = post_office(db, settings)
        with domain(db, WEB) as ctx:
            job_id = receive(ctx, request(email="ack@person.example", name="Ada Ack")).job.id
        post.drain()
        post.drain()
        mails = [m for rcpt, m, _ in smtp.inbox.received if rcpt == "ack@person.example"]
        assert len(mails) == 1, "one acknowledgement, however often the worker runs"
        mail = mails[0]
        assert mail["Auto-Submitted"] == "auto-replied"
        assert f"[#J{job_id}]" in mail["Subject"]
        body = mail.get_content()
        url = next(w for w in body.split() if w.startswith(settings.base_url + "/s/"))
        token = url.rsplit("/", 1)[1]
        with db.read() as session:
            link = resolve(session, LinkSigner((SECRET,)), token, Purpose.SHARE)
            job = session.get(Job, job_id)
            assert job is not None and link.subject_id == job.customer_id
    finally:
        smtp.stop()
