"""The seed scenario and the wsk-shaped commands, run as a user runs them."""

from __future__ import annotations

import json

JS_HELLO = "function main() { return {hello: 'world'}; }\n"


def test_seed_scenario_with_the_cli(hub_process, tmp_path):
    source = tmp_path / "action.js"
    source.write_text(JS_HELLO)
    created = hub_process.cli("action", "create", "HelloAction", str(source))
    assert created.stdout.strip() == "ok: created action HelloAction"
    result = hub_process.cli("action", "invoke", "HelloAction", "--result")
    assert result.stdout.strip() == '{"hello": "world"}'
    assert hub_process.cli("auth").stdout.strip() == hub_process.auth


def test_trigger_rule_activation_commands(hub_process, tmp_path):
    source = tmp_path / "echo.py"
    source.write_text("def main(args):\n    print('got', args.get('x'))\n    return args\n")
    hub_process.cli("action", "create", "echo", str(source))
    hub_process.cli("trigger", "create", "t", "-p", "x", "1")
    hub_process.cli("rule", "create", "r", "t", "echo")
    fired = hub_process.cli("trigger", "fire", "t", "-p", "y", "2")
    assert fired.stdout.startswith("ok: triggered /_/t with id ")
    disabled = hub_process.cli("rule", "disable", "r")
    assert disabled.stdout.strip() == "ok: disabled rule r"
    assert hub_process.cli("trigger", "fire", "t").stdout.strip() == "ok: trigger t has no active rules; nothing fired"
    invoked = hub_process.cli("--json", "action", "invoke", "echo", "-p", "x", "5", "--blocking")
    record = json.loads(invoked.stdout)
    assert record["response"]["result"] == {"x": 5}
    logs = hub_process.cli("activation", "logs", record["activationId"]).stdout
    assert logs.rstrip().endswith("stdout: got 5")
    listing = json.loads(hub_process.cli("--json", "activation", "list").stdout)
    assert record["activationId"] in [item["activationId"] for item in listing]


def test_cli_errors_are_one_line(hub_process):
    missing = hub_process.cli("action", "invoke", "nope", "--result", check=False)
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: The requested resource does not exist. (code ")
