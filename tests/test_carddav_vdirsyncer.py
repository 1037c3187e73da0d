"""vdirsyncer, the program, as a phone's contacts app would use the address book: discover,
sync, and server-side changes (visits, sites) reaching the local copy."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cardbook import HOUR, contacts_uid, nine
from cardkit import check_vcard, values
from live import LiveServer
from seeding import Account, Seed, add_account, book_job, domain

from server import directory, scheduling
from server.db import Database
from server.models import Role

pytestmark = pytest.mark.slow

VDIRSYNCER = Path(sys.executable).with_name("vdirsyncer")


def vdirsyncer(root: Path, live: LiveServer, account: Account, *args: str) -> str:
    config = root / "config"
    if not config.exists():
        config.write_text(
            "[general]\n"
            f'status_path = "{root / "status"}"\n\n'
            "[pair phone]\n"
            'a = "server"\nb = "local"\n'
            'collections = ["from a"]\n'
            'conflict_resolution = "a wins"\n'
            'implicit = "create"\n\n'
            "[storage server]\n"
            'type = "carddav"\n'
            f'url = "{live.dav}"\n'
            f'username = "{account.login}"\n'
            f'password = "{account.password}"\n\n'
            "[storage local]\n"
            'type = "filesystem"\n'
            f'path = "{root / "local"}"\n'
            'fileext = ".vcf"\n', encoding="utf-8")
    env = {**os.environ, "VDIRSYNCER_CONFIG": str(config)}
    result = subprocess.run([str(VDIRSYNCER), "--verbosity", "INFO", *args], env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            timeout=120, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"vdirsyncer {' '.join(args)} failed:\n{output}"
    assert "error" not in output.lower(), output
    return output


def local_cards(root: Path) -> dict[str, str]:
    """UID -> text of the synchronised files."""
    found = {}
    for path in sorted((root / "local" / "customers").glob("*.vcf")):
        text = path.read_text(encoding="utf-8")
        card = check_vcard(text.replace("\r\n", "\n").replace("\n", "\r\n"), "3.0")
        found[values(card, "uid")[0]] = text
    return found


def test_vdirsyncer_keeps_a_local_copy_current(live: LiveServer, seed: Seed, db: Database,
                                               tmp_path: Path) -> None:
    tag = secrets.token_hex(3)
    with domain(db) as ctx:
        tech = add_account(ctx, f"cardv-{tag}", Role.TECHNICIAN)
        first = directory.add_customer(ctx, f"First {tag}", phone="+44 113 496 0001",
                                       address="1 First St, Leeds LS1 1AA")
        second = directory.add_customer(ctx, f"Second {tag}", address="2 Second St, Leeds LS1 1AB")
        book_job(ctx, tech.login, first.id, "a", nine(2), nine(2) + HOUR)
        uids = {c.id: contacts_uid(ctx.session, c.id) for c in (first, second)}
    vdirsyncer(tmp_path, live, tech, "discover")
    vdirsyncer(tmp_path, live, tech, "sync")
    assert set(local_cards(tmp_path)) == {uids[first.id]}
    assert "+441134960001" in local_cards(tmp_path)[uids[first.id]]

    with domain(db) as ctx:
        visit = book_job(ctx, tech.login, second.id, "b", nine(3), nine(3) + HOUR)
        directory.update_site(ctx, directory.find_customer(ctx.session, first.id).sites[0],
                              compressor_make="Boge", compressor_model="C 20")
    vdirsyncer(tmp_path, live, tech, "sync")
    cards = local_cards(tmp_path)
    assert set(cards) == set(uids.values())
    assert "Boge C 20" in cards[uids[first.id]]

    with domain(db) as ctx:
        scheduling.cancel(ctx, scheduling.get_appointment(ctx.session, visit.appointment_id))
    vdirsyncer(tmp_path, live, tech, "sync")
    assert set(local_cards(tmp_path)) == {uids[first.id]}
    quiet = vdirsyncer(tmp_path, live, tech, "sync")
    assert "Copying" not in quiet and "Deleting" not in quiet, quiet
