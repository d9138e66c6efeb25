"""`triggerhub rule create/update/get/explain` with filters and transforms, run as a user runs them."""

from __future__ import annotations

import json

HOT = {"data": {"temp": [{"numeric": [">", 30]}]}}


def test_rule_with_filter_and_transform_and_explain(hub_process, tmp_path):
    source = tmp_path / "echo.py"
    source.write_text("def main(args):\n    return args\n")
    hub_process.cli("action", "create", "echo", str(source))
    hub_process.cli("trigger", "create", "readings")
    (tmp_path / "hot.json").write_text(json.dumps(HOT))
    created = hub_process.cli("rule", "create", "hot", "readings", "echo", "--filter-file", str(tmp_path / "hot.json"),
                              "--transform", '{"celsius": "$.data.temp"}')
    assert created.stdout.strip() == "ok: created rule hot"
    rule = json.loads(hub_process.cli("rule", "get", "hot").stdout)
    assert (rule["filter"], rule["transform"], rule["counts"]) == (HOT, {"celsius": "$.data.temp"},
                                                                    {"matched": 0, "filtered": 0})

    bad = hub_process.cli("rule", "update", "hot", "readings", "echo", "--filter", '{"data": {"temp": [{"numeric": ["gt", 1]}]}}',
                          check=False)
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: rule hot: filter $.data.temp[0].numeric[0]: expected an operator ('<', '<=', '=', '>=', '>') "
                                 "followed by a number, got 'gt' (code ")
    assert hub_process.cli("rule", "update", "hot", "readings", "echo").stdout.strip() == "ok: updated rule hot"
    assert json.loads(hub_process.cli("rule", "get", "hot").stdout)["filter"] == HOT  # kept when not given

    fired = hub_process.cli("--json", "trigger", "fire", "readings", "-p", "temp", "12")
    event_id = json.loads(fired.stdout)["activationId"]
    (tmp_path / "event.json").write_text(json.dumps({"data": {"temp": 45}}))
    explained = hub_process.cli("rule", "explain", "hot", "--event", str(tmp_path / "event.json"))
    assert explained.stdout.splitlines() == [
        "rule hot: MATCH",
        '  ok   $.data.temp = 45  test [{"numeric": [">", 30]}]',
        '  params: {"celsius": 45}',
    ]
    stored = hub_process.cli("rule", "explain", "hot", "--event-id", event_id).stdout.splitlines()
    assert stored[:3] == ["rule hot: NO MATCH", '  FAIL $.data.temp = 12  test [{"numeric": [">", 30]}]',
                          '  params: {"celsius": 12}']
    assert stored[3:] == [f"event {event_id} on trigger /guest/readings:",
                          "  rule guest/hot [active] -> /guest/echo: filtered",
                          '    FAIL $.data.temp = 12  test [{"numeric": [">", 30]}]']


def test_option_mistakes_are_usage_errors_before_any_request(tmp_path):
    from click.testing import CliRunner

    from triggerhub.cli import main

    def run(*args: str):
        return CliRunner().invoke(main, ["--apihost", "http://127.0.0.1:9", "--auth", "u:k", *args])

    both = run("rule", "update", "hot", "readings", "echo", "--filter", "{}", "--filter-file", "x.json")
    assert both.exit_code == 2 and "give --filter or --filter-file, not both" in both.stderr
    not_json = run("rule", "update", "hot", "readings", "echo", "--transform", "{celsius}")
    assert not_json.exit_code == 2
    assert ("the option value is not JSON (Expecting property name enclosed in double quotes at line 1 column 2)"
            in " ".join(not_json.stderr.split()))
    missing = run("rule", "create", "hot", "readings", "echo", "--filter-file", str(tmp_path / "nope.json"))
    assert missing.exit_code == 2 and "cannot read" in missing.stderr
    neither = run("rule", "explain", "hot")
    assert neither.exit_code == 2 and "give exactly one of --event FILE or --event-id ID" in neither.stderr


def test_a_derived_trigger_from_the_cli(hub_process):
    hub_process.cli("trigger", "create", "door")
    hub_process.cli("trigger", "create", "badge")
    derive = {"kind": "sequence", "from": ["door", "badge"], "key": "$.data.person", "windowS": 30}
    assert hub_process.cli("trigger", "create", "entry", "--derive", json.dumps(derive)).stdout.strip() == \
        "ok: created trigger entry"
    shown = json.loads(hub_process.cli("trigger", "get", "entry").stdout)["derive"]
    assert shown == {"kind": "sequence", "from": ["/guest/door", "/guest/badge"], "key": "$.data.person", "windowS": 30}
    bad = hub_process.cli("trigger", "update", "entry", "--derive", '{"kind": "sequence", "from": ["door", "badge"], '
                          '"key": "$.data.person", "windowS": 0}', check=False)
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: trigger entry: derive.windowS 0 must be a number of seconds above 0 and at most 604800 (code ")
    hub_process.cli("trigger", "update", "entry", "--derive", "null")
    assert "derive" not in json.loads(hub_process.cli("trigger", "get", "entry").stdout)
