"""What the customer address book costs: a roll of a 200-customer book, a visit change with and
without books to follow, and the per-request staleness check beside the principal lookup every
CalDAV request makes. In process, on a scratch SQLite file or PostgreSQL database.

    PYTHONPATH=. .venv/bin/python -m bench.contacts sqlite|postgresql [customers]
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from live import (  # tests' kit (on sys.path here)
    create_postgres_database,
    drop_postgres_database,
    use_audit_key,
)
from seeding import add_account, book_job, domain  # tests' kit (on sys.path here)

from server import contacts, directory, scheduling
from server.db import Database
from server.migrate import upgrade
from server.models import Role
from server.scheduling.rules import Override

HOUR = dt.timedelta(hours=1)
ROUNDS = 30


def median_ms(run: Callable[[], object], rounds: int = ROUNDS) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def paired_ms(first: Callable[[], object], second: Callable[[], object],
              rounds: int = ROUNDS) -> tuple[float, float]:
    """Medians of two operations run alternately, so a busy machine slows both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for run, into in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            run()
            into.append((time.perf_counter() - start) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])


def seed(db: Database, customers: int) -> tuple[int, int, list[int]]:
    """Two technicians with the same kind of schedule; only the first one's book exists."""
    today = dt.datetime.now(dt.UTC).replace(hour=7, minute=0, second=0, microsecond=0)
    visits: list[int] = []
    with domain(db) as ctx:
        for login in ("booked", "plain"):
            add_account(ctx, login, Role.TECHNICIAN)
        for i in range(customers):
            customer = directory.add_customer(
                ctx, f"Customer {i}", phone=f"+44 113 496 {i:04d}", email=f"c{i}@example.test",
                address=f"{i} Long Road, Leeds LS1 {i % 9}AA", compressor_make="Kaeser",
                compressor_model="SK 22", compressor_serial=f"S-{i}")
            directory.add_site(ctx, customer, f"{i} Yard Lane, Leeds LS2 {i % 9}AB",
                               compressor_make="Boge", compressor_model="C 20")
            start = today + dt.timedelta(days=i // 4 - 25, hours=2 * (i % 4))
            for login in ("booked", "plain"):
                visits.append(book_job(ctx, login, customer.id, "visit", start,
                                       start + HOUR).appointment_id)
        booked = directory.find_user(ctx.session, "booked").id
        plain = directory.find_user(ctx.session, "plain").id
    return booked, plain, visits


def main(kind: str, customers: int) -> None:
    if kind == "sqlite":
        folder = tempfile.mkdtemp()
        url, name = f"sqlite:///{folder}/bench.sqlite3", ""
    else:
        name, url = create_postgres_database()
    use_audit_key(url)
    db = Database(url)
    try:
        upgrade(db)
        booked, _plain, visits = seed(db, customers)
        window = contacts.Window.around(dt.datetime.now(dt.UTC), 30, 60, "UTC")
        start = time.perf_counter()
        with domain(db) as ctx:
            contacts.keep_current(ctx, directory.find_user(ctx.session, "booked"), window)
        roll_ms = (time.perf_counter() - start) * 1000
        with db.read() as session:
            held = len(contacts.customers_in_window(session, booked, window))

        def move(appointment_id: int) -> Callable[[], object]:
            flip = [0]

            def run() -> None:
                flip[0] ^= 1
                with domain(db) as ctx:
                    appointment = scheduling.get_appointment(ctx.session, appointment_id)
                    moved = appointment.starts_at + (HOUR / 2 if flip[0] else -HOUR / 2)
                    scheduling.reschedule(ctx, appointment, moved, moved + HOUR,
                                          force=Override(reason="bench"))
            return run

        with_book, without_book = paired_ms(move(visits[len(visits) // 2 - 2]),  # "booked"'s
                                            move(visits[len(visits) // 2 - 1]))  # "plain"'s

        def check() -> None:
            with db.read() as session:
                contacts.needs_roll(session, "booked", window)

        def principal() -> None:
            from plugins.radicale.state import load_principal
            with db.read() as session:
                load_principal(session, "booked")

        def follow() -> None:
            with domain(db) as ctx:
                appointment = scheduling.get_appointment(ctx.session, visits[len(visits) // 2 - 2])
                contacts.follow_customer(ctx.session, appointment.job.customer_id, [booked])

        def idle() -> None:
            with domain(db) as ctx:
                appointment = scheduling.get_appointment(ctx.session, visits[len(visits) // 2 - 2])
                _ = appointment.job.customer_id

        follow_total, idle_ms = paired_ms(follow, idle)
        follow_ms = follow_total - idle_ms
        check_ms, principal_ms = paired_ms(check, principal, 200)
        print(f"{kind}: {customers} customers, book holds {held}")
        print(f"  roll (create the book): {roll_ms:.1f} ms")
        print(f"  reschedule, technician with a book: {with_book:.2f} ms; without: "
              f"{without_book:.2f} ms; ratio {with_book / without_book:.2f}")
        print(f"  follow_customer alone (card unchanged; less the same transaction without it): "
              f"{follow_ms:.2f} ms = {follow_ms / with_book:.0%} of a reschedule")
        print(f"  staleness check per request: {check_ms:.3f} ms; principal lookup: "
              f"{principal_ms:.3f} ms; ratio {check_ms / principal_ms:.2f}")
    finally:
        db.dispose()
        if name:
            drop_postgres_database(name)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 200)
