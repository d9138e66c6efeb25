"""Plan and apply against the FakeWhisk seam: creates, field-diff updates, managed deletes,
feed lifecycle calls, undeploy, and rollback when a REST call fails."""

from __future__ import annotations

import copy
import shutil
import textwrap
from pathlib import Path

import pytest

from tests.plugins.manifests import FIXTURES, GUEST_AUTH, FakeWhisk
from triggerhub import errors
from triggerhub.manifests.deployer import deploy_manifest, undeploy_manifest
from triggerhub.manifests.plan import Change, FieldDiff

IOT = """\
project:
  name: iot
  packages:
    iot:
      actions:
        notify:
          function: hello.py
          inputs:
            threshold: 30
        store:
          function: hello.py
      triggers:
        temp:
          feed: /whisk.system/alarms/alarm
          inputs:
            cron: "0 2 * * *"
      rules:
        alert:
          trigger: temp
          action: notify
"""
ALARM = "/namespaces/whisk.system/actions/alarms/alarm"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copy(FIXTURES / "src" / "hello.py", tmp_path / "hello.py")
    (tmp_path / "manifest.yaml").write_text(IOT)
    return tmp_path


def edit(workdir: Path, old: str, new: str) -> Path:
    path = workdir / "manifest.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return path


async def test_first_deploy_creates_everything_in_order(fake_whisk: FakeWhisk, workdir: Path) -> None:
    outcome = await deploy_manifest(fake_whisk, workdir / "manifest.yaml")

    assert outcome.applied == ("created package iot", "created action iot/notify", "created action iot/store",
                               "created trigger temp", "created rule alert")
    assert fake_whisk.writes() == [
        ("PUT", "/namespaces/guest/packages/iot"), ("PUT", "/namespaces/guest/actions/iot/notify"),
        ("PUT", "/namespaces/guest/actions/iot/store"), ("PUT", "/namespaces/guest/triggers/temp"),
        ("POST", ALARM), ("PUT", "/namespaces/guest/rules/alert")]
    assert fake_whisk.invocations == [(ALARM, {"cron": "0 2 * * *", "lifecycleEvent": "CREATE",
                                               "triggerName": "/guest/temp", "authKey": GUEST_AUTH})]
    trigger = fake_whisk.entity("triggers", "temp")
    assert trigger["parameters"] == []
    assert trigger["annotations"][-1] == {"key": "feed", "value": "/whisk.system/alarms/alarm"}


async def test_redeploy_of_the_same_manifest_changes_nothing(fake_whisk: FakeWhisk, workdir: Path) -> None:
    await deploy_manifest(fake_whisk, workdir / "manifest.yaml")
    before = copy.deepcopy(fake_whisk.docs)
    fake_whisk.calls.clear()

    outcome = await deploy_manifest(fake_whisk, workdir / "manifest.yaml")

    assert outcome.plan.steps == ()
    assert len(outcome.plan.unchanged) == 5
    assert fake_whisk.writes() == [("POST", ALARM)]  # only the feed READ
    assert fake_whisk.docs == before


async def test_edit_shows_an_update_plan_with_changed_fields(fake_whisk: FakeWhisk, workdir: Path) -> None:
    await deploy_manifest(fake_whisk, workdir / "manifest.yaml")
    edit(workdir, "threshold: 30", "threshold: 35\n            unit: celsius")
    edit(workdir, '"0 2 * * *"', '"0 3 * * *"')
    before = copy.deepcopy(fake_whisk.docs)

    outcome = await deploy_manifest(fake_whisk, workdir / "manifest.yaml", dry_run=True)

    assert [(s.change, s.name) for s in outcome.plan.steps] == [(Change.UPDATE, "iot/notify"),
                                                                 (Change.UPDATE, "temp")]
    assert outcome.plan.steps[0].diffs == (FieldDiff("parameters.threshold", 30, 35),
                                           FieldDiff("parameters.unit", None, "celsius"))
    assert outcome.plan.steps[1].diffs == (FieldDiff("feed.cron", "0 2 * * *", "0 3 * * *"),)
    assert outcome.plan.render() == [
        "update  action   iot/notify",
        "          parameters.threshold: 30 -> 35",
        "          parameters.unit: (none) -> celsius",
        "update  trigger  temp",
        "          feed.cron: 0 2 * * * -> 0 3 * * *",
        "0 to create, 2 to update, 0 to delete, 3 unchanged",
    ]
    assert outcome.applied == ()
    assert fake_whisk.docs == before


async def test_applying_an_update_bumps_versions_and_recreates_the_feed(fake_whisk: FakeWhisk, workdir: Path) -> None:
    await deploy_manifest(fake_whisk, workdir / "manifest.yaml")
    edit(workdir, '"0 2 * * *"', '"0 3 * * *"')
    fake_whisk.invocations.clear()

    outcome = await deploy_manifest(fake_whisk, workdir / "manifest.yaml")

    assert outcome.applied == ("updated trigger temp",)
    assert [(args["lifecycleEvent"], args.get("cron")) for _, args in fake_whisk.invocations] == [
        ("READ", None), ("DELETE", None), ("CREATE", "0 3 * * *")]
    assert fake_whisk.entity("triggers", "temp")["version"] == "0.0.2"
    assert fake_whisk.feed_configs == {"/guest/temp": {"cron": "0 3 * * *"}}


