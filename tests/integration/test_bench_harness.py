"""`python -m bench` end to end on its cheapest scenario: the JSON it writes has the promised shape.

Timings are not asserted (speed is judged from the report, never by a test); the shape is: the
scenarios run, each row's p50/p99 with its sample count, the rate with its count, and the ratios
to its floor measured again beside it in the same run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.plugins.services import PROJECT_ROOT


def test_quick_run_of_one_scenario_writes_rows_with_floor_ratios(tmp_path: Path) -> None:
    readme_before = (PROJECT_ROOT / "README.md").read_text()
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "invoke.process", "--out", str(tmp_path)],
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads((tmp_path / "latest.json").read_text())

    assert result["scenarios"] == ["invoke.process"]
    assert result["failures"] == {}
    assert result["quick"] is True
    assert result["load_average"]["samples"] >= 2
    rows = {f"{row['scenario']}/{row['system']}": row for row in result["rows"]}
    assert sorted(rows) == ["floor.unix/floor", "invoke.process/triggerhub"]
    floor, hub = rows["floor.unix/floor"], rows["invoke.process/triggerhub"]
    for row in (floor, hub):
        assert row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"]
        assert row["latency_samples"] > 0 and row["rate_samples"] > 0 and row["rate_per_s"] > 0
        assert row["timed"].startswith("wrk ")
    assert hub["floor"] == "floor.unix"
    beside = {name: hub["values"][f"floor_{name}"] for name in ("p50_ms", "p99_ms", "rate_per_s")}
    assert beside["p50_ms"] > 0 and beside["rate_per_s"] > 0  # the floor measured again beside this row
    assert hub["ratio"] == {"p50": round(hub["p50_ms"] / beside["p50_ms"], 2),
                            "p99": round(hub["p99_ms"] / beside["p99_ms"], 2),
                            "rate": round(hub["rate_per_s"] / beside["rate_per_s"], 3)}
    targets = {target["scenario"]: target for target in result["targets"]}
    invoke = targets["warm blocking invoke, embedded, process runtime"]
    assert invoke["status"] in ("met", "missed") and invoke["measured"].startswith("p50 ")
    assert targets["idle RSS of `triggerhub up`"]["status"] == "not run"

    markdown = (tmp_path / "latest.md").read_text()
    assert "| invoke.process | triggerhub |" in markdown
    assert "load average (1 min) during the run" in markdown
    assert (PROJECT_ROOT / "README.md").read_text() == readme_before  # --out leaves the README alone
