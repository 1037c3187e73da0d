"""vdirsyncer as a real two-way client: server changes reach local files, local edits of
personal events reach the server, and a sync with nothing changed moves nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from live import (
    LiveServer,
)
from seeding import (
    Account,
    Seed,
    after_of,
    appointment_row,
    at,
    book_job,
    domain,
    fresh_technician,
    items_of,
    personal_event,
    put_personal,
    row_counts,
)

from server import audit, calendars, scheduling
from server.db import Database

VDIRSYNCER = Path(sys.executable).with_name("vdirsyncer")
pytestmark = pytest.mark.slow


class Vdirsyncer:
    def __init__(self, root: Path, live: LiveServer, account: Account) -> None:
        self.root = root
        self.local = root / "local"
        self.config = root / "config"
        self.config.write_text(
            "[general]\n"
            f'status_path = "{root / "status"}"\n\n'
            "[pair phone]\n"
            'a = "server"\n'
            'b = "local"\n'
            'collections = ["personal", "jobs"]\n'
            'conflict_resolution = "a wins"\n'
            'implicit = "create"\n\n'
            "[storage server]\n"
            'type = "caldav"\n'
            f'url = "{live.dav}"\n'
            f'username = "{account.login}"\n'
            f'password = "{account.password}"\n\n'
            "[storage local]\n"
            'type = "filesystem"\n'
            f'path = "{self.local}"\n'
            'fileext = ".ics"\n',
            encoding="utf-8",
        )

    def run(self, *args: str) -> str:
        env = {**os.environ, "VDIRSYNCER_CONFIG": str(self.config)}
        result = subprocess.run([str(VDIRSYNCER), "--verbosity", "INFO", *args], env=env,
                                stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=120, check=False)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"vdirsyncer {' '.join(args)} failed:\n{output}"
        assert "error" not in output.lower(), output
        return output

    def files(self, collection: str) -> dict[Path, str]:
        folder = self.local / collection
        return {p: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.ics"))}

    def file_with(self, collection: str, uid: str) -> Path:
        matches = [p for p, text in self.files(collection).items() if f"UID:{uid}" in text]
        assert len(matches) == 1, (uid, list(self.files(collection)))
        return matches[0]


def test_two_way_round_trip(live: LiveServer, seed: Seed, db: Database, tmp_path: Path) -> None:
    fresh = fresh_technician(db, seed, "vdir", [(at(40, 9), at(40, 10))])
    account, (job,) = fresh.account, fresh.booked
    with domain(db) as ctx:
        put_personal(ctx, account.login, "lunch.ics",
                     personal_event("lunch@example.test", "Lunch", at(40, 12), at(40, 13)))
    sync = Vdirsyncer(tmp_path, live, account)
    sync.run("discover")
    sync.run("sync")
    assert "SUMMARY:Lunch" in sync.files("personal")[sync.file_with("personal", "lunch@example.test")]
    job_file = sync.file_with("jobs", job.uid)
    assert "DTSTART:20310412T090000Z" in job_file.read_text()

    # server side: the dispatcher books another visit and moves the first one
    with domain(db) as ctx:
        booked = book_job(ctx, account.login, seed.customer_ids[1], "Second visit",
                          at(41, 9), at(41, 10))
        scheduling.reschedule(ctx, scheduling.get_appointment(ctx.session, job.appointment_id),
                              at(40, 14), at(40, 15))
    sync.run("sync")
    assert "DTSTART:20310412T140000Z" in sync.file_with("jobs", job.uid).read_text()
    sync.file_with("jobs", booked.uid)

    # local side: edit the personal event, add one, then delete it
    lunch = sync.file_with("personal", "lunch@example.test")
    lunch.write_text(lunch.read_text().replace("SUMMARY:Lunch", "SUMMARY:Long lunch"))
    (sync.local / "personal" / "walk.ics").write_text(
        personal_event("walk@example.test", "Walk", at(42, 7), at(42, 8)))
    sync.run("sync")
    server_items = {i.uid: i for i in items_of(db, f"{account.login}/personal").values()}
    assert "SUMMARY:Long lunch" in server_items["lunch@example.test"].text
    assert "SUMMARY:Walk" in server_items["walk@example.test"].text
    with db.read() as session:
        collection = calendars.require_collection(session, f"{account.login}/personal")
        puts = [e for e in audit.trail(session, "collection", collection.id)
                if e.action == "item.put" and e.channel == "caldav"]
    assert {after_of(e)["uid"] for e in puts} == {"lunch@example.test", "walk@example.test"}
    assert {e.actor for e in puts} == {account.login}

    # nothing changed on either side: a sync moves nothing
    before_files = {**sync.files("personal"), **sync.files("jobs")}
    before_rows = row_counts(db)
    sync.run("sync")
    assert {**sync.files("personal"), **sync.files("jobs")} == before_files
    assert row_counts(db) == before_rows

    (sync.local / "personal" / "walk.ics").unlink()
    sync.run("sync")
    assert "walk@example.test" not in {
        i.uid for i in items_of(db, f"{account.login}/personal").values()}
    assert appointment_row(db, job.appointment_id).technician_id is not None
