"""The calendar-user-address-set names the technician's email (what clients match ATTENDEE on)."""

from __future__ import annotations

from davkit import dav_client
from live import LiveServer
from seeding import Seed


def test_the_principal_lists_a_mailto_address(live: LiveServer, seed: Seed) -> None:
    alice = seed.technicians["alice"]
    client = dav_client(live, alice)
    principal = client.principal()
    addresses = principal.calendar_user_address_set()
    assert f"mailto:{alice.email}" in addresses
    assert any(a.rstrip("/").endswith("/dav/alice") for a in addresses)
