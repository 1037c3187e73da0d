"""gunicorn believes X-Forwarded-Proto from the proxies FIELDCAL_TRUSTED_PROXIES names."""

from __future__ import annotations

from server.serve import ServeOptions, forwarded_allow_ips, gunicorn_command


def test_trusted_networks_join_loopback() -> None:
    assert forwarded_allow_ips("") == "127.0.0.1,::1"
    assert forwarded_allow_ips("10.0.0.0/8, 192.0.2.7") == "127.0.0.1,::1,10.0.0.0/8,192.0.2.7/32"


def test_a_hop_count_trusts_whoever_stands_in_front() -> None:
    assert forwarded_allow_ips("1") == "*"


def test_the_command_carries_them() -> None:
    command = gunicorn_command(ServeOptions(trusted_proxies="172.31.5.0/24"))
    assert command[command.index("--forwarded-allow-ips") + 1] == "127.0.0.1,::1,172.31.5.0/24"
