"""The technician's day page (/d/<token>): link lifecycle, each button's effect, the audit trail,
the customer's email, dispatch's alerts, and the customer's page showing progress."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from apikit import body_of, make_keys
from daykit import (
    BASE_URL,
    DISPATCH_EMAIL,
    KREUZBERG,
    MITTE,
    Instance,
    domain,
    form_token,
    instance,
    press,
    run,
    technician_with_visits,
)
from mailkit import smtp_server
from sqlalchemy import select, text

from plugins.platforms.slack import Slack
from server import changes, integrations, scheduling
from server.actions import Action
from server.actors import Actor
from server.db import Database
from server.migrate import alembic_config, upgrade
from server.models import Appointment, AuditEntry, Job, JobStatus, OutboxMessage
from server.platforms import Config, Op, Visit
from server.scheduling.travel import TravelModel
from server.vault import Vault


@pytest.fixture(scope="module")
def site(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    with smtp_server() as smtp, instance(database_url, tmp_path_factory.mktemp("day"), smtp) as found:
        yield found


def _appointment(site: Instance, appointment_id: int) -> Appointment:
    with site.db.read() as session:
        found = session.get(Appointment, appointment_id)
        assert found is not None
        session.refresh(found, ["job", "technician"])
        return found


def _trail(site: Instance, appointment_id: int) -> list[AuditEntry]:
    with site.db.read() as session:
        return list(session.scalars(select(AuditEntry).where(
            AuditEntry.entity == "appointment", AuditEntry.entity_id == str(appointment_id))
            .order_by(AuditEntry.id)))


def test_the_link_works_until_revoked_and_a_tampered_one_never(site: Instance) -> None:
    day = technician_with_visits(site.db, "life")
    link_id, path = site.new_day_link(day.login)
    assert path.startswith("/d/")
    client = site.client()
    page = client.get(path, headers={"User-Agent": "PhoneBrowser/1"})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Tess&#39;s day" in html or "Tess's day" in html
    assert "Annual service" in html and "Oil leak" in html
    assert html.index("Annual service") < html.index("Oil leak")  # in order
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    listed = json.loads(run(site.env, "link", "list", f"technician:{day.login}", "--json"))
    row = next(r for r in listed if r["id"] == link_id)
    assert row["purpose"] == "day" and row["last_user_agent"] == "PhoneBrowser/1"

    token = path.removeprefix("/d/")
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    assert client.get(f"/d/{tampered}").status_code == 404
    form = form_token(html)
    refused = client.post(f"/d/{tampered}/visits/{day.first}/on-my-way", data={"csrf": form})
    assert refused.status_code == 404
    # a share link's token is no day link, and the other way round
    share = json.loads(run(site.env, "link", "new", "share", f"technician:{day.login}", "--json"))
    assert client.get("/d/" + share["url"].rsplit("/", 1)[1]).status_code == 404
    assert client.get("/s/" + token).status_code == 404

    run(site.env, "link", "revoke", str(link_id))
    assert client.get(path).status_code == 404
    assert client.post(f"{path}/visits/{day.first}/on-my-way", data={"csrf": form}).status_code == 404
    assert _appointment(site, day.first).progress is None  # nothing happened


def test_a_day_link_is_for_a_technician_only(site: Instance) -> None:
    out = run(site.env, "link", "new", "day", "team:nowhere", code=1)
    assert "team" in out.lower()
    customer = json.loads(run(site.env, "customer", "list", "--json"))[0]["id"]
    out = run(site.env, "link", "new", "day", f"customer:{customer}", code=1)
    assert "technician:LOGIN" in out


def test_each_button_reports_progress_audited_through_the_day_link(site: Instance) -> None:
    day = technician_with_visits(site.db, "flow")
    _, path = site.new_day_link(day.login)
    client = site.client()

    gone = press(client, path, day.second, "on-my-way")
    assert gone.status_code == 303 and "done=on-my-way" in gone.location
    second = _appointment(site, day.second)
    assert second.progress is JobStatus.EN_ROUTE and second.job.status == JobStatus.EN_ROUTE
    html = client.get(path).get_data(as_text=True)
    assert "On the way" in html and "arriving about" in html

    again = press(client, path, day.second, "on-my-way")  # a second tap changes nothing
    assert again.status_code == 303
    early = press(client, path, day.second, "done")  # done before being on site: refused
    assert early.status_code == 409 and "on the way" in early.get_data(as_text=True)

    assert press(client, path, day.second, "on-site").status_code == 303
    assert _appointment(site, day.second).progress is JobStatus.ON_SITE
    assert press(client, path, day.second, "cant-make-it").status_code == 409  # already there

    finished = press(client, path, day.second, "done", note="Replaced the pressure switch.")
    assert finished.status_code == 303
    second = _appointment(site, day.second)
    assert second.progress is JobStatus.COMPLETED and second.job.status == JobStatus.COMPLETED
    assert second.progress_note == "Replaced the pressure switch."
    assert second.technician is not None and second.technician.login == day.login
    assert "Replaced the pressure switch." in client.get(path).get_data(as_text=True)

    trail = [e for e in _trail(site, day.second) if e.channel == "day-link"]
    assert [e.action for e in trail] == [
        Action.APPOINTMENT_ON_MY_WAY, Action.APPOINTMENT_ON_SITE, Action.APPOINTMENT_DONE,
        Action.APPOINTMENT_NOTE]
    assert {e.actor for e in trail} == {day.login}
    assert trail[0].before is not None and trail[0].after is not None
    assert (trail[0].before["job_status"], trail[0].after["job_status"]) == ("scheduled", "en_route")
    assert trail[-1].after == {"note": "Replaced the pressure switch."}
    # each is a change like any other: the change feed (the board's stream) carries them
    with site.db.read() as session:
        feed = [e for e in changes.events(session, after=trail[0].id - 1, entity="appointment")
                if e.entity_id == str(day.second)]
    assert [e.action for e in feed][:3] == ["appointment.on_my_way", "appointment.on_site",
                                            "appointment.done"]
    assert all(e.channel == "day-link" for e in feed)


def test_on_my_way_emails_the_customer_with_first_name_and_arrival(site: Instance) -> None:
    day = technician_with_visits(site.db, "mail")
    _, path = site.new_day_link(day.login)
    site.post.drain()
    before = len(site.smtp.inbox.to(day.customer_email))
    assert press(site.client(), path, day.second, "on-my-way").status_code == 303
    site.post.drain()
    received = site.smtp.inbox.to(day.customer_email)
    assert len(received) == before + 1
    message = received[-1]
    assert message["Subject"].startswith("Your technician Tess is on the way")
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    second = _appointment(site, day.second)
    assert second.progress_at is not None
    minutes = TravelModel().minutes(MITTE, KREUZBERG)
    arrival = second.progress_at + dt.timedelta(minutes=minutes)
    step = 5 * 60
    arrival = dt.datetime.fromtimestamp(math.ceil(arrival.timestamp() / step) * step, dt.UTC)
    local = arrival.astimezone(ZoneInfo("Europe/Berlin"))
    assert f"Estimated arrival: about {local:%H:%M} (Europe/Berlin)" in " ".join(text.split())
    # the first visit of the day has no visit before it: no estimate is made up
    first_customer = f"{day.login}-first@example.test"
    assert press(site.client(), path, day.first, "on-my-way").status_code == 303
    site.post.drain()
    first_mail = site.smtp.inbox.to(first_customer)[-1]
    assert first_mail["Subject"].startswith("Your technician Tess is on the way")
    first_body = first_mail.get_body(("plain",))
    assert first_body is not None and "Estimated arrival" not in first_body.get_content()


def test_cant_make_it_returns_the_visit_to_the_tray_and_alerts_dispatch(site: Instance) -> None:
    day = technician_with_visits(site.db, "gone")
    with domain(site.db) as ctx:
        vault = Vault(tuple(site.env["FIELDCAL_CREDENTIAL_KEYS"].split(",")))
        slack = integrations.add(ctx, vault, "slack", f"ops-{day.login}",
                                 settings={"channel": "#dispatch"},
                                 secrets={"bot_token": "xoxb-test", "signing_secret": "s" * 32})
    try:
        _, path = site.new_day_link(day.login)
        client = site.client()
        assert press(client, path, day.first, "on-my-way").status_code == 303
        answer = press(client, path, day.first, "cant-make-it", note="Van broke down")
        assert answer.status_code == 303
        first = _appointment(site, day.first)
        assert first.technician_id is None and first.progress is None
        assert first.job.status == JobStatus.SCHEDULED
        html = client.get(path).get_data(as_text=True)
        assert "Annual service" not in html and "Oil leak" in html  # no longer on the day
        assert f"/visits/{day.first}/" not in html

        trail = _trail(site, day.first)
        gave_back = next(e for e in trail if e.action == Action.APPOINTMENT_CANT_MAKE_IT)
        assert gave_back.channel == "day-link" and gave_back.actor == day.login
        assert gave_back.before is not None and gave_back.before["technician"] == day.login
        assert gave_back.after is not None and gave_back.after["technician"] is None
        assert trail[-1].action == Action.APPOINTMENT_NOTE and trail[-1].after == {"note": "Van broke down"}

        with site.db.read() as session:
            alerts = [m.payload for m in session.scalars(select(OutboxMessage).where(
                OutboxMessage.kind == integrations.ALERT))
                if m.payload.get("integration_id") == slack.id]
        assert len(alerts) == 1
        assert "can't make it" in alerts[0]["text"] and "Van broke down" in alerts[0]["text"]

        site.post.drain()
        told = [m["Subject"] for m in site.smtp.inbox.to(f"{day.login}-first@example.test")]
        assert told and not any("on the way" in s for s in told)  # given back before it was sent
        mails = [m for m in site.smtp.inbox.to(DISPATCH_EMAIL) if "Annual service" in m.get_content()]
        assert len(mails) == 1
        assert mails[0]["Subject"].startswith("Dispatch alert: Tess")
        assert "unassigned tray" in mails[0].get_content()
        assert f"{BASE_URL}/console/board" in mails[0].get_content()
    finally:
        with domain(site.db) as ctx:
            integrations.remove(ctx, integrations.get(ctx.session, slack.id))


def test_only_todays_and_tomorrows_own_visits_can_be_pressed(site: Instance) -> None:
    day = technician_with_visits(site.db, "mine")
    other = technician_with_visits(site.db, "them")
    _, path = site.new_day_link(day.login)
    client = site.client()
    assert press(client, path, other.first, "on-my-way").status_code == 404
    assert _appointment(site, other.first).progress is None
    assert press(client, path, day.first, "teleport").status_code == 404
    page = client.get(path)
    no_token = client.post(f"{path}/visits/{day.first}/on-my-way", data={})
    assert no_token.status_code == 400
    forged = client.post(f"{path}/visits/{day.first}/on-my-way", data={"csrf": "forged"})
    assert forged.status_code == 403
    foreign = client.post(f"{path}/visits/{day.first}/on-my-way",
                          data={"csrf": form_token(page.get_data(as_text=True))},
                          headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403
    long_note = press(client, path, day.first, "on-site")
    assert long_note.status_code == 303
    too_long = press(client, path, day.first, "done", note="x" * 1001)
    assert too_long.status_code == 400 and "1000" in too_long.get_data(as_text=True)
    assert _appointment(site, day.first).progress is JobStatus.ON_SITE


def test_the_customer_page_shows_the_visit_progress(site: Instance) -> None:
    day = technician_with_visits(site.db, "cust")
    _, path = site.new_day_link(day.login)
    with site.db.read() as session:
        job_id = session.get(Appointment, day.second).job_id  # type: ignore[union-attr]
        customer_id = session.get(Job, job_id).customer_id  # type: ignore[union-attr]
    share = json.loads(run(site.env, "link", "new", "share", f"appointment:{day.second}", "--json"))
    customer_page = share["url"].removeprefix(BASE_URL)
    client = site.client()

    def badge() -> str:
        html = client.get(customer_page).get_data(as_text=True)
        return html.split('class="status status-', 1)[1].split("<", 1)[0]

    assert badge().endswith(">Confirmed")
    assert press(client, path, day.second, "on-my-way").status_code == 303
    assert badge().startswith('on-the-way">On the way · arriving about ')  # after the first visit
    assert press(client, path, day.second, "on-site").status_code == 303
    assert badge() == 'on-site">Technician on site'
    assert press(client, path, day.second, "done").status_code == 303
    assert badge() == 'done">Done'
    whole = json.loads(run(site.env, "link", "new", "share", f"customer:{customer_id}", "--json"))
    assert "Done" in client.get(whole["url"].removeprefix(BASE_URL)).get_data(as_text=True)


@pytest.mark.parametrize(("action", "job_status", "headline"), [
    ("appointment.on_my_way", "en_route", "Tess is on the way"),
    ("appointment.on_site", "on_site", "Tess is on site"),
    ("appointment.done", "completed", "Tess finished the job"),
    ("appointment.cant_make_it", "scheduled", "Technician can't make it: the visit is back in the tray"),
])
def test_slack_posts_say_what_the_day_page_reported(action: str, job_status: str, headline: str) -> None:
    visit = Visit(appointment_id=1, uid="u@fieldcal", sequence=1, action=action, status="confirmed",
                  job_status=job_status, job_id=1, title="Oil leak", description="",
                  starts_at=dt.datetime(2031, 3, 3, 9, tzinfo=dt.UTC),
                  ends_at=dt.datetime(2031, 3, 3, 10, tzinfo=dt.UTC), timezone="Europe/Berlin",
                  location="", customer_id=1, customer_name="Kunde", customer_email="",
                  customer_phone="", technician_login="tess", technician_name="Tess Tester",
                  technician_email="")
    connector = Slack(Config(1, "ops", {"channel": "#dispatch"}, {"bot_token": "xoxb-x"}))
    assert connector.headline(Op.UPDATE, visit) == headline


def test_the_migration_gives_live_visits_their_jobs_progress_and_goes_back(database_url: str) -> None:
    """0015 down and up again: a visit whose job was reported on site before visits had their
    own progress takes the job's; a cancelled visit does not."""
    db = Database(database_url)
    try:
        upgrade(db)
        day = technician_with_visits(db, "mig")
        with domain(db, Actor(day.login, "caldav", "technician")) as ctx:
            scheduling.set_status(ctx, scheduling.get_appointment(ctx.session, day.first), JobStatus.ON_SITE)
        with domain(db) as ctx:
            scheduling.cancel(ctx, scheduling.get_appointment(ctx.session, day.second))
        with db.engine.begin() as connection:
            connection.execute(text("UPDATE job SET status = 'completed' WHERE id = "
                                    "(SELECT job_id FROM appointment WHERE id = :id)"), {"id": day.second})
        config = alembic_config(db)
        with db.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0014")
        with db.engine.connect() as connection:
            columns = connection.execute(text("SELECT * FROM appointment LIMIT 1")).keys()
            assert "progress" not in columns
        upgrade(db)
        with db.engine.connect() as connection:
            rows: dict[int, str | None] = dict(connection.execute(
                text("SELECT id, progress FROM appointment WHERE id IN (:a, :b)"),
                {"a": day.first, "b": day.second}).all())
        assert rows == {day.first: "on_site", day.second: None}
        assert _progress(db, day.first) is JobStatus.ON_SITE  # read back typed
    finally:
        db.dispose()


