"""iMIP email (RFC 6047): the calendar object, the words around it, the MIME tree.

One message is multipart/mixed > [multipart/alternative > [text/plain,
text/html, text/calendar; method=M], invite.ics]. The calendar part's METHOD is
the MIME `method=` parameter; METHOD appears only here, never in feeds. A
message without a method (a reminder) carries the .ics as an attachment only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
from dataclasses import dataclass, field
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

import icalendar

from server.ical import PRODID, Audience, appointment_event
from server.models import Appointment, AppointmentStatus, Customer, User
from server.text import clean_text, one_line

ATTACHMENT_NAME = "invite.ics"
# Headers are kept on one line (up to RFC 5322's hard limit): Python's folder puts a
# fold right after a space before an encoded word, which readers show as two spaces.
MAIL_POLICY = policy.SMTP.clone(max_line_length=998)
ORGANIZER_NAME = "fieldcal dispatch"


class Method(StrEnum):
    REQUEST = "REQUEST"
    CANCEL = "CANCEL"


@dataclass(frozen=True)
class Notice:
    """What one email says, once: rendered to text and to HTML from the same facts."""

    subject: str
    headline: str
    greeting: str
    facts: tuple[tuple[str, str], ...]
    link: tuple[str, str] | None = None  # (what it does, URL)
    closing: tuple[str, ...] = ()
    video_url: str = ""  # a remote visit's meeting link (Meet, Zoom), when the platform made one


@dataclass(frozen=True)
class Letter:
    """A finished email to one person."""

    sender: str
    recipient: str
    recipient_name: str
    notice: Notice
    calendar: str  # the VCALENDAR text
    method: Method | None
    message_id: str
    date: dt.datetime = field(compare=False)


# -- time in the reader's zone ---------------------------------------------------------------

def _day(moment: dt.datetime) -> str:
    return f"{moment:%a} {moment.day} {moment:%b}"


def span(start: dt.datetime, end: dt.datetime, zone: str) -> str:
    """'Tue 3 Mar, 08:00 to 12:00' (en dash) in `zone`; the end's day is named when it differs."""
    tz = ZoneInfo(zone)
    local_start, local_end = start.astimezone(tz), end.astimezone(tz)
    if local_start.date() == local_end.date():
        return f"{_day(local_start)}, {local_start:%H:%M}–{local_end:%H:%M}"
    return f"{_day(local_start)}, {local_start:%H:%M} – {_day(local_end)}, {local_end:%H:%M}"


def long_span(start: dt.datetime, end: dt.datetime, zone: str) -> str:
    """'Tuesday 3 March 2026, 08:00 to 12:00 (Europe/Berlin)', for the body."""
    tz = ZoneInfo(zone)
    local_start, local_end = start.astimezone(tz), end.astimezone(tz)
    day = f"{local_start:%A} {local_start.day} {local_start:%B %Y}"
    if local_start.date() == local_end.date():
        return f"{day}, {local_start:%H:%M}–{local_end:%H:%M} ({zone})"
    return f"{day}, {local_start:%H:%M} – {_day(local_end)}, {local_end:%H:%M} ({zone})"


def arrival(appointment: Appointment) -> tuple[dt.datetime, dt.datetime]:
    """What a customer is promised: the arrival window, else the visit itself."""
    if appointment.window_start is not None and appointment.window_end is not None:
        return appointment.window_start, appointment.window_end
    return appointment.starts_at, appointment.ends_at


# -- calendar objects -------------------------------------------------------------------------

def calendar_text(event: icalendar.Event, method: Method | None) -> str:
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    if method is not None:
        calendar.add("method", method.value)
    calendar.add_component(event)
    return calendar.to_ical().decode("utf-8")


def _organizer(event: icalendar.Event, organizer: str) -> None:
    if "organizer" not in event:
        event.add("organizer", f"mailto:{organizer}", parameters={"CN": ORGANIZER_NAME})


def customer_event(appointment: Appointment, organizer: str, manage_url: str | None,
                   video_url: str = "") -> icalendar.Event:
    """The customer's view (no internal details) with ORGANIZER and the customer as ATTENDEE;
    a meeting link goes in as RFC 7986 CONFERENCE and, for clients that ignore it, in the
    description."""
    event = appointment_event(appointment, Audience.CUSTOMER, organizer)
    if video_url:
        event.add("conference", video_url, parameters={"VALUE": "URI", "FEATURE": "VIDEO",
                                                        "LABEL": "Video call"})
        described = str(event.get("description", ""))
        event.pop("description", None)
        event.add("description", f"{described}\nJoin the video call: {video_url}".strip())
    customer: Customer = appointment.job.customer
    _organizer(event, organizer)
    event.add("attendee", f"mailto:{customer.email}", parameters={
        "CN": one_line(customer.name), "ROLE": "REQ-PARTICIPANT", "PARTSTAT": "ACCEPTED",
        "CUTYPE": "INDIVIDUAL", "RSVP": "FALSE"})
    if manage_url:
        event.add("url", manage_url)
    return event


