"""The dispatch console in a real browser: sign-in, the board, a keyboard move, live updates."""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from collections.abc import Iterator

import pytest
from axekit import axe_violations
from consolekit import PASSWORD, set_password
from live import LiveServer
from playwright.sync_api import Browser, Page, expect
from seeding import Seed, appointment_row, domain
from test_browser import Shots, _context, browser, shots  # noqa: F401  (fixtures used by name)

from server import directory, scheduling
from server.db import Database
from server.models import Appointment, TimeOff

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def desk(db: Database, seed: Seed) -> str:
    set_password(db, seed.dispatcher.login)
    return seed.dispatcher.login


@pytest.fixture()
def signed_in(browser: Browser, live: LiveServer, desk: str) -> Iterator[Page]:  # noqa: F811
    context = _context(browser)
    page = context.new_page()
    page.goto(live.url("/console"))
    page.get_by_label("Login").fill(desk)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/board**")
    try:
        yield page
    finally:
        context.close()


def board_day(live: LiveServer, seed: Seed, login: str = "alice", index: int = 0) -> str:
    day = seed.jobs[login][index].starts_at.astimezone(dt.UTC).date()
    return live.url(f"/console/board?view=day&day={day}")


def test_sign_in_page_and_board_pass_axe(browser: Browser, live: LiveServer, seed: Seed,  # noqa: F811
                                         signed_in: Page, shots: Shots) -> None:  # noqa: F811
    context = _context(browser)
    fresh = context.new_page()
    fresh.goto(live.url("/console"))
    assert axe_violations(fresh) == []
    shots(fresh, "sign-in")
    context.close()
    signed_in.goto(board_day(live, seed))
    expect(signed_in.locator(f"#visit-{seed.jobs['alice'][0].appointment_id}")).to_contain_text(
        "Annual service")
    expect(signed_in.locator("#live")).to_have_text("Live updates: on")
    assert axe_violations(signed_in) == []
    shots(signed_in, "board-day")
    signed_in.get_by_role("link", name="Week").click()
    expect(signed_in.locator("h1")).to_contain_text("week of")
    assert axe_violations(signed_in) == []
    shots(signed_in, "board-week")


def test_a_keyboard_move_to_another_technician(live: LiveServer, seed: Seed, db: Database,
                                               signed_in: Page) -> None:
    booked = seed.jobs["carol"][0]
    signed_in.goto(board_day(live, seed, "carol"))
    summary = signed_in.get_by_label(f"Move or reassign visit {booked.appointment_id}", exact=False)
    summary.focus()
    signed_in.keyboard.press("Enter")
    select = signed_in.locator(f"#tech-{booked.appointment_id}")
    select.focus()
    select.select_option("alice")
    signed_in.locator(f"#time-{booked.appointment_id}").focus()
    signed_in.keyboard.press("Enter")  # submits the form
    expect(signed_in.locator("#board-message")).to_contain_text("Moved visit")
    with db.read() as session:
        moved = session.get(Appointment, booked.appointment_id)
        assert moved is not None and moved.technician is not None
        assert moved.technician.login == "alice"


def test_a_change_elsewhere_shows_within_a_second(live: LiveServer, seed: Seed, db: Database,
                                                  signed_in: Page) -> None:
    booked = seed.jobs["bob"][0]
    signed_in.goto(board_day(live, seed, "bob"))
    expect(signed_in.locator("#live")).to_have_text("Live updates: on")
    row = appointment_row(db, booked.appointment_id)
    new_start = row.starts_at + dt.timedelta(minutes=30)
    with domain(db) as ctx:
        appointment = ctx.session.get(Appointment, booked.appointment_id)
        assert appointment is not None
        scheduling.reschedule(ctx, appointment, new_start, row.ends_at + dt.timedelta(minutes=30))
    started = time.monotonic()
    expect(signed_in.locator(f"#visit-{booked.appointment_id}")).to_contain_text(
        f"{new_start.astimezone(dt.UTC):%H:%M}", timeout=1000)
    assert time.monotonic() - started < 1.0


def _second_board(browser: Browser, live: LiveServer, desk: str, url: str) -> Page:  # noqa: F811
    """Another dispatcher's browser, signed in on its own and showing `url`."""
    page = _context(browser).new_page()
    page.goto(live.url("/console"))
    page.get_by_label("Login").fill(desk)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/board**")
    page.goto(url)
    expect(page.locator("#live")).to_have_text("Live updates: on")
    return page


