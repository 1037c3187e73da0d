"""What `fieldcal init --demo` prints works: booking page, share pages, feeds."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

from click.testing import CliRunner
from feedkit import strict_parse

from server.app import create_app
from server.cli import cli
from server.config import load_settings
from server.db import get_database
from server.models import utcnow
from server.scheduling import booking
from server.scheduling.availability import free_slots


def test_demo_links_and_booking_work(tmp_path: Path) -> None:
    env = {"FIELDCAL_INSTANCE": str(tmp_path), "FIELDCAL_BASE_URL": "http://demo.test",
           "FIELDCAL_SECRET_KEYS": None, "FIELDCAL_TIMEZONE": None, "FIELDCAL_DATABASE_URL": None}
    result = CliRunner().invoke(cli, ["init", "--demo"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "FIELDCAL_TIMEZONE=Europe/Berlin" in (tmp_path / "fieldcal.env").read_text()
    urls = re.findall(r"http://demo\.test(/\S+)", result.output)
    assert "/book" in urls and len([u for u in urls if u.startswith("/s/")]) == 2
    assert len([u for u in urls if u.startswith("/feeds/")]) == 2
    settings = load_settings({"FIELDCAL_INSTANCE": str(tmp_path)})
    client = create_app(settings=settings).test_client()
    for url in (u for u in urls if not u.startswith("/dav/")):  # /dav/ is Radicale's (wsgi.py)
        response = client.get(url)
        assert response.status_code == 200, url
        if url.startswith("/feeds/"):
            strict_parse(response.data)
    services = client.get("/book").get_data(as_text=True)
    assert "Repair visit" in services and "Annual service" in services
    with get_database(settings.database_url).read() as session:
        repair = booking.service_type_by_slug(session, "repair")
        now = utcnow()
        assert free_slots(session, repair, start=now, end=now + dt.timedelta(days=14), now=now)
