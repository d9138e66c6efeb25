"""The harness's pure parts: targets judged from rows, the README block, py-spy stack summaries."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from bench import profile, report
from bench.context import Context, Sizes
from bench.measure import Row


def invoke_row(*, p50_ratio: float, p99_ms: float) -> Row:
    return Row("invoke.process", "triggerhub", "t", p50_ms=1.0, p99_ms=p99_ms, latency_samples=10, rate_per_s=900.0,
               rate_samples=10, floor="floor.unix", ratio={"p50": p50_ratio, "p99": 2.0, "rate": 0.6})


def by_target(rows: dict[str, Row]) -> dict[str, dict[str, object]]:
    return {str(target["scenario"]): target for target in report.targets(rows)}


def test_invoke_target_is_met_only_when_both_the_ratio_and_the_p99_are_within() -> None:
    name = "warm blocking invoke, embedded, process runtime"
    met = by_target({"invoke.process/triggerhub": invoke_row(p50_ratio=1.5, p99_ms=5.0)})[name]
    assert met == {"scenario": name, "target": "p50 ≤ 1.5× the Unix-socket floor; p99 ≤ 5 ms", "status": "met",
                   "measured": "p50 1.50× floor, p99 5.00 ms"}
    assert by_target({"invoke.process/triggerhub": invoke_row(p50_ratio=1.51, p99_ms=5.0)})[name]["status"] == "missed"
    assert by_target({"invoke.process/triggerhub": invoke_row(p50_ratio=1.2, p99_ms=5.1)})[name]["status"] == "missed"
    rate = by_target({"invoke.process/triggerhub": invoke_row(p50_ratio=1.2, p99_ms=5.1)})[
        "invokes/s at 16 concurrent, embedded"]
    assert (rate["status"], rate["measured"]) == ("met", "60% of the floor's rate")


def test_a_target_whose_rows_were_not_measured_is_not_run() -> None:
    statuses = {target["status"] for target in report.targets({})}
    assert statuses == {"not run"}
    webhook = by_target({"webhook.e2e/triggerhub": Row("webhook.e2e", "triggerhub", "t", rate_per_s=500.0)})
    assert webhook["webhook deliveries, end to end"]["status"] == "not run"  # Node-RED's row is missing


def test_webhook_target_divides_by_node_reds_http_rate() -> None:
    rows = {"webhook.e2e/triggerhub": Row("webhook.e2e", "triggerhub", "t", rate_per_s=3000.0),
            "http_function/node-red": Row("http_function", "node-red", "t", rate_per_s=1500.0)}
    assert by_target(rows)["webhook deliveries, end to end"]["status"] == "met"
    assert by_target(rows)["webhook deliveries, end to end"]["measured"] == "2.00× Node-RED's HTTP flow rate"


def test_readme_block_is_appended_once_then_replaced_in_place(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# triggerhub\n\n## Layout\n\ntext\n")
    report.write_readme(readme, "first table\n")
    first = readme.read_text()
    assert first.startswith("# triggerhub\n\n## Layout\n\ntext\n\n## Performance\n\n")
    assert first.endswith(f"{report.README_BEGIN}\nfirst table\n{report.README_END}\n")
    readme.write_text(first + "\n## After\n")
    report.write_readme(readme, "second table\n")
    second = readme.read_text()
    assert second.count("## Performance") == 1 and "first table" not in second
    assert f"{report.README_BEGIN}\nsecond table\n{report.README_END}\n\n## After\n" in second


def test_profile_summary_shares_samples_by_package_and_frame(tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    loop = "run (asyncio/runners.py:190);_run (asyncio/events.py:80)"
    raw.write_text(
        f"{loop};accept (triggerhub/store/sql.py:10);do_execute (sqlalchemy/engine/default.py:1192) 6\n"
        f"{loop};handle (aiohttp/web_protocol.py:446);dumps (json/encoder.py:258) 3\n"
        f"{loop};write (asyncio/selector_events.py:1057) 1\n")
    summary = profile.summarize(raw)
    assert summary["samples"] == 10
    assert summary["inclusive"] == [["sqlalchemy", 60.0], ["triggerhub/store", 60.0], ["aiohttp", 30.0],
                                    ["json", 30.0]]  # asyncio is scaffolding: in every stack
    assert summary["self_by_package"] == [["sqlalchemy", 60.0], ["json", 30.0], ["asyncio", 10.0]]
    assert summary["self"][0] == ["do_execute (default.py:1192)", 60.0]


def test_frames_are_grouped_by_package_or_triggerhub_subpackage() -> None:
    assert profile.group_of("/w/.venv/lib/python3.11/site-packages/sqlalchemy/engine/base.py") == "sqlalchemy"
    assert profile.group_of("triggerhub/store/sql.py") == "triggerhub/store"
    assert profile.group_of("triggerhub/model.py") == "triggerhub/model"
    assert profile.group_of("<frozen runpy>") == "runpy"
    assert profile.group_of("threading.py") == "threading"


def delivery_row(*, ratio: dict[str, float]) -> Row:
    return Row("delivery.all", "triggerhub", "t", p50_ms=2.0, p99_ms=9.0, latency_samples=100, rate_per_s=150.0,
               rate_samples=300, floor="delivery.plain", ratio=ratio,
               values={"hub_cpu_ms_per_event": 1.6, "floor_p50_ms": 1.0, "floor_rate_per_s": 300.0,
                       "floor_hub_cpu_ms_per_event": 1.0})


def test_a_row_divided_by_its_own_scenarios_floor_is_kept_as_measured_and_shown(tmp_path: Path) -> None:
    measured: list[str] = []

    def floor(ctx: Context) -> Row:
        measured.append("floor.aiohttp")
        return Row("floor.aiohttp", "floor", "t", p50_ms=0.1)

    with ExitStack() as stack:
        ctx = Context(tmp_path, Sizes.of(quick=True), stack, {"floor.aiohttp": floor})
        row = ctx.add(delivery_row(ratio={"p50": 2.0, "rate": 0.5, "cpu": 1.6}))
        assert measured == [] and ctx.rows == {"delivery.all/triggerhub": row}
        assert row.ratio == {"p50": 2.0, "rate": 0.5, "cpu": 1.6}
        with pytest.raises(SystemExit, match="floor 'delivery.plain' is not a floor scenario, and the row brings no "
                                             "ratio of its own to it"):
            ctx.add(delivery_row(ratio={}))
    table = report.table({"rows": [row.to_json()], "targets": []})
    assert ("| delivery.all | triggerhub | 2.00 | 9.00 | 100 | 150 | 300 | p50 2.00×, rate 0.50×, hub CPU per event "
            "1.60× delivery.plain (1.00 ms, 300/s, 1.000 hub CPU ms/event) | hub_cpu_ms_per_event 1.60 |") in table
