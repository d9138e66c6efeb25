"""`triggerhub alarms preview` says which offset a non-strict cron fires at, and why."""

from __future__ import annotations

import json

from click.testing import CliRunner

from triggerhub.cli import main
from triggerhub.feeds.alarms import AlarmConfig, AlarmKind


def offset_s(trigger: str) -> int:
    return AlarmConfig(AlarmKind.ALARM, trigger, cron="*/5 * * * *").offset_ms() // 1000


def test_a_non_strict_cron_names_its_offset_and_trigger() -> None:
    result = CliRunner().invoke(main, ["alarms", "preview", "--cron", "*/5 * * * *", "--next", "1",
                                       "--trigger", "/team-a/tick"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == (
        f"each instant + {offset_s('/team-a/tick')} s: the fixed offset of trigger /team-a/tick (not strict: OpenWhisk "
        "spreads alarms over the minute); --strict fires on the second, --trigger shows another's offset")


def test_strict_and_json_show_the_offset_in_every_row() -> None:
    strict = CliRunner().invoke(main, ["--json", "alarms", "preview", "--cron", "*/5 * * * *", "--next", "2", "--strict"])
    rows = json.loads(strict.output)
    assert [row["offsetS"] for row in rows] == [0, 0]
    assert all(row["utc"].endswith(":00.000Z") for row in rows)
    spread = json.loads(CliRunner().invoke(main, ["alarms", "preview", "--cron", "*/5 * * * *", "--next", "1",
                                                  "--trigger", "tick", "--json"]).output)
    assert spread[0]["offsetS"] == offset_s("/guest/tick")
    assert spread[0]["utc"].endswith(f":{offset_s('/guest/tick'):02d}.000Z")
