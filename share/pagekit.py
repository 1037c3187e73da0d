"""What the booking and manage pages share: app handles, headers, rate limits, problem pages."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from typing import Any
from zoneinfo import ZoneInfo

from flask import Response, current_app, make_response, render_template, request

from server import ratelimit
from server.actors import Actor
from server.models import Customer
from server.web.context import database, settings
from share.forms import FormSigner, cross_origin
from share.routes import secure

RATE_WINDOW = dt.timedelta(minutes=1)
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def form_signer() -> FormSigner:
    found = current_app.extensions.get("fieldcal.form_signer")
    if found is None:
        found = current_app.extensions["fieldcal.form_signer"] = FormSigner(
            settings().require_secret_keys())
    return found


SCRIPTED_PAGES = frozenset({"booking.details_form", "booking.details_submit",
                            "booking.details_edit", "booking.hold"})


def protect(response: Response) -> Response:
    """Security headers; the details form (which a script may fill in) may load our scripts."""
    return secure(response, scripts=request.endpoint in SCRIPTED_PAGES
                  and response.mimetype == "text/html")


def client_address() -> str:
    return request.remote_addr or "unknown"


def phone_values() -> dict[str, str]:
    """The business phone and email for "please call" lines, with tel: and mailto: links."""
    phone = settings().business_phone
    email = settings().business_email
    digits = "".join(c for c in phone if c.isdigit() or c == "+")
    return {"phone": phone, "phone_href": f"tel:{digits}" if digits else "",
            "office_email": email, "office_email_href": f"mailto:{email}" if email else ""}


def cutoff_values(starts_at: dt.datetime, zone: ZoneInfo, now: dt.datetime) -> dict[str, Any]:
    """What pages say about the cut-off: until when a customer may change a visit, and if still."""
    cutoff_at = starts_at - dt.timedelta(hours=settings().manage_cutoff_hours)
    return {"cutoff_hours": settings().manage_cutoff_hours,
            "cutoff_at": cutoff_at.astimezone(zone).strftime("%A %-d %B %Y, %H:%M"),
            "past_cutoff": now > cutoff_at}  # as the domain rule: open until the cut-off itself


def problem(status: int, title: str, message: str, *, retry_after: int | None = None,
            start_over: bool = True) -> Response:
    """A plain page that explains what went wrong and what to do next."""
    response = make_response(render_template(
        "share/book_problem.html", title=title, message=message, start_over=start_over,
        **phone_values()), status)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def rate_limited(scope: str) -> Response | None:
    """Count this POST against the client's address; a friendly 429 page once over the limit."""
    try:
        with database().write() as session:
            ratelimit.hit(session, f"{scope}:{client_address()}", settings().booking_rate,
                          RATE_WINDOW)
    except ratelimit.RateLimited as exc:
        return problem(429, "Please slow down",
                       f"We received many requests from your connection in a short time. "
                       f"Please wait {exc.retry_after} seconds and try again.",
                       retry_after=exc.retry_after, start_over=False)
    return None


def foreign_origin() -> bool:
    own = {settings().base_url, request.host_url}
    return cross_origin(request.headers, own)


def request_id() -> str:
    given = request.headers.get("X-Request-Id", "")
    return given if REQUEST_ID.match(given) else secrets.token_hex(8)


def customer_actor(customer: Customer | None, email: str, channel: str) -> Actor:
    name = email or (customer.email if customer else "") or (
        f"customer:{customer.id}" if customer else "customer")
    return Actor(name=name, channel=channel, role="customer", request_id=request_id())


def not_found() -> Response:
    """The same plain 404 as the share pages, whatever was wrong with the link."""
    return make_response(render_template("share/not_found.html"), 404)


def csrf_refusal(*binding: str | int) -> Response | None:
    """None when the form is genuine: same site (when the browser says) and a matching token."""
    if foreign_origin():
        return problem(403, "This form was sent from another site",
                       "For your safety we did not act on it. Please open your link again.",
                       start_over=False)
    token = request.form.get("csrf", "")
    if not token:
        return problem(400, "This form is incomplete",
                       "Please go back, reload the page and try again.", start_over=False)
    if not form_signer().csrf_matches(token, *binding):
        return problem(403, "This form has expired",
                       "The page was open for a long time or has changed since. Please go back, "
                       "reload the page and try again.", start_over=False)
    return None
