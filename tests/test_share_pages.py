"""Share pages: what customers and teams see through a signed link, and what they never see."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pytest
from feedkit import EVIL, ORGANIZER, FeedSeed, day, new_key, seed_feeds, strict_parse
from flask.testing import FlaskClient
from live import AUDIT_KEY
from seeding import must_get

from server import links
from server.actors import SYSTEM
from server.app import create_app
from server.config import load_settings
from server.context import Context
from server.db import Database
from server.models import ShareLink


@dataclass
class ShareEnv:
    client: FlaskClient
    database: Database
    signer: links.LinkSigner
    seed: FeedSeed
    pages: dict[str, str]


@pytest.fixture(scope="module")
def share(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShareEnv]:
    settings = load_settings({"FIELDCAL_INSTANCE": str(tmp_path_factory.mktemp("share")),
                              "FIELDCAL_DATABASE_URL": database_url,
                              "FIELDCAL_BASE_URL": "https://cal.example.test",
                              "FIELDCAL_AUDIT_KEYS": AUDIT_KEY,
                              "FIELDCAL_BUSINESS_PHONE": "+49 30 555 0100"})
    app = create_app(settings=settings.with_overrides(secret_keys=(new_key(),)))
    database, signer = app.extensions["fieldcal.db"], app.extensions["fieldcal.signer"]
    seed = seed_feeds(database, signer)
    pages: dict[str, str] = {}
    with database.write() as session:
        ctx = Context(session, SYSTEM, ORGANIZER)
        for name, subject_text, audience in [
            ("customer", f"customer:{seed.customers['acme']}", None),
            ("evil", f"customer:{seed.customers['evil']}", None),
            ("appointment", f"appointment:{seed.appointments['acme_soon']}", None),
            ("team", "team:north", None),
            ("team_fb", "team:north", links.LinkAudience.FREEBUSY),
        ]:
            link = links.issue(ctx, links.Purpose.SHARE, links.parse_subject(session, subject_text),
                               audience=audience)
            pages[name] = signer.dumps(link)
    yield ShareEnv(app.test_client(), database, signer, seed, pages)


def get_page(share: ShareEnv, name: str, query: str = "") -> str:
    response = share.client.get(f"/s/{share.pages[name]}{query}")
    assert response.status_code == 200
    return response.get_data(as_text=True)


@pytest.mark.parametrize("name", ["customer", "team", "appointment"])
def test_pages_send_protective_headers(share: ShareEnv, name: str) -> None:
    response = share.client.get(f"/s/{share.pages[name]}")
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    assert "noindex" in response.headers["X-Robots-Tag"]
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert response.headers["Content-Type"].startswith("text/html")


def test_customer_page_shows_visits_in_their_zone(share: ShareEnv) -> None:
    html = get_page(share, "customer")
    assert "ACME Compressed Air" in html
    assert "America/New York" in html
    start_local = day(1).astimezone(ZoneInfo("America/New_York"))
    assert start_local.strftime("%H:%M") in html, "arrival window in the customer's time zone"
    assert "Alice" in html and "Berg" not in html, "technician first name only"
    assert "1 Harbour Road, Portsmouth" in html
    assert "Confirmed" in html
    assert "Evil" not in html and "Dentist" not in html


def test_subscribe_options_lead_to_a_working_feed(share: ShareEnv) -> None:
    html = get_page(share, "customer")
    https = re.search(r'value="(https://cal\.example\.test/feeds/[^"]+\.ics)"', html)
    webcal = re.search(r'href="(webcal://cal\.example\.test/feeds/[^"]+\.ics)"', html)
    assert https and webcal
    assert https.group(1).split("://")[1] == webcal.group(1).split("://")[1]
    feed = share.client.get(https.group(1).removeprefix("https://cal.example.test"))
    assert feed.status_code == 200
    strict_parse(feed.data)
    assert "From URL" in html and "Subscribe from web" in html


def test_add_this_appointment_download(share: ShareEnv) -> None:
    html = get_page(share, "appointment")
    href = re.search(r'href="(/s/[^"]+/visits/\d+\.ics)"', html)
    assert href
    response = share.client.get(href.group(1))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/calendar; charset=utf-8"
    assert "attachment" in response.headers["Content-Disposition"]
    events = list(strict_parse(response.data).walk("VEVENT"))
    assert len(events) == 1 and "ATTENDEE" not in events[0]
    other = share.seed.appointments["acme_bob"]
    assert share.client.get(f"/s/{share.pages['appointment']}/visits/{other}.ics").status_code == 404


def test_user_text_is_escaped_and_inert(share: ShareEnv) -> None:
    html = get_page(share, "evil")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert 'href="javascript:' not in html
    assert "\x00" not in html and "\x07" not in html
    assert EVIL.split("\r")[0] in html


def test_team_week_view(share: ShareEnv) -> None:
    html = get_page(share, "team")
    assert "North schedule" in html and "Read-only" in html
    assert "Screw compressor overheats" in html
    assert "<form" not in html
    monday = day(0).date()
    week = get_page(share, "team", f"?week={monday.isoformat()}")
    assert week.count('class="day"') == 7
    assert get_page(share, "team", "?week=garbage")


def test_freebusy_page_hides_details(share: ShareEnv) -> None:
    html = get_page(share, "team_fb")
    assert "Busy" in html
    assert "Screw compressor" not in html and "ACME" not in html and "Harbour" not in html


def test_bad_links_get_one_plain_404(share: ShareEnv) -> None:
    feed_token = share.seed.tokens["customer"]
    reference = share.client.get("/s/nonsense")
    assert reference.status_code == 404
    wrong_purpose = share.client.get(f"/s/{feed_token}")
    assert wrong_purpose.status_code == 404 and wrong_purpose.data == reference.data
    with share.database.write() as session:
        ctx = Context(session, SYSTEM, ORGANIZER)
        link = links.issue(ctx, links.Purpose.SHARE, links.parse_subject(session, "team:north"))
        token = share.signer.dumps(link)
    assert share.client.get(f"/s/{token}").status_code == 200
    with share.database.write() as session:
        links.revoke(Context(session, SYSTEM, ORGANIZER), must_get(session, ShareLink, link.id))
    revoked = share.client.get(f"/s/{token}")
    assert revoked.status_code == 404 and revoked.data == reference.data
    assert "not valid" in reference.get_data(as_text=True)


def test_revoking_a_page_revokes_its_feed(share: ShareEnv) -> None:
    with share.database.write() as session:
        ctx = Context(session, SYSTEM, ORGANIZER)
        link = links.issue(ctx, links.Purpose.SHARE, links.parse_subject(session, "team:north"))
        token = share.signer.dumps(link)
    feed_url = re.search(r'value="https://cal\.example\.test(/feeds/[^"]+)"',
                         share.client.get(f"/s/{token}").get_data(as_text=True))
    assert feed_url and share.client.get(feed_url.group(1)).status_code == 200
    with share.database.write() as session:
        links.revoke(Context(session, SYSTEM, ORGANIZER), must_get(session, ShareLink, link.id))
    assert share.client.get(feed_url.group(1)).status_code == 404


def test_page_fetch_is_recorded(share: ShareEnv) -> None:
    share.client.get(f"/s/{share.pages['customer']}", headers={"User-Agent": "Mobile Safari"})
    with share.database.read() as session:
        found, _ = share.signer.loads(share.pages["customer"], links.Purpose.SHARE)
        link = must_get(session, ShareLink, found)
        assert link.last_user_agent == "Mobile Safari" and link.last_used_at is not None


def test_static_stylesheet_is_served(share: ShareEnv) -> None:
    response = share.client.get("/static/share/share.css")
    assert response.status_code == 200 and b".card" in response.data
