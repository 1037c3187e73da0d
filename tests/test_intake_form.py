"""The public request form: fields, photos, languages, embedding and the spam checks."""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from intakekit import fields, jpeg_with_exif, solve, started
from live import AUDIT_KEY
from PIL import Image
from sqlalchemy import func, select

from server.app import create_app
from server.config import load_settings
from server.db import Database
from server.errors import ConfigError
from server.migrate import upgrade
from server.models import Appointment, Customer, Job, JobPhoto, OutboxMessage

EMBEDDER = "https://www.kompressor-service.example"


@dataclass
class Env:
    app: Flask
    database: Database

    def client(self, address: str | None = None) -> FlaskClient:
        client = self.app.test_client()
        client.environ_base["REMOTE_ADDR"] = address or (
            f"10.9.{secrets.randbelow(250)}.{secrets.randbelow(250)}")
        return client

    def counts(self) -> tuple[int, int, int]:
        with self.database.read() as session:
            return (session.scalar(select(func.count()).select_from(Job)) or 0,
                    session.scalar(select(func.count()).select_from(Customer)) or 0,
                    session.scalar(select(func.count()).select_from(JobPhoto)) or 0)


def make_env(database_url: str, instance: str, **extra: str) -> Env:
    settings = load_settings({
        "FIELDCAL_INSTANCE": instance,
        "FIELDCAL_DATABASE_URL": database_url,
        "FIELDCAL_BASE_URL": "https://cal.example.test",
        "FIELDCAL_SECRET_KEYS": secrets.token_urlsafe(32),
        "FIELDCAL_AUDIT_KEYS": AUDIT_KEY,
        "FIELDCAL_BUSINESS_PHONE": "+49 30 555 0100",
        "FIELDCAL_INTAKE_MIN_FILL_SECONDS": "0",
        "FIELDCAL_INTAKE_RATE": "1000",
        "FIELDCAL_INTAKE_EMBED_ORIGINS": EMBEDDER,
        **extra,
    })
    app = create_app(settings=settings)
    database = app.extensions["fieldcal.db"]
    upgrade(database)
    return Env(app, database)


@pytest.fixture(scope="module")
def env(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    yield make_env(database_url, str(tmp_path_factory.mktemp("intake")))


def post(client: FlaskClient, data: Mapping[str, object], *, proof: bool = True,
         path: str = "/request", lang: str = "en") -> tuple[int, str]:
    page = client.get(path, headers={"Accept-Language": lang}).get_data(as_text=True)
    body: dict[str, object] = {"started": started(page), **data}
    if proof:
        body["altcha"] = solve(page)
    response = client.post(path, data=body, content_type="multipart/form-data",
                           headers={"Accept-Language": lang})
    return response.status_code, response.get_data(as_text=True)


def test_the_form_speaks_english_or_german_and_labels_every_field(env: Env) -> None:
    english = env.client().get("/request", headers={"Accept-Language": "fr, en;q=0.5"})
    german = env.client().get("/request", headers={"Accept-Language": "de-AT,de;q=0.9"})
    assert english.status_code == german.status_code == 200
    en, de = english.get_data(as_text=True), german.get_data(as_text=True)
    assert '<html lang="en">' in en and "Request a service visit" in en
    assert '<html lang="de">' in de and "Serviceeinsatz anfragen" in de
    for name in ("name", "email", "phone", "address", "make", "model", "serial", "problem",
                 "urgency", "photos"):
        assert f'<label for="field-{name}">' in en and f'id="field-{name}"' in en
    assert 'enctype="multipart/form-data"' in en
    assert "Accept-Language" in german.headers["Vary"]


def test_a_request_with_a_photo_becomes_a_job_without_a_visit(env: Env) -> None:
    status, page = post(env.client(), {**fields(email="photo@person.example"),
                                       "photos": (io.BytesIO(jpeg_with_exif()), "plate.jpg")})
    assert status == 200, page
    assert "Thank you: we received your request" in page and "[#J" in page
    with env.database.read() as session:
        job = session.scalars(select(Job).join(Customer)
                              .where(Customer.email == "photo@person.example")).one()
        assert job.source == "web" and job.priority == "high"
        assert not session.scalars(select(Appointment).where(Appointment.job_id == job.id)).all()
        photo = session.scalars(select(JobPhoto).where(JobPhoto.job_id == job.id)).one()
        assert b"SecretCam" not in photo.data
        assert Image.open(io.BytesIO(photo.data)).size == (64, 48)
        assert session.scalars(select(OutboxMessage)
                               .where(OutboxMessage.idempotency_key == f"intake.acknowledge:{job.id}")).one()


def test_the_form_works_without_javascript(env: Env) -> None:
    before = env.counts()
    status, page = post(env.client(), fields(email="nojs@person.example"), proof=False)
    assert status == 200 and "[#J" in page
    assert env.counts()[0] == before[0] + 1


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"name": ""}, "name", "Please tell us your name."),
    ({"email": "greta-at-example"}, "email", "does not look like an email address"),
    ({"email": "", "phone": ""}, "email", "an email address or a phone number"),
    ({"problem": "  "}, "problem", "Please describe the problem."),
    ({"address": ""}, "address", "Please give the address"),
    ({"urgency": "whenever"}, "urgency", "Please choose how urgent it is."),
])
def test_invalid_input_is_marked_beside_the_field_and_nothing_is_stored(
        env: Env, changes: dict[str, str], field: str, message: str) -> None:
    before = env.counts()
    status, page = post(env.client(), fields(**{"email": "bad@person.example", **changes}))
    assert status == 422
    assert f'id="{field}-error"' in page and message in page.replace("&#39;", "'")
    assert 'aria-describedby="' in page and 'aria-invalid="true"' in page
    assert env.counts() == before


