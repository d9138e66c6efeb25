"""The CLI's terminal output and hub lookup: tables fit the width, ids stay whole, keys stay with
the address they were written for."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from triggerhub.cli.context import Column, fitted_table
from triggerhub.cli.props import resolve

ID = "0123456789abcdef0123456789abcdef"


def rendered(width: int, rows: list[list[str]]) -> list[str]:
    columns = [Column("activation id", keep=True), Column("status", min_width=7), Column("entity", min_width=10),
               Column("start", min_width=8), Column("kind", min_width=6)]
    console = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    with console.file:
        console.print(fitted_table("activations", columns, rows, width=width))
    return console.export_text().splitlines()


@pytest.mark.parametrize("width", [40, 60, 80, 100, 200])
def test_a_table_fits_its_width_and_never_cuts_the_id(width: int) -> None:
    rows = [[ID, "application error", "a/very/long/package/and/action-name", "2026-12-05 07:15:49", "nodejs:20"]]
    lines = rendered(width, rows)
    assert max(len(line) for line in lines) <= max(width, len(ID))
    assert any(line.startswith(ID) for line in lines)


def test_the_least_important_columns_go_first() -> None:
    rows = [[ID, "success", "hello", "2026-12-05 07:15:49", "nodejs:20"]]
    assert rendered(200, rows)[1].split() == ["activation", "id", "status", "entity", "start", "kind"]
    header = rendered(60, rows)[1].split()
    assert header[:4] == ["activation", "id", "status", "entity"]
    assert "kind" not in header


@pytest.fixture
def user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("TRIGGERHUB_APIHOST", "TRIGGERHUB_AUTH", "TRIGGERHUB_HOME", "TRIGGERHUB_PROPS", "WSK_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_props_file_of_up_names_the_hub(user: Path) -> None:
    (user / ".triggerhubprops").write_text("APIHOST=http://127.0.0.1:3271\nAUTH=u:k\n")
    (user / ".wskprops").write_text("APIHOST=https://openwhisk.example\nAUTH=other:key\n")
    settings = resolve(None, None)
    assert (settings.apihost, settings.auth, settings.apihost_from) == (
        "http://127.0.0.1:3271", "u:k", "~/.triggerhubprops")


def test_a_key_from_a_file_goes_only_to_the_address_beside_it(user: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (user / ".triggerhubprops").write_text("APIHOST=http://127.0.0.1:3271\nAUTH=u:k\n")
    monkeypatch.setenv("TRIGGERHUB_APIHOST", "127.0.0.1:4000")
    settings = resolve(None, None)
    assert (settings.apihost, settings.auth, settings.apihost_from) == ("http://127.0.0.1:4000", "", "TRIGGERHUB_APIHOST")
    assert resolve("http://127.0.0.1:3271/", None).auth == "u:k"


def test_flags_beat_environment_beat_files(user: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (user / ".triggerhubprops").write_text("APIHOST=http://127.0.0.1:3271\nAUTH=u:k\n")
    monkeypatch.setenv("TRIGGERHUB_AUTH", "env:key")
    assert resolve(None, None).auth == "env:key"
    assert resolve("http://h:1", "flag:key") == type(resolve(None, None))("http://h:1", "flag:key", "--apihost")


def test_an_example_needs_its_unset_variables_and_an_mqtt_broker(tmp_path: Path) -> None:
    from triggerhub.cli.examples import missing_service

    manifest = tmp_path / "manifest.yaml"
    manifest.write_text("# DATABASE_URL=$NOT_THIS in a comment\ninputs:\n  dsn: ${DATABASE_URL}\n  token: $TOKEN\n"
                        "filter:\n  $or: [{a: 1}]\n  price: $${ESCAPED}\n")
    assert missing_service(manifest, {}, mqtt_url=None) == "set DATABASE_URL and TOKEN to deploy it"
    assert missing_service(manifest, {"DATABASE_URL": "x", "TOKEN": "y"}, mqtt_url=None) is None
    manifest.write_text("feed: /whisk.system/mqtt/subscribe\n")
    assert missing_service(manifest, {}, mqtt_url=None) == (
        "it needs an MQTT broker: run `triggerhub up --mqtt-embedded` (scripts/up does)")
    assert missing_service(manifest, {}, mqtt_url="mqtt://127.0.0.1:1884") is None


def test_the_home_key_is_the_last_resort(user: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = user / "hub-home"
    home.mkdir()
    (home / "credentials.json").write_text('{"guest": "home:key"}')
    monkeypatch.setenv("TRIGGERHUB_HOME", str(home))
    assert resolve(None, None).auth == "home:key"
    (user / ".triggerhubprops").write_text("APIHOST=http://127.0.0.1:3271\nAUTH=u:k\n")
    assert resolve(None, None).auth == "u:k"  # the file's address goes with the file's key
