"""Settings as one declared schema: unknown names refused, `fieldcal config` shows the effect."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from server.cli import cli
from server.config import declared, load_settings
from server.errors import ConfigError

README = Path(__file__).resolve().parent.parent / "README.md"


def test_a_misspelt_variable_is_refused_with_the_closest_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"FIELDCAL_INSTANCE": str(tmp_path), "FIELDCAL_SMPT_URL": "smtp://h:25"})
    assert str(caught.value) == (
        "unknown setting FIELDCAL_SMPT_URL (in the environment); did you mean FIELDCAL_SMTP_URL?")


def test_a_misspelt_line_in_the_instance_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "fieldcal.env").write_text("FIELDCAL_TIMEZNOE=Europe/Berlin\n")
    with pytest.raises(ConfigError, match=r"FIELDCAL_TIMEZNOE \(in .*fieldcal.env\); "
                                          r"did you mean FIELDCAL_TIMEZONE\?"):
        load_settings({"FIELDCAL_INSTANCE": str(tmp_path)})


def test_values_are_parsed_by_their_declaration(tmp_path: Path) -> None:
    (tmp_path / "fieldcal.env").write_text("FIELDCAL_FEED_PAST_DAYS=7\nFIELDCAL_SECRET_KEYS=new, old\n")
    settings = load_settings({"FIELDCAL_INSTANCE": str(tmp_path), "FIELDCAL_FEED_PAST_DAYS": "9",
                              "FIELDCAL_BASE_URL": "https://cal.example.test/",
                              "FIELDCAL_DAV_AUTH_DELAY": "0",
                              "FIELDCAL_TEST_POSTGRES_URL": "postgresql://ignored"})
    assert settings.feed_past_days == 9  # the environment wins over the file
    assert settings.secret_keys == ("new", "old")
    assert settings.base_url == "https://cal.example.test"
    assert settings.dav_auth_delay == 0.0
    assert settings.database_url == f"sqlite:///{tmp_path.resolve() / 'fieldcal.sqlite3'}"
    assert settings.extra["FIELDCAL_FEED_PAST_DAYS"] == "9"
    with pytest.raises(ConfigError, match="FIELDCAL_BOOKING_RATE must be a whole number, not 'many'"):
        load_settings({"FIELDCAL_INSTANCE": str(tmp_path), "FIELDCAL_BOOKING_RATE": "many"})


def test_config_command_masks_secrets_and_names_sources(tmp_path: Path) -> None:
    (tmp_path / "fieldcal.env").write_text("FIELDCAL_SECRET_KEYS=first-secret,second-secret\n")
    env = {"FIELDCAL_INSTANCE": str(tmp_path),
           "FIELDCAL_SMTP_URL": "smtp+starttls://mailer:hunter2@mail.example.test:587",
           "FIELDCAL_DATABASE_URL": "postgresql://app:pgsecret@db.example.test/fieldcal",
           "FIELDCAL_SECRET_KEYS": None, "FIELDCAL_BASE_URL": None}
    result = CliRunner().invoke(cli, ["config", "--json"], env=env)
    assert result.exit_code == 0, result.output
    for secret in ("first-secret", "second-secret", "hunter2", "pgsecret"):
        assert secret not in result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert set(rows) == {spec.env for _, spec in declared()}
    assert rows["FIELDCAL_SMTP_URL"] == {
        "name": "FIELDCAL_SMTP_URL", "value": "smtp+starttls://mailer:***@mail.example.test:587",
        "source": "env", "default": "", "help": rows["FIELDCAL_SMTP_URL"]["help"]}
    assert rows["FIELDCAL_DATABASE_URL"]["value"] == "postgresql://app:***@db.example.test/fieldcal"
    assert rows["FIELDCAL_SECRET_KEYS"]["value"] == "***,***"
    assert rows["FIELDCAL_SECRET_KEYS"]["source"] == str(tmp_path.resolve() / "fieldcal.env")
    assert rows["FIELDCAL_BASE_URL"] == {**rows["FIELDCAL_BASE_URL"], "value": "http://127.0.0.1:8000",
                                         "source": "default"}
    text = CliRunner().invoke(cli, ["config"], env=env)
    assert re.search(r"^FIELDCAL_FEED_PAST_DAYS +30 +\(default\)$", text.output, re.MULTILINE)


def test_config_command_refuses_an_unknown_name(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["config"], env={"FIELDCAL_INSTANCE": str(tmp_path),
                                                      "FIELDCAL_BOOKNG_RATE": "5"})
    assert result.exit_code == 1
    assert "did you mean FIELDCAL_BOOKING_RATE?" in result.output


def test_every_declared_setting_is_in_the_readme_table() -> None:
    table = {name for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("| `")
             for name in re.findall(r"`(FIELDCAL_[A-Z_]+)`", line.split("|")[1])}
    assert table == {spec.env for _, spec in declared()}
