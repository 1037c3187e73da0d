"""`fieldcal link new|list|revoke|rotate`: signed feed and share-page links."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import click

from server import links
from server.cli.common import Runtime, iso, json_option, parse_duration, pass_runtime, print_json
from server.models import ShareLink, utcnow

DAYS = re.compile(r"^(\d+)d$")


def _expiry(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    days = DAYS.match(value.strip().lower())
    span = dt.timedelta(days=int(days[1])) if days else parse_duration(value)
    return utcnow() + span


def link_url(runtime: Runtime, link: ShareLink) -> str:
    token = links.LinkSigner(runtime.settings.require_secret_keys()).dumps(link)
    return runtime.settings.base_url + links.path(link.purpose, token)


def link_json(runtime: Runtime, link: ShareLink) -> dict[str, Any]:
    live = link.revoked_at is None and (link.expires_at is None or link.expires_at > utcnow())
    return {
        "id": link.id,
        "purpose": link.purpose,
        "subject": f"{link.subject_kind}:{link.subject_id}",
        "audience": link.audience,
        "parent_id": link.parent_id,
        "url": link_url(runtime, link) if live else None,
        "created_at": iso(link.created_at),
        "created_by": link.created_by,
        "expires_at": iso(link.expires_at),
        "revoked_at": iso(link.revoked_at),
        "last_used_at": iso(link.last_used_at),
        "last_user_agent": link.last_user_agent or None,
    }


def link_line(runtime: Runtime, link: ShareLink) -> str:
    data = link_json(runtime, link)
    state = f"revoked {data['revoked_at']}" if link.revoked_at else (
        f"expires {data['expires_at']}" if link.expires_at else "no expiry")
    used = (f"last fetched {data['last_used_at']} by {data['last_user_agent']}"
            if link.last_used_at else "never fetched")
    return (f"#{link.id:<4} {link.purpose:<6} {link.audience:<10} {state}; {used}\n"
            f"      {data['url'] or '(no longer valid)'}")


@click.group()
def link() -> None:
    """Signed links to schedules: ICS feeds (subscribe), share pages and technicians' day pages."""


@link.command("new")
@click.argument("purpose", type=click.Choice([links.Purpose.FEED.value, links.Purpose.SHARE.value,
                                              links.Purpose.DAY.value]))
@click.argument("subject")
@click.option("--audience", type=click.Choice([a.value for a in links.LinkAudience]), default=None,
              help="What the link shows (default: full for staff subjects, customer view for customers).")
@click.option("--expires", default=None, metavar="DURATION", help="e.g. 30d, 12h, 90m.")
@click.option("--label", default="", help="A note for yourself: who got this link.")
@json_option
@pass_runtime
def link_new(runtime: Runtime, purpose: str, subject: str, audience: str | None, expires: str | None,
             label: str, as_json: bool) -> None:
    """Issue a link. SUBJECT: technician:LOGIN, team:SLUG, customer:ID or appointment:ID
    (a `day` link: technician:LOGIN, their "my day" page on a phone)."""
    runtime.settings.require_secret_keys()
    with runtime.write() as ctx:
        found = links.parse_subject(ctx.session, subject)
        issued = links.issue(ctx, links.Purpose(purpose), found,
                             audience=links.LinkAudience(audience) if audience else None,
                             expires_at=_expiry(expires), label=label)
        feed = links.companion_feed(ctx.session, issued)
        data = {"id": issued.id, "url": link_url(runtime, issued)}
        if feed is not None:
            data["feed_url"] = link_url(runtime, feed)
        token = links.LinkSigner(runtime.settings.require_secret_keys()).dumps(feed or issued)
        variant = links.freebusy_path(feed or issued, token)
        if variant is not None:
            data["freebusy_url"] = runtime.settings.base_url + variant
    if as_json:
        print_json(data)
        return
    click.echo(data["url"])
    if "feed_url" in data:
        click.echo(f"feed: {data['feed_url']}")
    if "freebusy_url" in data:
        click.echo(f"free/busy: {data['freebusy_url']}")


@link.command("list")
@click.argument("subject")
@json_option
@pass_runtime
def link_list(runtime: Runtime, subject: str, as_json: bool) -> None:
    """A subject's links: when each was last fetched, and by which client."""
    with runtime.read() as session:
        found = links.links_of(session, links.parse_subject(session, subject))
        data = [link_json(runtime, row) for row in found] if as_json else []
        lines = [] if as_json else [link_line(runtime, row) for row in found]
    if as_json:
        print_json(data)
    else:
        click.echo("\n".join(lines) if lines else "No links.")


@link.command("revoke")
@click.argument("link_id", type=int)
@json_option
@pass_runtime
def link_revoke(runtime: Runtime, link_id: int, as_json: bool) -> None:
    """Stop a link (and a share page's feed) working from the next request."""
    with runtime.write() as ctx:
        revoked = links.revoke(ctx, links.get_link(ctx.session, link_id))
        data = link_json(runtime, revoked)
    print_json(data) if as_json else click.echo(f"Link #{link_id} revoked.")


@link.command("rotate")
@click.argument("link_id", type=int)
@json_option
@pass_runtime
def link_rotate(runtime: Runtime, link_id: int, as_json: bool) -> None:
    """Give a link a new URL; the old one stops working."""
    with runtime.write() as ctx:
        rotated = links.rotate(ctx, links.get_link(ctx.session, link_id))
        data = {"id": rotated.id, "url": link_url(runtime, rotated)}
    print_json(data) if as_json else click.echo(data["url"])
