# ruff: noqa: F811  (the composed app's fixtures come from test_radicale_plugin)
"""Writes Radicale would refuse with its generic "Access to the requested resource forbidden"
say why instead: a plain MKCOL, a home that is not the caller's, a home itself."""

from __future__ import annotations

from typing import Any

import pytest
from seeding import Seed
from test_radicale_plugin import XML, app, as_user, client  # noqa: F401  (fixtures used by name)
from werkzeug.test import Client

GENERIC = b"Access to the requested resource forbidden"
MKCALENDAR = ('<?xml version="1.0" encoding="utf-8"?><C:mkcalendar xmlns:D="DAV:" '
              'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop><D:displayname>Spare'
              "</D:displayname></D:prop></D:set></C:mkcalendar>")
EVENT = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
         "UID:refusal-test@example.test\r\nDTSTAMP:20300101T000000Z\r\n"
         "DTSTART:20300101T090000Z\r\nDTEND:20300101T100000Z\r\nSUMMARY:x\r\nEND:VEVENT\r\n"
         "END:VCALENDAR\r\n")


def refused(response: Any) -> str:
    assert response.status_code == 403, (response.status_code, response.data)
    assert GENERIC not in response.data
    return response.data.decode()


@pytest.mark.parametrize("body", ["", '<?xml version="1.0" encoding="utf-8"?><D:mkcol '
                                      'xmlns:D="DAV:"><D:set><D:prop><D:displayname>Folder'
                                      "</D:displayname></D:prop></D:set></D:mkcol>"])
def test_plain_mkcol_says_to_make_a_calendar(client: Client, seed: Seed, body: str) -> None:
    carol = as_user(client, seed.technicians["carol"])
    text = refused(carol("MKCOL", "/dav/carol/folder/", body or None, **XML))
    assert "plain MKCOL" in text and "MKCALENDAR" in text and "/carol/folder/" in text


def test_someone_elses_home_says_whose_home_may_be_used(client: Client, seed: Seed) -> None:
    carol = as_user(client, seed.technicians["carol"])
    for method, path, body in (("MKCALENDAR", "/dav/alice/spare/", MKCALENDAR),
                               ("MKCOL", "/dav/alice/spare/", None),
                               ("PUT", "/dav/alice/personal/x.ics", EVENT),
                               ("MKCALENDAR", "/dav/nobody-here/spare/", MKCALENDAR),
                               ("MKCALENDAR", "/dav/team-north/spare/", MKCALENDAR)):
        headers = {"Content-Type": "text/calendar"} if method == "PUT" else XML
        text = refused(carol(method, path, body, **headers))
        assert "only in their own home, /carol/" in text, (method, path, text)


def test_a_home_itself_cannot_be_made_or_changed(client: Client, seed: Seed) -> None:
    carol = as_user(client, seed.technicians["carol"])
    text = refused(carol("MKCOL", "/dav/newhome/", None, **XML))
    assert "Homes are created by dispatch" in text and "/carol/<name>/" in text
    text = refused(carol("MKCALENDAR", "/dav/newhome/", MKCALENDAR, **XML))
    assert "Homes are created by dispatch" in text


def test_dispatcher_is_told_views_are_read_only(client: Client, seed: Seed) -> None:
    dispatcher = as_user(client, seed.dispatcher)
    text = refused(dispatcher("MKCALENDAR", "/dav/team-north/spare/", MKCALENDAR, **XML))
    assert "read-only view" in text
