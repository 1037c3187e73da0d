"""The customer address book's core (server.contacts, server.vcards) on both databases: which
customers a window holds, cards against strict checks, change-log rows for every change, one
audit entry per roll, the declared window settings, and the upgrade that frees the name."""

from __future__ import annotations

import datetime as dt
import secrets
from pathlib import Path

import pytest
from alembic import command
from cardkit import check_vcard, content_lines, unfolded, values
from live import create_postgres_database, drop_postgres_database
from seeding import add_account, book_job, domain, items_of
from sqlalchemy import select, text

from server import calendars, contacts, directory, scheduling
from server.actions import Action
from server.config import load_settings
from server.db import Database
from server.errors import ConfigError
from server.migrate import alembic_config, upgrade
from server.models import AuditEntry, Change, Collection, CollectionKind, Role
from server.vcards import CardData, CardSite, as_version, fold, href_of, render, tel_uri, uid_of

UTC = dt.UTC
DAY = dt.timedelta(days=1)
TODAY = dt.date(2031, 6, 15)  # the windows here are explicit: far from the live tests' today


def window(day: dt.date = TODAY, past: int = 30, future: int = 60, zone: str = "UTC"
           ) -> contacts.Window:
    return contacts.Window(day, past, future, zone)


def at(day: dt.date, hour: int = 9) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), UTC)


def book_rows(db: Database, login: str) -> tuple[Collection, list[tuple[str, str]]]:
    with db.read() as session:
        book = session.scalars(select(Collection).where(
            Collection.path == contacts.book_path(login))).one()
        log = [(h, o) for h, o in session.execute(
            select(Change.href, Change.op).where(Change.collection_id == book.id)
            .order_by(Change.seq)).all()]
        return book, log


def refreshes(db: Database, book_id: int) -> list[AuditEntry]:
    with db.read() as session:
        return list(session.scalars(select(AuditEntry).where(
            AuditEntry.entity == "collection", AuditEntry.entity_id == str(book_id),
            AuditEntry.action == Action.ADDRESSBOOK_REFRESH.value)))


# --------------------------------------------------------------------------- vCards alone


def card(name: str = "Acme", phone: str = "+49 30 1234567", sites: int = 1) -> CardData:
    return CardData(7, dt.datetime(2030, 1, 2, 3, 4, 5, 6), name, "ops@acme.example.test", phone,
                    tuple(CardSite(f"Weg {i}\nHof", "10115", "DE", "Kaeser", "SK 22", f"S-{i}")
                          for i in range(sites)))


def test_cards_are_strict_in_both_versions() -> None:
    four = render(card(sites=3))
    check_vcard(four, "4.0")
    three = as_version(four, "3.0")
    parsed = check_vcard(three, "3.0")
    assert values(parsed, "tel") == ["+49301234567"]
    assert len(values(parsed, "adr")) == 3
    assert [p.params.get("TYPE") for p in content_lines(parsed, "email")] == [["WORK", "INTERNET"]]
    with pytest.raises(ValueError, match=r"4\.0 or 3\.0"):
        as_version(four, "2.1")


def test_folding_never_splits_a_character_and_unfolds_to_the_same_line() -> None:
    for name in ("ä" * 200, "€" * 101, "a" * 74 + "ü" * 30, "x" * 500):
        four = render(card(name=name))
        check_vcard(four, "4.0")
        fn = next(line for line in unfolded(four) if line.startswith("FN:"))
        assert fn == f"FN:{name}"
    assert fold("a" * 75) == "a" * 75
    assert fold("a" * 76) == "a" * 75 + "\r\n a"


def test_phone_numbers_and_uids() -> None:
    assert tel_uri("+44 (161) 496-0000") == "tel:+441614960000"
    assert tel_uri("0161 496 0000") is None and tel_uri("+1 555 CALL NOW") is None
    local = render(card(phone="0161 496 0000 ext. 12"))
    assert "TEL;TYPE=work,voice:0161 496 0000 ext. 12\r\n" in local
    check_vcard(as_version(local, "3.0"), "3.0")
    created = dt.datetime(2030, 1, 2)
    assert uid_of(7, created) == uid_of(7, created.replace(tzinfo=UTC))
    assert uid_of(7, created) != uid_of(8, created) != uid_of(7, created + DAY)


