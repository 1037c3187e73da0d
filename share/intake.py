"""The public service request form: /request, and /request/embed for the company's website.

Spam is kept out without a third-party service: a proof of work the browser solves
(ALTCHA, verified here, each solution accepted once), a field people never see
(filled in: we say thanks and store nothing), a minimum time between showing the form
and sending it, and a limit of posts per client address. Without JavaScript the form
still works: the proof is then missing and the other three checks still apply.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import time

from altcha import ChallengeOptionsV1, create_challenge_v1, verify_solution_v1
from flask import Blueprint, Response, make_response, render_template, request, url_for
from itsdangerous import BadData, Signer
from werkzeug.datastructures import FileStorage

from server import ratelimit
from server.actors import Actor
from server.context import Context
from server.errors import InvalidInput
from server.intake.photos import MAX_PHOTOS, Photo, clean_photo
from server.intake.requests import URGENCIES, RequestRefused, ServiceRequest, receive
from server.notify.acknowledge import reference
from server.web.context import database, settings
from share import pagekit
from share.intake_text import FIELD_MESSAGES_DE, LANGUAGES, TEXT
from share.routes import secure

log = logging.getLogger(__name__)
bp = Blueprint("intake", __name__, template_folder="templates")

FIELDS = ("name", "email", "phone", "address", "make", "model", "serial", "problem", "urgency")
RATE_WINDOW = dt.timedelta(hours=1)
FORM_MAX_AGE = 24 * 3600
CHALLENGE_LIFETIME = dt.timedelta(minutes=30)
CHALLENGE_MAX_NUMBER = 50_000  # a phone finds it in well under a second on average


def _lang() -> str:
    return request.accept_languages.best_match(LANGUAGES) or "en"


def _key(purpose: str) -> bytes:
    secret = settings().require_secret_keys()[0].encode("utf-8")
    return hmac.new(secret, f"fieldcal.intake.{purpose}".encode(), hashlib.sha256).digest()


def _started_signer() -> Signer:
    return Signer(_key("started"), salt="fieldcal.intake.started")


def _challenge() -> str:
    challenge = create_challenge_v1(ChallengeOptionsV1(
        hmac_key=_key("altcha").hex(), max_number=CHALLENGE_MAX_NUMBER,
        expires=dt.datetime.now(dt.UTC) + CHALLENGE_LIFETIME))
    return json.dumps({"algorithm": challenge.algorithm, "challenge": challenge.challenge,
                       "maxnumber": challenge.max_number, "salt": challenge.salt,
                       "signature": challenge.signature})


def _page(embed: bool, *, form: dict[str, str] | None = None, errors: dict[str, str] | None = None,
          notice: str = "", status: int = 200) -> Response:
    lang = _lang()
    started = _started_signer().sign(f"{time.time():.3f}.{secrets.token_urlsafe(6)}").decode()
    action = url_for("intake.embed_submit" if embed else "intake.submit")
    response = make_response(render_template(
        "share/request.html", t=TEXT[lang], lang=lang, form=form or {"urgency": "normal"},
        errors=errors or {}, notice=notice, started=started, challenge=_challenge(),
        action=action), status)
    response.headers["Content-Language"] = lang
    return response


def _done(title: str, message: str, status: int = 200) -> Response:
    return make_response(render_template("share/request_done.html", title=title, message=message,
                                         lang=_lang()), status)


def _seconds_since_shown() -> float | None:
    try:
        value = _started_signer().unsign(request.form.get("started", "")).decode()
        shown = float(value.split(".", 2)[0] + "." + value.split(".", 2)[1])
    except (BadData, ValueError, IndexError):
        return None
    elapsed = time.time() - shown
    return elapsed if 0 <= elapsed <= FORM_MAX_AGE else None


def _limited() -> int | None:
    """Seconds to wait when this client address is over its posts per hour, else None."""
    try:
        with database().write() as session:
            ratelimit.hit(session, f"intake:{pagekit.client_address()}", settings().intake_rate,
                          RATE_WINDOW)
    except ratelimit.RateLimited as exc:
        return exc.retry_after
    return None


def _proof_ok(payload: str) -> bool:
    """A valid, unexpired ALTCHA solution that was not used before."""
    try:
        verified, _ = verify_solution_v1(payload, _key("altcha").hex(), check_expires=True)
    except (ValueError, TypeError, KeyError) as exc:
        log.info("request form: unreadable proof of work (%s)", type(exc).__name__)
        return False
    if not verified:
        return False
    try:
        with database().write() as session:
            digest = hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]
            ratelimit.hit(session, f"intake-proof:{digest}", 1, CHALLENGE_LIFETIME)
    except ratelimit.RateLimited:
        return False
    return True


def _photos(files: list[FileStorage], lang: str) -> tuple[tuple[Photo, ...], str]:
    chosen = [f for f in files if f.filename]
    if len(chosen) > MAX_PHOTOS:
        return (), FIELD_MESSAGES_DE["photos"] if lang == "de" else (
            f"Please send at most {MAX_PHOTOS} photos.")
    photos: list[Photo] = []
    for upload in chosen:
        try:
            photos.append(clean_photo(upload.filename or "photo", upload.read(5 * 1024 * 1024 + 1)))
        except InvalidInput as exc:
            return (), FIELD_MESSAGES_DE["photos"] if lang == "de" else exc.message
    return tuple(photos), ""


def _submit(embed: bool) -> Response:
    lang = _lang()
    t = TEXT[lang]
    if pagekit.foreign_origin():
        return _done(t["title"], t["foreign"], 403)
    wait = _limited()
    if wait is not None:
        response = _done(t["slow_down_title"], t["slow_down"].format(seconds=wait), 429)
        response.headers["Retry-After"] = str(wait)
        return response
    form = {name: request.form.get(name, "") for name in FIELDS}
    if request.form.get("website"):
        log.info("request form: the hidden field was filled in; nothing stored")
        return _done(t["thanks_title"], t["thanks_no_email"].format(ref="—"))
    shown = _seconds_since_shown()
    if shown is None or shown < settings().intake_min_fill_seconds:
        return _page(embed, form=form, notice=t["too_fast"], status=400)
    proof = request.form.get("altcha", "")
    if proof and not _proof_ok(proof):
        return _page(embed, form=form, notice=t["proof_failed"], status=400)
    photos, photo_error = _photos(request.files.getlist("photos"), lang)
    service_request = ServiceRequest(
        source="web", name=form["name"], email=form["email"].strip(), phone=form["phone"],
        address=form["address"], make=form["make"], model=form["model"], serial=form["serial"],
        problem=form["problem"], urgency=form["urgency"] if form["urgency"] in URGENCIES else "",
        timezone=settings().timezone, photos=photos)
    errors = service_request.problems()
    if photo_error:
        errors["photos"] = photo_error
    if lang == "de":
        errors = {name: FIELD_MESSAGES_DE.get(name, message) for name, message in errors.items()}
    if errors:
        return _page(embed, form=form, errors=errors, status=422)
    actor = Actor(name=service_request.email or service_request.phone or "web form",
                  channel="web", role="customer", request_id=pagekit.request_id())
    try:
        with database().write() as session:
            received = receive(Context(session, actor, settings().organizer), service_request)
            job_id, email = received.job.id, received.customer.email
    except RequestRefused as exc:
        return _page(embed, form=form, errors={exc.field: exc.message}, status=422)
    log.info("request form: job %s received (%s photos, proof %s)", job_id, len(photos),
             "given" if proof else "missing")
    message = (t["thanks_body"].format(ref=reference(job_id), email=email) if email
               else t["thanks_no_email"].format(ref=reference(job_id)))
    return _done(t["thanks_title"], message)


@bp.get("/request")
def form() -> Response:
    return _page(False)


@bp.post("/request")
def submit() -> Response:
    return _submit(False)


@bp.get("/request/embed")
def embed() -> Response:
    return _page(True)


@bp.post("/request/embed")
def embed_submit() -> Response:
    return _submit(True)


@bp.after_request
def protect(response: Response) -> Response:
    """Our own script only; the embed may be framed by the configured origins and no others."""
    secure(response, scripts=response.mimetype == "text/html")
    if request.endpoint in ("intake.embed", "intake.embed_submit"):
        origins = " ".join(settings().intake_embed_origins) or "'none'"
        response.headers["Content-Security-Policy"] = response.headers[
            "Content-Security-Policy"].replace("frame-ancestors 'none'", f"frame-ancestors {origins}")
        if settings().intake_embed_origins:
            del response.headers["X-Frame-Options"]
    response.vary.add("Accept-Language")
    return response
