"""The seed scenario and the wsk-shaped commands, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys

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
    assert fired.stdout.startswith("ok: triggered /guest/t with id ")
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
    assert missing.stderr == (f"error: action nope: The requested resource does not exist. (code {_code(missing.stderr)})\n"
                              "hint: `triggerhub action list` shows what exists\n")
    as_json = hub_process.cli("action", "get", "nope", "--json", check=False)
    assert as_json.returncode == 1
    error = json.loads(as_json.stdout)
    assert error == {"error": f"action nope: The requested resource does not exist. (code {error['code']})",
                     "status": 404, "code": error["code"], "hint": "`triggerhub action list` shows what exists"}


def test_json_before_or_after_the_subcommand_prints_only_json(hub_process, tmp_path):
    source = tmp_path / "hello.js"
    source.write_text(JS_HELLO)
    for args in (["--json", "action", "create", "hello", str(source)], ["action", "update", "hello", str(source), "--json"]):
        created = hub_process.cli(*args)
        assert json.loads(created.stdout)["name"] == "hello"
        assert created.stderr == ""
    for args in (["--json", "action", "list"], ["action", "list", "--json"], ["action", "--json", "list"]):
        assert [a["name"] for a in json.loads(hub_process.cli(*args).stdout)] == ["hello"]
    hub_process.cli("trigger", "create", "t")
    hub_process.cli("rule", "create", "r", "t", "hello")
    fired = json.loads(hub_process.cli("trigger", "fire", "t", "--json").stdout)
    assert sorted(fired) == ["activationId"]
    assert json.loads(hub_process.cli("rule", "disable", "r", "--json").stdout) == {
        "ok": True, "rule": "r", "status": "inactive"}

    again = hub_process.cli("action", "create", "hello", str(source), "--json", check=False)
    assert again.returncode == 1
    assert again.stderr == ""
    error = json.loads(again.stdout)
    assert error == {"error": f"action hello: resource already exists (code {error['code']})", "status": 409,
                     "code": error["code"], "hint": "it exists already: use `triggerhub action update` to change it"}
    plain = hub_process.cli("action", "create", "hello", str(source), check=False)
    assert plain.stderr.splitlines() == [f"error: action hello: resource already exists (code {_code(plain.stderr)})",
                                         "hint: it exists already: use `triggerhub action update` to change it"]
    usage = hub_process.cli("activation", "get", "--json", check=False)
    assert usage.returncode == 2
    assert json.loads(usage.stdout) == {"error": "give an ACTIVATION_ID (or a unique prefix of one), or --last"}


def _code(stderr: str) -> str:
    return stderr.split("(code ", 1)[1].split(")", 1)[0]


def test_last_and_prefixes_name_an_activation(hub_process, tmp_path):
    source = tmp_path / "echo.py"
    source.write_text("def main(args):\n    print('saw', args.get('n'))\n    return {'n': args.get('n')}\n")
    hub_process.cli("action", "create", "echo", str(source))
    ids = [json.loads(hub_process.cli("--json", "action", "invoke", "echo", "-b", "-p", "n", str(n)).stdout)["activationId"]
           for n in (1, 2)]
    assert json.loads(hub_process.cli("activation", "result", "--last").stdout) == {"n": 2}
    assert hub_process.cli("activation", "logs", "--last").stdout.rstrip().endswith("stdout: saw 2")
    assert json.loads(hub_process.cli("activation", "get", "--last", "--json").stdout)["activationId"] == ids[1]
    prefix = next(ids[0][:n] for n in range(4, 33) if not ids[1].startswith(ids[0][:n]))
    assert json.loads(hub_process.cli("activation", "result", prefix).stdout) == {"n": 1}
    assert json.loads(hub_process.cli("activation", "get", prefix + "…").stdout)["activationId"] == ids[0]
    polled = hub_process.cli("activation", "poll", "echo", "--since-seconds", "600", "--exit", "2", "--json").stdout
    assert [json.loads(line)["activationId"] for line in polled.splitlines()] == ids  # JSON Lines, oldest first
    shown = hub_process.cli("activation", "poll", "echo", "--since-seconds", "600", "--exit", "2").stdout
    assert shown.splitlines()[:5] == ["Enter Ctrl-c to exit.", "Polling for activation logs", "",
                                      f"Activation: 'echo' ({ids[0]})", shown.splitlines()[4]]
    assert shown.splitlines()[4].endswith("stdout: saw 1")
    unknown = hub_process.cli("activation", "get", "zzzz", check=False)
    assert unknown.returncode == 1
    assert unknown.stderr == ("error: activation zzzz: The requested resource does not exist.\n"
                              "hint: `triggerhub activation list` shows what exists\n")


def test_tables_fit_the_terminal_and_keep_full_ids(hub_process, tmp_path):
    source = tmp_path / "a.py"
    source.write_text("def main(args):\n    return args\n")
    name = "a-rather-long-package-free-action-name-that-needs-room"
    hub_process.cli("action", "create", name, str(source))
    ids = [json.loads(hub_process.cli("--json", "action", "invoke", name, "-b").stdout)["activationId"] for _ in range(3)]
    for columns in ("80", "60", "132"):
        env = {**hub_process.env(), "COLUMNS": columns}
        listing = subprocess.run([sys.executable, "-m", "triggerhub.cli", "activation", "list"], env=env,
                                 capture_output=True, text=True, timeout=60, check=True).stdout
        lines = listing.splitlines()
        assert max(len(line) for line in lines) <= int(columns), listing
        for activation_id in ids:
            assert sum(activation_id in line for line in lines) == 1, listing
        shown = [line.split()[0] for line in lines if any(i in line for i in ids)]
        assert shown == ids[::-1]
        if columns == "132":
            assert sum(name in line for line in lines) == 3


def test_status_reports_every_component_and_only_the_callers_feeds(hub_process, tmp_path):
    hub_process.cli("trigger", "create", "nightly", "--feed", "/whisk.system/alarms/alarm", "-p", "cron", "0 3 * * *")
    other_auth = hub_process.cli("admin", "user", "create", "bob", "-ns", "team-b").stdout.strip()
    hub_process.cli("--auth", other_auth, "trigger", "create", "theirs", "--feed", "/whisk.system/alarms/interval",
                    "-p", "minutes", "5")

    body = json.loads(hub_process.cli("status", "--json").stdout)
    assert (body["status"], body["mode"], body["namespace"]) == ("ok", "embedded", "guest")
    components = body["components"]
    assert sorted(components) == ["feeds", "pool", "store", "streams"]
    assert all(component["status"] == "ok" for component in components.values())
    assert components["pool"]["runtime"] == "process"
    assert components["store"]["triggers"] == 1
    assert [(f["trigger"], f["feed"], f["status"]) for f in components["feeds"]["feeds"]] == [
        ("/guest/nightly", "/whisk.system/alarms/alarm", "active")]
    theirs = json.loads(hub_process.cli("--auth", other_auth, "--json", "status").stdout)["components"]["feeds"]
    assert [f["trigger"] for f in theirs["feeds"]] == ["/team-b/theirs"]

    screen = subprocess.run([sys.executable, "-m", "triggerhub.cli", "status"], env={**hub_process.env(), "COLUMNS": "80"},
                            capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    assert screen[0] == f"hub {hub_process.apihost}: ok (embedded mode, version {body['version']}, namespace guest)"
    assert max(len(line) for line in screen) <= 80
    assert [line.split()[:2] for line in screen if line.split()[:1] in (["store"], ["streams"], ["pool"], ["feeds"])
            and len(line.split()) > 1 and line.split()[1] == "ok"] == [
        ["store", "ok"], ["streams", "ok"], ["pool", "ok"], ["feeds", "ok"]]
    assert any(line.startswith("/guest/nightly ") and " active " in line for line in screen)