def test_a_file_that_is_not_a_photo_is_refused_and_nothing_is_stored(env: Env) -> None:
    before = env.counts()
    status, page = post(env.client(), {**fields(email="pdf@person.example"),
                                       "photos": (io.BytesIO(b"%PDF-1.7 evil"), "plate.jpg")})
    assert status == 422 and 'id="photos-error"' in page and "plate.jpg" in page
    status, page = post(env.client(), {**fields(email="six@person.example"), "photos": [
        (io.BytesIO(jpeg_with_exif()), f"p{i}.jpg") for i in range(6)]})
    assert status == 422 and "at most 5 photos" in page
    assert env.counts() == before


def test_german_messages_for_german_readers(env: Env) -> None:
    status, page = post(env.client(), fields(name=""), lang="de")
    assert status == 422 and "Bitte nennen Sie Ihren Namen." in page


def test_the_hidden_field_filled_in_stores_nothing_but_says_thanks(env: Env) -> None:
    before = env.counts()
    status, page = post(env.client(), fields(website="http://spam.example"))
    assert status == 200 and "Thank you" in page
    assert env.counts() == before


def test_too_quick_a_post_is_sent_back_and_a_person_passes(
        database_url: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    slow = make_env(database_url, str(tmp_path_factory.mktemp("slow")),
                    FIELDCAL_INTAKE_MIN_FILL_SECONDS="1")
    client = slow.client()
    before = slow.counts()
    status, page = post(client, fields(email="quick@person.example"))
    assert status == 400 and "quicker than a person types" in page
    assert 'value="Greta Hahn"' in page, "what was typed is kept"
    assert slow.counts() == before
    page = client.get("/request").get_data(as_text=True)
    time.sleep(1.1)
    response = client.post("/request", data={**fields(email="patient@person.example"),
                                             "started": started(page), "altcha": solve(page)})
    assert response.status_code == 200
    # a forged or missing timestamp is no better than a quick one
    response = client.post("/request", data={**fields(), "started": "x.y.z"})
    assert response.status_code == 400


def test_a_proof_of_work_counts_once(env: Env) -> None:
    client = env.client()
    page = client.get("/request").get_data(as_text=True)
    proof = solve(page)
    first = client.post("/request", data={**fields(email="once@person.example"),
                                          "started": started(page), "altcha": proof})
    again = client.post("/request", data={**fields(email="twice@person.example"),
                                          "started": started(page), "altcha": proof})
    wrong = client.post("/request", data={**fields(email="forged@person.example"),
                                          "started": started(page), "altcha": "e30="})
    assert first.status_code == 200
    assert again.status_code == wrong.status_code == 400
    assert "check did not pass" in again.get_data(as_text=True)


def test_a_flood_of_100_posts_from_one_address_yields_at_most_10_requests(
        database_url: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    flood = make_env(database_url, str(tmp_path_factory.mktemp("flood")),
                     FIELDCAL_INTAKE_RATE="10")
    client = flood.client("203.0.113.77")
    page = client.get("/request").get_data(as_text=True)
    before = flood.counts()[0]
    statuses = [client.post("/request", data={**fields(email=f"flood{i}@spam.example"),
                                              "started": started(page)}).status_code
                for i in range(100)]
    assert statuses.count(200) == 10 and statuses.count(429) == 90
    assert flood.counts()[0] - before == 10
    limited = client.post("/request", data=fields())
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) > 0
    # another address is not held back by the flood
    other = flood.client("198.51.100.5")
    assert post(other, fields(email="real@person.example"))[0] == 200


def test_the_embed_may_be_framed_by_the_configured_origins_only(env: Env) -> None:
    plain = env.client().get("/request")
    framed = env.client().get("/request/embed")
    assert "frame-ancestors 'none'" in plain.headers["Content-Security-Policy"]
    assert plain.headers["X-Frame-Options"] == "DENY"
    assert f"frame-ancestors {EMBEDDER}" in framed.headers["Content-Security-Policy"]
    assert "X-Frame-Options" not in framed.headers
    assert 'action="/request/embed"' in framed.get_data(as_text=True)
    status, page = post(env.client(), fields(email="embed@person.example"), path="/request/embed")
    assert status == 200 and "[#J" in page


def test_embed_origins_are_checked_when_the_settings_are_read() -> None:
    with pytest.raises(ConfigError, match="INTAKE_EMBED_ORIGINS"):
        load_settings({"FIELDCAL_INTAKE_EMBED_ORIGINS": "https://ok.example, *; script-src *"})
    assert load_settings({"FIELDCAL_INTAKE_EMBED_ORIGINS": "https://a.example/, http://b:8080"}
                         ).intake_embed_origins == ("https://a.example", "http://b:8080")
