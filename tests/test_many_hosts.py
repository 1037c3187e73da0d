"""Three app hosts, two outbox workers, one PostgreSQL, HAProxy with TLS in front.

The topology (tests/topology.py) starts itself: hosts in their own network namespaces
when the machine allows it, else on their own loopback addresses (the artefact
`artifacts/many-hosts.json` says which ran). PostgreSQL only: SQLite is one machine's
database by design.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from apikit import Keys, make_keys
from bookkit import BookingSeed, details, hidden, live_in, seed_booking, slot_values
from hostkit import STREAM, Load, SlowInbox, StreamReader, percentile, slow_smtp
from live import PG_ADMIN_URL, postgres_problem, use_audit_key
from mailkit import SmtpServer, add_customer, add_technician, book, domain
from sqlalchemy import func, select
from topology import Host, Topology

from server import changes
from server.change_feed import PG_POLL_S
from server.db import Database
from server.migrate import alembic_config
from server.models import Appointment, AppointmentStatus, AuditEntry, Customer, OutboxMessage

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.serial]

RACERS = 50
CHANGES = 20
LEASE_S = 3
MAILED = 30  # visits booked at once: an email to the customer and one to the technician each
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
RESULTS: dict[str, Any] = {}


@dataclass
class Site:
    topology: Topology
    db: Database
    seed: BookingSeed
    keys: Keys
    smtp: SmtpServer
    inbox: SlowInbox


def _require_parts() -> None:
    for problem in (postgres_problem(),
                    None if subprocess.run(["which", "haproxy"], capture_output=True).returncode == 0
                    else "haproxy is not installed (./dev test installs it)"):
        if problem is None:
            continue
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem} (CI=true: the many-host tests must run)", pytrace=False)
        pytest.skip(problem)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    _require_parts()
    smtp, inbox = slow_smtp()
    topology = Topology(tmp_path_factory.mktemp("hosts"),
                        env={"FIELDCAL_DAV_AUTH_DELAY": "0"},
                        worker_env={"FIELDCAL_SMTP_URL": smtp.url,
                                    "FIELDCAL_OUTBOX_LEASE_SECONDS": str(LEASE_S)})
    db: Database | None = None
    try:
        topology.start()
        use_audit_key(topology.database_url)
        db = Database(topology.database_url)
        RESULTS.update(isolation=topology.isolation.value, hosts=len(topology.hosts),
                       started_in_s=round(topology.started_in_s, 1))
        yield Site(topology, db, seed_booking(db, prefix="mh-"), make_keys(db), smtp, inbox)
    except RuntimeError as exc:
        pytest.fail(f"{exc}\n{topology.logs()}", pytrace=False)
    finally:
        if db is not None:
            db.dispose()
        topology.stop()
        smtp.stop()
        topology.keep_logs(ARTIFACTS / "many-hosts-logs")
        (ARTIFACTS / "many-hosts.json").write_text(json.dumps(RESULTS, indent=1) + "\n")
        print(f"\nmany hosts: {RESULTS}")


def test_migrations_ran_once_though_all_hosts_started_together(site: Site) -> None:
    from alembic.script import ScriptDirectory

    revisions = list(ScriptDirectory.from_config(alembic_config(site.db)).walk_revisions())
    row: tuple[Any, ...] | None = None
    deadline = time.monotonic() + 10
    with psycopg.connect(site.topology.database_url, autocommit=True) as connection:
        while time.monotonic() < deadline:  # statistics reach the view within a second or so
            row = connection.execute(
                "SELECT n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables "
                "WHERE relname = 'alembic_version'").fetchone()
            if row is not None and row[0] + row[1] >= len(revisions):
                break
            time.sleep(0.3)
        versions = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    assert versions == [(revisions[0].revision,)]
    # One walk up the chain: one insert, then one update per later revision, never again.
    assert row == (1, len(revisions) - 1, 0), row
    for host in site.topology.hosts:
        assert host.process.running
        assert "Traceback" not in host.process.log.read_text(errors="replace")


def _post_all_at_once(posts: list[tuple[httpx.Client, str, dict[str, str]]]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(posts))
    answers: list[httpx.Response | None] = [None] * len(posts)

    def send(index: int) -> None:
        client, path, form = posts[index]
        barrier.wait(timeout=60)
        answers[index] = client.post(path, data=form, timeout=60)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(posts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=90)
    assert all(a is not None for a in answers), "every racer was answered"
    return [a for a in answers if a is not None]


def test_fifty_racers_across_three_hosts_leave_one_winner(site: Site) -> None:
    slug = site.seed.repair
    forms: list[dict[str, str]] = []
    slot = ""
    for index in range(RACERS):
        with site.topology.client(source=f"127.0.2.{index + 1}") as client:
            email = f"racer{index}-{secrets.token_hex(3)}@example.test"
            first = client.post(f"/book/{slug}/details",
                                data=details(email, phone=f"+49 30 7100{index:03d}"))
            assert first.status_code == 200, first.text[:300]
            if not slot:
                monday = dt.date.fromisoformat(hidden(first.text, "week")) + dt.timedelta(days=7)
                week = client.post(f"/book/{slug}/slots", data={"details": hidden(first.text, "details"),
                                                                "week": monday.isoformat()})
                slot = slot_values(week.text)[3]
        forms.append({"details": hidden(first.text, "details"), "key": hidden(first.text, "key"),
                      "slot": slot})
    served = [host.served(f"POST /book/{slug}/hold") for host in site.topology.hosts]
    # each racer on a new connection (the proxy closes keep-alive connections idle for 10 s)
    clients = [site.topology.client(source=f"127.0.2.{i + 1}") for i in range(RACERS)]
    try:
        answers = _post_all_at_once([(c, f"/book/{slug}/hold", f)
                                     for c, f in zip(clients, forms, strict=True)])
    finally:
        for client in clients:
            client.close()
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [303] + [409] * (RACERS - 1), statuses
    assert all("That time was just taken" in a.text for a in answers if a.status_code == 409)
    held = live_in(site.db, dt.datetime.fromisoformat(slot), site.seed.technician)
    assert len(held) == 1 and held[0].status == AppointmentStatus.TENTATIVE
    with site.db.read() as session:
        assert session.scalar(select(func.count()).select_from(Appointment)
                              .where(Appointment.starts_at == dt.datetime.fromisoformat(slot))) == 1
    spread = [host.served(f"POST /book/{slug}/hold") - before
              for host, before in zip(site.topology.hosts, served, strict=True)]
    assert sum(spread) == RACERS and all(count >= RACERS // 5 for count in spread), spread
    RESULTS["race_spread"] = spread


def test_booking_rate_limit_holds_across_hosts(site: Site) -> None:
    limit = 20  # FIELDCAL_BOOKING_RATE's default: posts per minute per client address
    slug = site.seed.repair
    form = details(f"limited-{secrets.token_hex(3)}@example.test", phone="+49 30 7200001")
    before = [host.served(f"POST /book/{slug}/details") for host in site.topology.hosts]
    with site.topology.client(source="127.0.3.1") as client:
        statuses = [client.post(f"/book/{slug}/details", data=form).status_code for _ in range(limit + 4)]
        refused = client.post(f"/book/{slug}/details", data=form)
    spread = [host.served(f"POST /book/{slug}/details") - b
              for host, b in zip(site.topology.hosts, before, strict=True)]
    assert statuses == [200] * limit + [429] * 4, statuses
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert all(count >= 5 for count in spread), spread  # every host counted in the one window
    with site.topology.client(source="127.0.3.2") as neighbour:  # its own address, its own count
        assert neighbour.post(f"/book/{slug}/details", data=form).status_code == 200


def _propfind(client: httpx.Client, login: str, password: str) -> int:
    return client.request("PROPFIND", f"/dav/{login}/", auth=(login, password),
                          headers={"Depth": "0"}).status_code


def test_caldav_login_throttle_holds_across_hosts(site: Site) -> None:
    tag = secrets.token_hex(3)
    with site.topology.client(source="127.0.4.1") as guesser:
        # 30 wrong passwords from one address, each for another login, spread over the hosts
        wrong = [_propfind(guesser, f"nobody{tag}{i}", "wrong") for i in range(30)]
        assert wrong == [401] * 30, wrong
        assert _propfind(guesser, f"nobody{tag}x", "wrong") == 429
    # 20 wrong passwords for one login, each from another address: the login's count is shared
    login = site.seed.technician
    attempts = []
    for i in range(21):
        with site.topology.client(source=f"127.0.4.{i + 10}") as client:
            attempts.append(_propfind(client, login, f"wrong-{i}"))
    assert attempts == [401] * 20 + [429], attempts


def _last_change(db: Database) -> int:
    with db.read() as session:
        return session.scalar(select(func.max(AuditEntry.id))) or 0


def _create_customer(host: Host, keys: Keys, name: str) -> tuple[str, float]:
    started = time.monotonic()
    answer = httpx.post(host.url("/api/v1/customers"), headers=keys.headers("dispatcher"),
                        json={"name": name, "email": f"{secrets.token_hex(4)}@stream.example.test"},
                        timeout=30)
    assert answer.status_code == 201, answer.text[:300]
    return str(answer.json()["id"]), started


def test_a_change_on_host_a_reaches_streams_on_host_c_and_through_the_proxy(site: Site) -> None:
    host_a, host_c = site.topology.hosts[0], site.topology.hosts[-1]
    after = _last_change(site.db)
    readonly = site.keys.headers("readonly")
    direct = StreamReader(httpx.Client(), host_c.url(STREAM), readonly, after)
    proxied = StreamReader(site.topology.client(), STREAM, readonly, after)
    delays: list[float] = []
    proxied_delays: list[float] = []
    received: list[int] = []
    with direct, proxied:
        for index in range(CHANGES):
            customer, started = _create_customer(host_a, site.keys, f"Stream {index}")
            arrival, seen = direct.until("customer", customer, timeout=5)
            received += [a.id for a in seen]
            delays.append(arrival.at - started)
            arrival, _ = proxied.until("customer", customer, timeout=5)
            proxied_delays.append(arrival.at - started)
            time.sleep(0.05)
        # NOTIFY is best-effort: with every LISTEN connection killed, streams still see
        # each change (by polling) and miss none.
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND query ILIKE 'LISTEN%%'", (site.topology.database_name,)
            ).fetchone()
        assert killed is not None and killed[0] >= 1, "each host that serves a stream listens"
        polled: list[float] = []
        for index in range(3):
            customer, started = _create_customer(host_a, site.keys, f"Polled {index}")
            arrival, seen = direct.until("customer", customer, timeout=PG_POLL_S + 3)
            received += [a.id for a in seen]
            polled.append(arrival.at - started)
    with site.db.read() as session:
        expected = [e.id for e in changes.events(session, after, 10_000) if e.id <= received[-1]]
    assert received == expected, "every change arrived once, in order, across the listener's death"
    p95 = percentile(delays, 0.95)
    RESULTS.update(stream_p50_s=round(percentile(delays, 0.5), 3), stream_p95_s=round(p95, 3),
                   proxied_stream_p95_s=round(percentile(proxied_delays, 0.95), 3),
                   polled_max_s=round(max(polled), 3), listeners_killed=killed[0])
    assert p95 < 1.0, delays
    assert percentile(proxied_delays, 0.95) < 1.0, proxied_delays
    assert max(polled) < PG_POLL_S + 1.5, polled


def _outbox_after(db: Database, mark: int) -> list[OutboxMessage]:
    with db.read() as session:
        return list(session.scalars(select(OutboxMessage).where(OutboxMessage.id > mark)))


def test_a_worker_killed_mid_delivery_loses_nothing_and_repeats_only_its_claims(site: Site) -> None:
    with site.db.read() as session:
        mark = session.scalar(select(func.max(OutboxMessage.id))) or 0
    starts = dt.datetime(2031, 6, 2, 8, tzinfo=dt.UTC)
    with domain(site.db) as ctx:
        technician = add_technician(ctx, "Mia")
        for index in range(MAILED):
            customer = add_customer(ctx, f"Mailed {index}",
                                    email=f"mailed{index}-{secrets.token_hex(2)}@x.test")
            book(ctx, customer, technician, starts + dt.timedelta(days=index // 8, hours=index % 8), hours=1)
    victim = site.topology.workers[0]
    deadline = time.monotonic() + 60
    while sum(site.inbox.message_ids().values()) < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    victim.kill()  # kill -9 while both workers are delivering
    killed_at = time.monotonic()
    while time.monotonic() < deadline:
        rows = _outbox_after(site.db, mark)
        if rows and all(r.status == "sent" for r in rows):
            break
        time.sleep(0.2)
    rows = _outbox_after(site.db, mark)
    assert rows and {r.status for r in rows} == {"sent"}, statuses_of(rows)
    emails = {str(r.payload["message_id"]): r for r in rows if r.kind == "email"}
    assert len(emails) >= MAILED
    received = site.inbox.message_ids()
    assert set(emails) <= set(received), "every email reached the SMTP server"
    repeated = {mid: count for mid, count in received.items() if mid in emails and count > 1}
    taken_over = [r for r in rows if r.attempts > 1]
    assert taken_over, "the killed worker held claims that the other one took over"
    for mid, count in repeated.items():  # only a claim the dead worker held may go out twice
        assert count == 2 and emails[mid].attempts == 2, (mid, count)
    assert len(taken_over) <= 2 * 20  # at most one batch of each kind
    RESULTS.update(outbox_messages=len(rows), emails=len(emails), taken_over=len(taken_over),
                   sent_twice=len(repeated), settled_after_kill_s=round(time.monotonic() - killed_at, 1))
    victim.start()


def statuses_of(rows: list[OutboxMessage]) -> dict[str, int]:
    found: dict[str, int] = {}
    for row in rows:
        found[row.status] = found.get(row.status, 0) + 1
    return found


def _audit_verifies(site: Site) -> None:
    host = site.topology.hosts[0].process
    env = {**host.env, "FIELDCAL_DATABASE_URL": site.topology.database_url}
    done = subprocess.run([sys.executable, "-m", "server.cli", "audit", "verify"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=host.log.parent)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])


def _load(site: Site) -> Load:
    return Load(site.topology, site.keys.headers("readonly"), site.keys.headers("dispatcher"))


def _created_once(site: Site, load: Load) -> None:
    with site.db.read() as session:
        names = list(session.scalars(select(Customer.name).where(Customer.name.like(f"Load {load.tag}-%"))))
    assert sorted(names) == sorted(f"Load {key}" for key in load.created), "each key created one customer"


def test_rolling_restart_fails_no_idempotent_request(site: Site) -> None:
    load = _load(site)

    def restart_each() -> None:
        for host in site.topology.hosts:
            host.process.stop(timeout=40)  # SIGTERM: gunicorn finishes what it has, then exits
            site.topology.restart_host(host)
            time.sleep(2.5)  # the proxy's checks see it up (rise 2, checks every 1 s)

    started = time.monotonic()
    load.run(clients=4, seconds=1, during=restart_each, at=1)
    assert not load.gave_up, load.gave_up
    assert not load.first_try_failures.get("GET 502") and not load.first_try_failures.get("GET 503")
    _created_once(site, load)
    RESULTS["rolling_restart"] = {"seconds": round(time.monotonic() - started, 1), "reads": load.reads,
                                  "created": len(load.created),
                                  "first_try_failures": dict(load.first_try_failures)}


def test_kill_9_of_an_app_host_under_load_loses_no_request(site: Site) -> None:
    victim = site.topology.hosts[1]
    load = _load(site)
    load.run(clients=6, seconds=8, during=victim.process.kill, at=3)
    assert not load.gave_up, load.gave_up
    assert load.reads > 20 and len(load.created) > 10, (load.reads, len(load.created))
    _created_once(site, load)
    _audit_verifies(site)
    RESULTS["kill_host"] = {"reads": load.reads, "created": len(load.created),
                            "first_try_failures": dict(load.first_try_failures)}
    created = httpx.post(site.topology.url("/api/v1/customers"), verify=site.topology.verify,
                         headers=site.keys.headers("dispatcher"), json={"name": "Behind the proxy"})
    assert created.headers["Location"].startswith(site.topology.base + "/api/v1/customers/")