def test_window_bounds_follow_the_business_zone() -> None:
    berlin = contacts.Window(dt.date(2031, 3, 30), 1, 1, "Europe/Berlin")  # a DST change day
    start, end = berlin.bounds()
    assert start == dt.datetime(2031, 3, 28, 23, 0, tzinfo=UTC)
    assert end == dt.datetime(2031, 3, 30, 22, 0, tzinfo=UTC)
    assert contacts.Window.parse(berlin.key) == berlin
    assert contacts.Window.parse("garbage") is None
    late = dt.datetime(2031, 3, 29, 23, 30, tzinfo=UTC)  # already the 30th in Berlin
    assert contacts.Window.around(late, 1, 1, "Europe/Berlin").day == dt.date(2031, 3, 30)


def test_the_window_settings_are_declared_and_checked(tmp_path: Path) -> None:
    settings = load_settings({"FIELDCAL_INSTANCE": str(tmp_path)})
    assert (settings.contacts_past_days, settings.contacts_future_days) == (30, 60)
    settings = load_settings({"FIELDCAL_INSTANCE": str(tmp_path),
                              "FIELDCAL_CONTACTS_PAST_DAYS": "7",
                              "FIELDCAL_CONTACTS_FUTURE_DAYS": "0"})
    assert (settings.contacts_past_days, settings.contacts_future_days) == (7, 0)
    for bad in ("-1", "3651", "two"):
        with pytest.raises(ConfigError, match="FIELDCAL_CONTACTS_PAST_DAYS"):
            load_settings({"FIELDCAL_INSTANCE": str(tmp_path),
                           "FIELDCAL_CONTACTS_PAST_DAYS": bad})


# --------------------------------------------------------------------------- the book


def test_the_book_holds_exactly_the_customers_of_the_window(db: Database) -> None:
    tag = secrets.token_hex(3)
    with domain(db) as ctx:
        tech = add_account(ctx, f"core-{tag}", Role.TECHNICIAN)
        inside = directory.add_customer(ctx, f"Inside {tag}", address="1 In St, Leeds LS1 1AA")
        edge = directory.add_customer(ctx, f"Edge {tag}", address="2 Edge St, Leeds LS1 1AB")
        outside = directory.add_customer(ctx, f"Outside {tag}", address="3 Out St, Leeds LS1 1AD")
        book_job(ctx, tech.login, inside.id, "a", at(TODAY + 3 * DAY), at(TODAY + 3 * DAY, 10))
        # ends one minute into the window: it meets it
        book_job(ctx, tech.login, edge.id, "b", at(TODAY - 30 * DAY, 0) - dt.timedelta(hours=1),
                 at(TODAY - 30 * DAY, 0) + dt.timedelta(minutes=1))
        book_job(ctx, tech.login, outside.id, "c", at(TODAY + 61 * DAY, 0),
                 at(TODAY + 61 * DAY, 1))  # out until the window reaches day 61
        technician = directory.find_user(ctx.session, tech.login)
        made = contacts.keep_current(ctx, technician, window())
        assert made is not None and made.kind == CollectionKind.ADDRESSBOOK
    held = items_of(db, contacts.book_path(tech.login))
    assert set(held) == {href_of(inside.id), href_of(edge.id)}, held
    for item in held.values():
        check_vcard(item.text, "4.0")
        assert item.component == "VCARD" and item.uid.startswith("urn:uuid:")
    book, log = book_rows(db, tech.login)
    assert sorted(log) == sorted([(href_of(inside.id), "put"), (href_of(edge.id), "put")])
    assert len(refreshes(db, book.id)) == 1

    with domain(db) as ctx:  # the same window again: nothing written
        contacts.keep_current(ctx, directory.find_user(ctx.session, tech.login), window())
    again, log_again = book_rows(db, tech.login)
    assert (again.sync_seq, log_again) == (book.sync_seq, log)
    assert len(refreshes(db, book.id)) == 1

    with domain(db) as ctx:  # a day later the edge visit has left, the outside one not yet in
        contacts.keep_current(ctx, directory.find_user(ctx.session, tech.login),
                              window(TODAY + DAY))
    assert set(items_of(db, contacts.book_path(tech.login))) == {href_of(inside.id)}
    _, log = book_rows(db, tech.login)
    assert log[-1] == (href_of(edge.id), "delete")
    with domain(db) as ctx:  # ...and a second day brings the far one in
        contacts.keep_current(ctx, directory.find_user(ctx.session, tech.login),
                              window(TODAY + 2 * DAY))
    assert set(items_of(db, contacts.book_path(tech.login))) == {href_of(inside.id),
                                                                 href_of(outside.id)}
    assert len(refreshes(db, book.id)) == 3