async def test_code_change_is_summarised(fake_whisk: FakeWhisk, workdir: Path) -> None:
    await deploy_manifest(fake_whisk, workdir / "manifest.yaml")
    (workdir / "hello2.py").write_text("def main(args):\n    return {}\n")
    edit(workdir, "store:\n          function: hello.py", "store:\n          function: hello2.py")

    outcome = await deploy_manifest(fake_whisk, workdir / "manifest.yaml", dry_run=True)

    step = outcome.plan.steps[0]
    assert (step.change, step.name) == (Change.UPDATE, "iot/store")
    old_code = (workdir / "hello.py").read_text()
    assert step.diffs == (FieldDiff("exec.code", old_code, "def main(args):\n    return {}\n"),)
    assert str(step.diffs[0]) == f"exec.code: <{len(old_code)} chars> -> <30 chars>"


async def test_managed_redeploy_deletes_what_the_manifest_dropped(fake_whisk: FakeWhisk, workdir: Path) -> None:
    await deploy_manifest(fake_whisk, workdir / "manifest.yaml")
    edit(workdir, "        store:\n          function: hello.py\n", "")

    outcome = await deploy_manifest(fake_whisk, workdir / "manifest.yaml")

    assert [(s.change, s.kind_word, s.name) for s in outcome.plan.steps] == [(Change.DELETE, "action", "iot/store")]
    assert fake_whisk.names("actions") == ["iot/notify"]


async def test_undeploy_removes_exactly_what_the_project_created(fake_whisk: FakeWhisk, workdir: Path) -> None:
    await fake_whisk.put("/namespaces/guest/actions/mine", {"exec": {"kind": "python:3.10", "code": "x"}})
    await deploy_manifest(fake_whisk, workdir / "manifest.yaml")
    fake_whisk.calls.clear()
    fake_whisk.invocations.clear()

    outcome = await undeploy_manifest(fake_whisk, workdir / "manifest.yaml")

    assert outcome.applied == ("deleted rule alert", "deleted trigger temp", "deleted action iot/notify",
                               "deleted action iot/store", "deleted package iot")
    deletes = [c for c in fake_whisk.writes() if c[0] != "POST" or c[1] == ALARM]
    assert deletes[1:4] == [("DELETE", "/namespaces/guest/rules/alert"), ("POST", ALARM),
                            ("DELETE", "/namespaces/guest/triggers/temp")]
    assert [args["lifecycleEvent"] for _, args in fake_whisk.invocations] == ["READ", "DELETE"]
    assert sorted(fake_whisk.docs) == ["/namespaces/guest/actions/mine"]


async def test_unmanaged_undeploy_deletes_declared_entities(fake_whisk: FakeWhisk, workdir: Path) -> None:
    shutil.copy(FIXTURES / "10_trigger_rule.yaml", workdir / "plain.yaml")
    (workdir / "src").mkdir()
    shutil.copy(FIXTURES / "src" / "hello.py", workdir / "src" / "hello.py")
    await fake_whisk.put("/namespaces/guest/actions/other", {"exec": {"kind": "python:3.10", "code": "x"}})
    await deploy_manifest(fake_whisk, workdir / "plain.yaml")

    outcome = await undeploy_manifest(fake_whisk, workdir / "plain.yaml")

    assert outcome.applied == ("deleted rule ring", "deleted trigger bell", "deleted action handle")
    assert sorted(fake_whisk.docs) == ["/namespaces/guest/actions/other"]


async def test_failed_call_rolls_back_everything_already_created(fake_whisk: FakeWhisk, workdir: Path) -> None:
    fake_whisk.fail = lambda method, path: (errors.BadRequest("action /guest/iot/notify does not exist")
                                            if (method, path) == ("PUT", "/namespaces/guest/rules/alert") else None)

    with pytest.raises(errors.BadRequest) as caught:
        await deploy_manifest(fake_whisk, workdir / "manifest.yaml")

    assert caught.value.message == ("create rule alert failed: action /guest/iot/notify does not exist; nothing was "
                                    "changed (rolled back 4 step(s))")
    assert fake_whisk.docs == {}
    assert fake_whisk.feed_configs == {}
    assert fake_whisk.writes()[-5:] == [("POST", ALARM), ("DELETE", "/namespaces/guest/triggers/temp"),
                                        ("DELETE", "/namespaces/guest/actions/iot/store"),
                                        ("DELETE", "/namespaces/guest/actions/iot/notify"),
                                        ("DELETE", "/namespaces/guest/packages/iot")]


