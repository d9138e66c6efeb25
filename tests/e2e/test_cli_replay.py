"""`triggerhub rule replay` and `rule create|update --shadow/--no-shadow`, run as a user runs them."""

from __future__ import annotations

import json
import time

import pytest


def test_shadow_then_replay_by_id_and_window(hub_process, tmp_path):
    source = tmp_path / "echo.py"
    source.write_text("def main(args):\n    return args\n")
    hub_process.cli("action", "create", "echo", str(source))
    hub_process.cli("trigger", "create", "readings")
    assert hub_process.cli("rule", "create", "log", "readings", "echo", "--shadow").stdout.strip() == "ok: created rule log"
    assert json.loads(hub_process.cli("rule", "get", "log").stdout)["shadow"] is True
    first = json.loads(hub_process.cli("--json", "trigger", "fire", "readings", "-p", "n", "1").stdout)["activationId"]
    hub_process.cli("rule", "update", "log", "readings", "echo", "--no-shadow")
    assert "shadow" not in json.loads(hub_process.cli("rule", "get", "log").stdout)

    by_id = hub_process.cli("rule", "replay", "log", "--id", first)
    assert by_id.stdout.strip() == ("replayed rule log: 1 events, 1 matched, 1 run, 0 skipped (replayed before), "
                                    "0 filtered out, 0 failed")
    hub_process.cli("trigger", "fire", "readings", "-p", "n", "2")
    window = json.loads(hub_process.cli("--json", "rule", "replay", "log", "--from", "0",
                                        "--to", str(int(time.time() * 1000) + 1000)).stdout)
    assert {k: window[k] for k in ("events", "matched", "run", "skipped")} == {"events": 2, "matched": 2, "run": 1,
                                                                               "skipped": 1}
    forced = hub_process.cli("rule", "replay", "log", "--from", "1970-01-01T00:00:00Z", "--to", "9999-01-01T00:00:00Z",
                             "--force")
    assert forced.stdout.startswith("replayed rule log: 2 events, 2 matched, 2 run, 0 skipped")
    bad = hub_process.cli("rule", "replay", "log", "--from", "soon", "--to", "later", check=False)
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: rule log/replay: replay \"from\": 'soon' is not a time; ")


@pytest.mark.parametrize(("args", "message"), [
    (("--id", "e1", "--from", "0"), "give --from and --to, or --id (one or more), not both"),
    ((), "give --from and --to, or --id (one or more), not neither"),
    (("--from", "0"), "a window needs both --from and --to"),
])
def test_replay_option_mistakes_are_usage_errors_before_any_request(args, message):
    from click.testing import CliRunner

    from triggerhub.cli import main

    result = CliRunner().invoke(main, ["--apihost", "http://127.0.0.1:9", "--auth", "u:k", "rule", "replay", "log", *args])
    assert result.exit_code == 2 and message in result.stderr