def _progress(db: Database, appointment_id: int) -> JobStatus | None:
    with db.read() as session:
        found = session.get(Appointment, appointment_id)
        assert found is not None
        return found.progress


def test_the_api_issues_day_links_and_shows_each_visits_progress(site: Instance) -> None:
    """POST /api/v1/links issues a day link (a technician's only), and a visit's JSON carries
    what its technician last reported from the day page."""
    day = technician_with_visits(site.db, "api")
    keys = make_keys(site.db)
    client = site.client()
    auth = keys.headers("dispatcher", **{"Idempotency-Key": f"day-{day.login}"})
    answer = client.post("/api/v1/links", headers=auth,
                         json={"purpose": "day", "subject": f"technician:{day.login}"})
    issued = answer.get_json()
    assert answer.status_code == 201 and issued["purpose"] == "day", issued
    path = issued["url"].removeprefix(BASE_URL)
    assert path.startswith("/d/") and client.get(path).status_code == 200
    status, refused = body_of(client, "POST", "/api/v1/links",
                              headers=keys.headers("dispatcher", **{"Idempotency-Key": "day-team"}),
                              json={"purpose": "day", "subject": "team:nobody"})
    assert 400 <= status < 500 and status != 500, refused

    status, before = body_of(client, "GET", f"/api/v1/appointments/{day.first}",
                             headers=keys.headers("readonly"))
    assert status == 200 and before["progress"] is None and before["progress_at"] is None
    assert press(client, path, day.first, "on-my-way").status_code in (200, 303)
    status, after = body_of(client, "GET", f"/api/v1/appointments/{day.first}",
                            headers=keys.headers("readonly"))
    assert status == 200 and after["progress"] == "en_route" and after["progress_at"], after

    status, revoked = body_of(client, "POST", f"/api/v1/links/{issued['id']}/revoke",
                              headers=keys.headers("dispatcher", **{"Idempotency-Key": f"rv-{day.login}",
                                                                    "If-Match": "*"}))
    assert status == 200 and revoked["url"] is None, revoked
    assert client.get(path).status_code == 404