def technician_event(appointment: Appointment, technician: User, organizer: str) -> icalendar.Event:
    """The technician's view. Sent to a technician the visit no longer belongs to, it names
    them as the ATTENDEE; if the visit goes on without them it carries no STATUS (RFC 5546
    3.2.5: a CANCEL that uninvites attendees, not one that cancels the event)."""
    event = appointment_event(appointment, Audience.TECHNICIAN, organizer)
    _organizer(event, organizer)
    if appointment.technician_id != technician.id:
        event.pop("attendee", None)
        if appointment.status != AppointmentStatus.CANCELLED:
            event.pop("status", None)
        event.add("attendee", f"mailto:{technician.email}", parameters={
            "CN": one_line(technician.name), "ROLE": "REQ-PARTICIPANT", "CUTYPE": "INDIVIDUAL"})
    return event


# -- the words ---------------------------------------------------------------------------------

CUSTOMER_HEADLINES = {
    "confirmed": ("Your compressor service visit is confirmed for {when}",
                  "Your compressor service visit is confirmed."),
    "moved": ("Your compressor service visit has moved to {when}",
              "Your compressor service visit has moved to a new time."),
    "updated": ("Your compressor service visit on {when} was updated",
                "There is an update to your compressor service visit."),
    "on_the_way": ("Your technician {who} is on the way: compressor service visit {when}",
                   "Your technician {who} is on the way."),
    "cancelled": ("Your compressor service visit on {when} is cancelled",
                  "Your compressor service visit is cancelled."),
    "reminder": ("Reminder: your compressor service visit on {when}",
                 "A reminder of your compressor service visit."),
    "video_link": ("Your video call link: compressor service visit {when}",
                   "Your visit is a video call. Here is the link to join it."),
}

TECHNICIAN_HEADLINES = {
    "assigned": ("New job: {title} on {when}", "A visit was assigned to you."),
    "moved": ("Job moved: {title} now {when}", "One of your visits has moved."),
    "updated": ("Job updated: {title} on {when}", "One of your visits was updated."),
    "cancelled": ("Job cancelled: {title} on {when}", "This visit is cancelled."),
    "removed": ("Job removed from your schedule: {title} on {when}",
                "This visit is no longer yours; it was taken off your schedule."),
}


def customer_notice(appointment: Appointment, change: str, manage_url: str | None,
                    *, business_phone: str = "", business_email: str = "", video_url: str = "",
                    eta: dt.datetime | None = None) -> Notice:
    """`eta`: when a technician on the way should arrive (said only when known)."""
    customer = appointment.job.customer
    start, end = arrival(appointment)
    zone = customer.timezone
    subject, headline = CUSTOMER_HEADLINES[change]
    has_window = appointment.window_start is not None
    facts: list[tuple[str, str]] = [
        ("Arrival window" if has_window else "When", long_span(start, end, zone)),
        ("Service", one_line(appointment.job.title)),
    ]
    site = appointment.job.site
    if site is not None and clean_text(site.address):
        facts.append(("Where", clean_text(site.address)))
    who = one_line(appointment.technician.first_name) if appointment.technician is not None else ""
    if who and change != "cancelled":
        facts.append(("Technician", who))
    if eta is not None:
        local = eta.astimezone(ZoneInfo(zone))
        facts.insert(0, ("Estimated arrival", f"about {local:%H:%M} ({zone})"))
    facts.append(("Reference", f"visit #{appointment.id}"))
    closing: list[str] = []
    reach = " or ".join(part for part in (
        f"call us on {business_phone}" if business_phone else "",
        f"email {business_email}" if business_email else "") if part)
    if change == "cancelled":
        closing.append(f"Nothing more is needed from you. To book again, {reach}." if reach else
                       "Nothing more is needed from you. To book again, please visit our booking "
                       "page or call us.")
    else:
        closing.append(f"The calendar invitation is attached ({ATTACHMENT_NAME}).")
        if reach:
            closing.append(f"Questions? {reach[0].upper()}{reach[1:]}.")
    link = ("Reschedule or cancel your visit", manage_url) if manage_url else None
    return Notice(
        subject=subject.format(when=span(start, end, zone), who=who).replace("  ", " "),
        headline=headline.format(who=who).replace("  ", " "),
        greeting=f"Hello {one_line(customer.name)},",
        facts=tuple(facts),
        link=link,
        closing=tuple(closing),
        video_url=video_url if change != "cancelled" else "",
    )


