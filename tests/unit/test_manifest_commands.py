"""The click commands without a hub: validate, hub settings precedence, unreachable hub."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tests.plugins.manifests import FIXTURES
from triggerhub.manifests.commands import deploy, hub_settings, validate


def test_validate_reports_ok_with_the_entity_count() -> None:
    result = CliRunner().invoke(validate, ["-m", str(FIXTURES / "11_feed_alarm.yaml")])

    assert result.exit_code == 0
    assert result.stdout.endswith("tests/fixtures/manifests/11_feed_alarm.yaml: ok (4 entities)\n")


def test_validate_warns_and_passes_but_strict_makes_warnings_errors() -> None:
    manifest = str(FIXTURES / "22_typed_defaults.yaml")

    lenient = CliRunner().invoke(validate, ["-m", manifest])
    strict = CliRunner().invoke(validate, ["-m", manifest, "--strict"])

    assert (lenient.exit_code, strict.exit_code) == (0, 1)
    assert lenient.stdout.endswith("tests/fixtures/manifests/22_typed_defaults.yaml: ok (2 entities)\n")
    assert [line.removeprefix("warning: ").split(" ", 1)[1] for line in lenient.stderr.splitlines()] == [
        line.split(" ", 1)[1] for line in strict.stderr.splitlines()] == [
        "packages.typed.actions.coerced.inputs.name: number 0 does not match 'type: string'; converted to \"0\"",
        "packages.typed.actions.coerced.inputs.flag: boolean true does not match 'type: string'; converted to "
        "\"true\"",
        "packages.typed.actions.coerced.inputs.count: number 3.0 does not match 'type: integer'; converted to 3"]


def test_validate_reports_routes() -> None:
    result = CliRunner().invoke(validate, ["-m", str(FIXTURES / "19_apis.yaml")])

    assert result.exit_code == 0
    assert result.stdout.endswith("tests/fixtures/manifests/19_apis.yaml: ok (4 entities, 3 routes)\n")


def test_validate_prints_every_problem_and_fails(tmp_path: Path) -> None:
    (tmp_path / "manifest.yaml").write_text("packages:\n  p:\n    actions:\n      a: {}\n      b: {code: x}\n")

    result = CliRunner().invoke(validate, ["-p", str(tmp_path)])

    assert result.exit_code == 1
    file = (tmp_path / "manifest.yaml").as_posix()
    assert result.stderr == (
        f"{file}:4:7 packages.p.actions.a: an action needs 'function' (a file, folder or .zip), inline 'code' with "
        f"'runtime', or a 'docker' image\n"
        f"{file}:5:11 packages.p.actions.b.code: inline 'code' needs 'runtime', one this hub runs: nodejs:20, "
            f"python:3.11\n")


def test_validate_without_a_manifest_says_how_to_pass_one(tmp_path: Path) -> None:
    result = CliRunner().invoke(validate, ["-p", str(tmp_path)])

    assert result.exit_code == 1
    assert result.stderr == f"{tmp_path.as_posix()}:1:1 <root>: no manifest.yaml or manifest.yml here; pass -m <manifest>\n"


def test_deploy_to_an_unreachable_hub_fails_cleanly() -> None:
    result = CliRunner().invoke(deploy, ["-m", str(FIXTURES / "01_function_file.yaml"), "--apihost",
                                         "http://127.0.0.1:1", "--auth", "u:k"])

    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot reach http://127.0.0.1:1/api/v1: ")
    assert result.stderr.endswith("is the hub running (check --apihost / TRIGGERHUB_APIHOST)?\n")


def settings(**options: str | None) -> tuple[str | None, str | None]:
    context = click.Context(click.Command("triggerhub"))
    context.params = {"apihost": None, "auth": None}
    with context:
        return hub_settings(context, options.get("apihost"), options.get("auth"))


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("WSK_CONFIG_FILE", str(tmp_path / "wskprops"))
    monkeypatch.setenv("TRIGGERHUB_HOME", str(tmp_path / "home"))
    # A hub started earlier in this pytest run records itself in the run's properties file.
    monkeypatch.setenv("TRIGGERHUB_PROPS", str(tmp_path / "triggerhubprops"))
    return tmp_path


def test_options_win_over_wskprops(clean_env: Path) -> None:
    (clean_env / "wskprops").write_text("APIHOST=http://props:3233\nAUTH=p:k\n")

    assert settings(apihost="http://opt:1", auth="o:k") == ("http://opt:1", "o:k")
    assert settings() == ("http://props:3233", "p:k")


def test_local_hub_credentials_are_the_last_resort(clean_env: Path) -> None:
    (clean_env / "home").mkdir()
    (clean_env / "home" / "credentials.json").write_text(json.dumps({"guest": "g:k"}))

    assert settings() == ("http://127.0.0.1:3233", "g:k")


def test_nothing_configured_gives_none(clean_env: Path) -> None:
    assert settings() == (None, None)


def test_triggerhub_validate_checks_rule_filters_at_their_line_and_column(tmp_path: Path) -> None:
    from triggerhub.cli import main

    (tmp_path / "manifest.yaml").write_text(
        "packages:\n"
        "  iot:\n"
        "    actions:\n"
        "      alert: {code: 'def main(a): return a', runtime: python}\n"
        "    triggers:\n"
        "      reading: {}\n"
        "    rules:\n"
        "      hot:\n"
        "        trigger: reading\n"
        "        action: alert\n"
        "        filter: {data: {temp: [{numeric: ['>', 30]}], room: [{prefix: 7}]}}\n"
        "        transform: {at: '$.data[x'}\n")
    result = CliRunner().invoke(main, ["validate", "-p", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{tmp_path / 'manifest.yaml'}:11:63 packages.iot.rules.hot.filter.data.room[0].prefix: "
                               "filter $.data.room[0].prefix: expected a string, got 7")
    assert lines[1] == (f"{tmp_path / 'manifest.yaml'}:12:21 packages.iot.rules.hot.transform.at: "
                               "transform $.at: bad path '$.data[x': unexpected '[' at character 7; use .name, [0] or ['name']")
    # the same manifest without the hub's compiler (a bare manifests command) leaves the check to the hub
    assert CliRunner().invoke(validate, ["-p", str(tmp_path)]).exit_code == 0