def test_changes_of_visits_and_sites_are_rows_of_the_same_transaction(db: Database) -> None:
    tag = secrets.token_hex(3)
    with domain(db) as ctx:
        tech = add_account(ctx, f"core-{tag}", Role.TECHNICIAN)
        other = add_account(ctx, f"coro-{tag}", Role.TECHNICIAN)
        customer = directory.add_customer(ctx, f"Moving {tag}", address="4 Move St, Hull HU1 1AA")
        for login in (tech.login, other.login):
            contacts.keep_current(ctx, directory.find_user(ctx.session, login), window())
        visit = book_job(ctx, tech.login, customer.id, "v", at(TODAY + DAY), at(TODAY + DAY, 10))
    href = href_of(customer.id)
    assert set(items_of(db, contacts.book_path(tech.login))) == {href}
    with domain(db) as ctx:
        directory.add_site(ctx, directory.find_customer(ctx.session, customer.id),
                           "5 Second St, Hull HU1 1AB", compressor_make="Boge")
    text_now = items_of(db, contacts.book_path(tech.login))[href].text
    assert "5 Second St" in text_now and "Boge" in text_now
    with domain(db) as ctx:
        scheduling.reassign(ctx, scheduling.get_appointment(ctx.session, visit.appointment_id),
                            directory.find_user(ctx.session, other.login))
    assert items_of(db, contacts.book_path(tech.login)) == {}
    assert items_of(db, contacts.book_path(other.login))[href].text == text_now
    _, log = book_rows(db, tech.login)
    assert log == [(href, "put"), (href, "put"), (href, "delete")]

    with pytest.raises(RuntimeError), domain(db) as ctx:  # a change rolled back leaves no row
        scheduling.cancel(ctx, scheduling.get_appointment(ctx.session, visit.appointment_id))
        raise RuntimeError("the caller fails after the change")
    assert set(items_of(db, contacts.book_path(other.login))) == {href}


def test_a_book_never_made_is_made_whole_later(db: Database) -> None:
    tag = secrets.token_hex(3)
    with domain(db) as ctx:
        tech = add_account(ctx, f"core-{tag}", Role.TECHNICIAN)
        customer = directory.add_customer(ctx, f"Later {tag}", address="6 Late St, Hull HU1 1AC")
        book_job(ctx, tech.login, customer.id, "v", at(TODAY), at(TODAY, 10))
        assert calendars.get_collection(ctx.session, contacts.book_path(tech.login)) is None
        contacts.keep_current(ctx, directory.find_user(ctx.session, tech.login), window())
    assert set(items_of(db, contacts.book_path(tech.login))) == {href_of(customer.id)}
    with domain(db) as ctx:  # dispatchers have no book
        dispatcher = add_account(ctx, f"desk-{tag}", Role.DISPATCHER)
        assert contacts.keep_current(
            ctx, directory.find_user(ctx.session, dispatcher.login), window()) is None


def test_the_upgrade_moves_a_calendar_named_customers(database_url: str, tmp_path: Path) -> None:
    name = ""
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'upgrade.sqlite3'}"
    else:
        name, url = create_postgres_database()
    database = Database(url)
    try:
        upgrade(database, "0019")
        with database.write() as session:
            session.execute(text(
                "INSERT INTO collection (path, kind, props, sync_seq, pruned_seq, created_at, "
                "updated_at) VALUES (:p, 'calendar', '{}', 0, 0, :t, :t), "
                "(:q, 'calendar', '{}', 0, 0, :t, :t)"),
                {"p": "olduser/customers", "q": "olduser/customers-x",
                 "t": dt.datetime(2030, 1, 1)})
        upgrade(database)
        with database.read() as session:
            paths = set(session.scalars(select(Collection.path)))
        assert paths == {"olduser/customers-calendar", "olduser/customers-x"}
        with database.engine.begin() as connection:  # and back, and up again
            config = alembic_config(database)
            config.attributes["connection"] = connection
            command.downgrade(config, "0019")
        upgrade(database)
    finally:
        database.dispose()
        if name:
            drop_postgres_database(name)