async def test_failed_update_restores_the_previous_entities(fake_whisk: FakeWhisk, workdir: Path) -> None:
    await deploy_manifest(fake_whisk, workdir / "manifest.yaml")
    before = {p: {k: v for k, v in d.items() if k != "version"} for p, d in fake_whisk.docs.items()}
    edit(workdir, "threshold: 30", "threshold: 99")
    edit(workdir, '"0 2 * * *"', '"0 5 * * *"')
    fake_whisk.fail = lambda method, path: (errors.InternalError("disk full")
                                            if (method, path) == ("PUT", "/namespaces/guest/triggers/temp") else None)

    with pytest.raises(errors.InternalError):
        await deploy_manifest(fake_whisk, workdir / "manifest.yaml")

    after = {p: {k: v for k, v in d.items() if k != "version"} for p, d in fake_whisk.docs.items()}
    assert after == before
    assert fake_whisk.feed_configs == {"/guest/temp": {"cron": "0 2 * * *"}}


async def test_feed_create_failure_deletes_the_trigger(fake_whisk: FakeWhisk, workdir: Path) -> None:
    def refuse(path: str, args: dict[str, object]) -> object:
        raise errors.InternalError("cron pattern '0 2 * * *' is not valid")

    fake_whisk.feed_handler = refuse

    with pytest.raises(errors.InternalError) as caught:
        await deploy_manifest(fake_whisk, workdir / "manifest.yaml")

    assert caught.value.message.startswith("create trigger temp failed: cron pattern '0 2 * * *' is not valid")
    assert fake_whisk.docs == {}


async def test_deploy_into_an_existing_unmanaged_entity_updates_it(fake_whisk: FakeWhisk, workdir: Path) -> None:
    await fake_whisk.put("/namespaces/guest/packages/iot", {"publish": True})

    outcome = await deploy_manifest(fake_whisk, workdir / "manifest.yaml", dry_run=True)

    package = outcome.plan.steps[0]
    assert (package.change, package.name) == (Change.UPDATE, "iot")
    assert package.diffs[0].field == "annotations.whisk-managed"
    assert package.diffs[1] == FieldDiff("publish", True, False)


def test_plan_render_lists_creates(tmp_path: Path) -> None:
    from triggerhub.manifests.loader import load_project
    from triggerhub.manifests.plan import Snapshot, plan_deploy

    (tmp_path / "m.yaml").write_text(textwrap.dedent("""\
        packages:
          default:
            actions:
              a: {code: "x", runtime: python}
        """))
    project = load_project(tmp_path / "m.yaml", env={}, namespace="guest")

    assert plan_deploy(project, Snapshot()).render() == [
        "create  action   a", "1 to create, 0 to update, 0 to delete, 0 unchanged"]


async def test_a_rule_filter_is_planned_and_removed_like_any_field(fake_whisk: FakeWhisk, workdir: Path) -> None:
    edit(workdir, "          action: notify\n", "          action: notify\n          filter: {data: {t: [1]}}\n")
    await deploy_manifest(fake_whisk, workdir / "manifest.yaml")
    assert fake_whisk.entity("rules", "alert")["filter"] == {"data": {"t": [1]}}

    edit(workdir, "filter: {data: {t: [1]}}", "filter: {data: {t: [2]}}\n          transform: {t: $.data.t}")
    outcome = await deploy_manifest(fake_whisk, workdir / "manifest.yaml")
    assert outcome.plan.steps[0].diffs == (FieldDiff("filter", {"data": {"t": [1]}}, {"data": {"t": [2]}}),
                                           FieldDiff("transform", None, {"t": "$.data.t"}))
    edit(workdir, "          filter: {data: {t: [2]}}\n          transform: {t: $.data.t}\n", "")
    outcome = await deploy_manifest(fake_whisk, workdir / "manifest.yaml")
    assert outcome.applied == ("updated rule alert",)
    rule = fake_whisk.entity("rules", "alert")
    assert "filter" not in rule and "transform" not in rule


async def test_a_shadow_rule_is_planned_and_turned_off_when_the_key_is_dropped(fake_whisk: FakeWhisk,
                                                                               workdir: Path) -> None:
    edit(workdir, "          action: notify\n", "          action: notify\n          shadow: true\n")
    await deploy_manifest(fake_whisk, workdir / "manifest.yaml")
    assert fake_whisk.entity("rules", "alert")["shadow"] is True
    outcome = await deploy_manifest(fake_whisk, workdir / "manifest.yaml")
    assert outcome.applied == ()  # unchanged: nothing to do
    edit(workdir, "          shadow: true\n", "")
    outcome = await deploy_manifest(fake_whisk, workdir / "manifest.yaml")
    assert outcome.plan.steps[0].diffs == (FieldDiff("shadow", True, None),)
    assert outcome.applied == ("updated rule alert",)
    assert "shadow" not in fake_whisk.entity("rules", "alert")