def technician_notice(appointment: Appointment, technician: User, change: str) -> Notice:
    job = appointment.job
    zone = technician.timezone
    subject, headline = TECHNICIAN_HEADLINES[change]
    title = one_line(job.title)
    facts: list[tuple[str, str]] = [
        ("When", long_span(appointment.starts_at, appointment.ends_at, zone)),
        ("Job", f"{title} (job #{job.id}, priority {job.priority})"),
        ("Customer", one_line(job.customer.name)),
    ]
    if job.site is not None and clean_text(job.site.address):
        facts.append(("Where", clean_text(job.site.address)))
    if change not in ("cancelled", "removed") and clean_text(job.problem):
        facts.append(("Problem", clean_text(job.problem)))
    closing = ("Your phone's calendar shows the same change (Jobs calendar).",)
    return Notice(
        subject=subject.format(title=title, when=span(appointment.starts_at, appointment.ends_at, zone)),
        headline=headline,
        greeting=f"Hello {one_line(technician.first_name)},",
        facts=tuple(facts),
        closing=closing,
    )


def render_text(notice: Notice) -> str:
    lines = [notice.greeting, "", notice.headline, ""]
    width = max((len(label) for label, _ in notice.facts), default=0)
    for label, value in notice.facts:
        first, *rest = value.split("\n")
        lines.append(f"{label + ':':<{width + 1}} {first}")
        lines.extend(f"{'':<{width + 1}} {more}" for more in rest)
    if notice.video_url:
        lines += ["", "Join the video call:", notice.video_url]
    if notice.link is not None:
        lines += ["", f"{notice.link[0]}:", notice.link[1]]
    if notice.closing:
        lines += ["", *notice.closing]
    return "\n".join(lines) + "\n"


def render_html(notice: Notice) -> str:
    def esc(text: str) -> str:
        return html.escape(text, quote=True).replace("\n", "<br>")

    rows = "".join(
        f'<tr><th align="left" valign="top" style="padding:2px 12px 2px 0">{esc(label)}</th>'
        f'<td style="padding:2px 0">{esc(value)}</td></tr>'
        for label, value in notice.facts
    )
    link = ""
    if notice.link is not None:
        label, url = notice.link
        link = (f'<p><a href="{esc(url)}" style="display:inline-block;padding:10px 16px;'
                f'background:#1f6feb;color:#ffffff;border-radius:6px;text-decoration:none;'
                f'font-weight:bold">{esc(label)}</a></p>'
                f'<p style="font-size:small;color:#555">If the button does not work, copy this '
                f'address into your browser: {esc(url)}</p>')
    if notice.video_url:
        link = (f'<p><a href="{esc(notice.video_url)}" style="font-weight:bold">Join the video call</a>'
                f'<br><span style="font-size:small;color:#555">{esc(notice.video_url)}</span></p>') + link
    closing = "".join(f"<p>{esc(line)}</p>" for line in notice.closing)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(notice.subject)}</title></head>"
        '<body style="font-family:sans-serif;line-height:1.4;color:#1f2328">'
        f"<p>{esc(notice.greeting)}</p><h1 style=\"font-size:1.25em\">{esc(notice.headline)}</h1>"
        f'<table role="presentation">{rows}</table>{link}{closing}</body></html>\n'
    )


# -- the MIME tree -----------------------------------------------------------------------------

def message_id(key: str, sender: str) -> str:
    """A Message-ID that is the same for the same idempotency key (receivers drop repeats)."""
    domain = sender.rpartition("@")[2] or "localhost"
    return f"<{hashlib.sha256(key.encode('utf-8')).hexdigest()[:40]}@{domain}>"


def _address(name: str, email: str) -> Address:
    local, _, domain = email.rpartition("@")
    return Address(name, username=local, domain=domain)


def compose(letter: Letter) -> EmailMessage:
    # A non-ASCII address cannot be encoded into ASCII headers: such a message is written
    # in UTF-8 and sent with SMTPUTF8 (RFC 6531).
    international = not (letter.sender.isascii() and letter.recipient.isascii())
    message = EmailMessage(policy=MAIL_POLICY.clone(utf8=True) if international else MAIL_POLICY)
    message["From"] = _address(ORGANIZER_NAME, letter.sender)
    message["To"] = _address(letter.recipient_name, letter.recipient)
    message["Subject"] = letter.notice.subject
    message["Date"] = format_datetime(letter.date.astimezone(dt.UTC))
    message["Message-ID"] = letter.message_id
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(render_text(letter.notice), cte="quoted-printable")
    message.add_alternative(render_html(letter.notice), subtype="html", cte="quoted-printable")
    if letter.method is not None:
        message.add_alternative(letter.calendar, subtype="calendar", cte="base64",
                                params={"method": letter.method.value})
        message.add_attachment(letter.calendar.encode("utf-8"), maintype="application",
                               subtype="ics", filename=ATTACHMENT_NAME)
    else:
        message.add_attachment(letter.calendar.encode("utf-8"), maintype="application",
                               subtype="ics", filename="visit.ics")
    return message