def test_drag_and_drop_moves_and_assigns_and_the_other_board_follows(
        browser: Browser, live: LiveServer, seed: Seed, db: Database, desk: str,  # noqa: F811
        signed_in: Page, shots: Shots) -> None:  # noqa: F811
    """Drag a visit onto another technician's row, and one from the tray onto a technician;
    a second dispatcher's board shows each within a second, without a reload."""
    moving = seed.jobs["alice"][1]
    url = board_day(live, seed, "alice", 1)
    signed_in.goto(url)
    expect(signed_in.locator("#live")).to_have_text("Live updates: on")
    other = _second_board(browser, live, desk, url)
    try:
        carol_row = 'section.row[data-technician="carol"]'
        signed_in.locator(f"#visit-{moving.appointment_id}").drag_to(signed_in.locator(carol_row))
        # The move is made once the dragging board shows it; from then the other follows.
        expect(signed_in.locator(f"{carol_row} #visit-{moving.appointment_id}")).to_be_visible()
        started = time.monotonic()
        expect(other.locator(f"{carol_row} #visit-{moving.appointment_id}")).to_be_visible(timeout=1000)
        assert time.monotonic() - started < 1.0

        survey_day = board_day(live, seed, "carol")  # the tray's visit is on carol's day
        signed_in.goto(survey_day)
        other.goto(survey_day)
        expect(other.locator("#live")).to_have_text("Live updates: on")
        tray_visit = signed_in.locator("section.tray .visit").first
        tray_id = tray_visit.get_attribute("data-id")
        assert tray_id
        bob_row = 'section.row[data-technician="bob"]'
        tray_visit.drag_to(signed_in.locator(bob_row))
        expect(signed_in.locator(f"{bob_row} #visit-{tray_id}")).to_be_visible()
        expect(other.locator(f"{bob_row} #visit-{tray_id}")).to_be_visible(timeout=1000)
        shots(other, "board-after-drag")
    finally:
        other.context.close()
    with db.read() as session:
        dragged = session.get(Appointment, moving.appointment_id)
        assigned = session.get(Appointment, int(tray_id))
        assert dragged is not None and dragged.technician is not None
        assert dragged.technician.login == "carol" and dragged.starts_at == moving.starts_at
        assert assigned is not None and assigned.technician is not None
        assert assigned.technician.login == "bob"


def test_the_board_reconnects_and_catches_up(live: LiveServer, seed: Seed, db: Database,
                                             signed_in: Page) -> None:
    """The connection drops (its sockets are killed) and a visit moves meanwhile: the browser
    resumes the stream with the Last-Event-ID of the last change it saw, and the board shows
    the move without a reload."""
    booked = seed.jobs["alice"][2]
    signed_in.goto(board_day(live, seed, "alice", 2))
    expect(signed_in.locator("#live")).to_have_text("Live updates: on")
    streams: list[dict[str, str]] = []
    signed_in.on("request", lambda r: streams.append(r.all_headers())
                 if "/changes/stream" in r.url else None)

    def move_by(minutes: int) -> str:
        row = appointment_row(db, booked.appointment_id)
        step = dt.timedelta(minutes=minutes)
        with domain(db) as ctx:
            appointment = ctx.session.get(Appointment, booked.appointment_id)
            assert appointment is not None
            scheduling.reschedule(ctx, appointment, row.starts_at + step, row.ends_at + step)
        return f"{(row.starts_at + step).astimezone(dt.UTC):%H:%M}"

    seen = move_by(15)  # a change the browser sees: the stream now has a last event id
    expect(signed_in.locator(f"#visit-{booked.appointment_id}")).to_contain_text(seen)
    dropped = subprocess.run(["ss", "-K", "dst", "127.0.0.1", "dport", "=", str(live.port)],
                             capture_output=True, text=True, timeout=10)
    assert dropped.returncode == 0, f"ss -K could not drop the connections: {dropped.stderr}"
    expect(signed_in.locator("#live")).to_have_text("Live updates: reconnecting…")
    missed = move_by(30)
    expect(signed_in.locator(f"#visit-{booked.appointment_id}")).to_contain_text(missed, timeout=15_000)
    expect(signed_in.locator("#live")).to_have_text("Live updates: on")
    resumed = [h["last-event-id"] for h in streams if "last-event-id" in h]
    assert resumed and all(value.isdigit() and int(value) > 0 for value in resumed), streams


def test_conflicts_show_where_they_happen(live: LiveServer, seed: Seed, db: Database,
                                          signed_in: Page, shots: Shots) -> None:  # noqa: F811
    """A drag onto a technician who is busy then is refused, naming the visit in the way; time
    off added after a visit was booked is named on the visit itself."""
    start = dt.datetime(2031, 7, 7, 8, 0, tzinfo=dt.UTC)
    with domain(db) as ctx:
        customer = directory.find_customer(ctx.session, seed.customer_ids[0])
        booked = {}
        for login in ("alice", "carol"):
            job = directory.add_job(ctx, customer, f"Clash check {login}")
            technician = directory.find_user(ctx.session, login)
            booked[login] = scheduling.book(ctx, job, technician, start, start + dt.timedelta(hours=1)).id
        carol_id = directory.find_user(ctx.session, "carol").id
    with db.write() as session:
        session.add(TimeOff(technician_id=carol_id, reason="Workshop", starts_at=start,
                            ends_at=start + dt.timedelta(hours=3)))
    signed_in.goto(live.url(f"/console/board?view=day&day={start.date()}"))
    expect(signed_in.locator("#live")).to_have_text("Live updates: on")
    carol_visit = signed_in.locator(f"#visit-{booked['carol']}")
    expect(carol_visit.locator(".conflict")).to_contain_text("time off “Workshop”")
    signed_in.locator(f"#visit-{booked['alice']}").drag_to(
        signed_in.locator("#row-carol"))  # the row's heading: a spot in it no visit covers
    expect(signed_in.locator("#board-message")).to_contain_text("Refused")
    expect(signed_in.locator("#board-message")).to_contain_text("Clash check carol")
    shots(signed_in, "board-conflicts")
    assert appointment_row(db, booked["alice"]).technician_id != carol_id
