"""Loading wskdeploy manifests into REST PUT bodies: every construct, exact bodies."""

from __future__ import annotations

import base64
import io
import zipfile
from pathlib import Path

import pytest

from tests.plugins.manifests import FIXTURES
from triggerhub.manifests.loader import load_project
from triggerhub.manifests.project import DesiredEntity, FeedSpec, Project
from triggerhub.manifests.runtimes import Runtimes
from triggerhub.model import Collection

HELLO_PY = (FIXTURES / "src" / "hello.py").read_text()
HELLO_JS = (FIXTURES / "src" / "hello.js").read_text()
DEFAULT_LIMITS = {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}
WEB_ON = [{"key": "web-export", "value": True}, {"key": "raw-http", "value": False}, {"key": "final", "value": True}]


def load(name: str, env: dict[str, str] | None = None, **kwargs: object) -> Project:
    return load_project(FIXTURES / name, env=env or {}, namespace="guest", **kwargs)  # type: ignore[arg-type]


def entity(project: Project, collection: Collection, name: str) -> DesiredEntity:
    found = project.find(collection, name)
    assert found is not None, f"{collection.value} {name} not in {[e.name for e in project.entities]}"
    return found


def test_function_file_in_default_package_infers_the_kind_from_the_extension() -> None:
    project = load("01_function_file.yaml")

    assert [(e.collection, e.name) for e in project.entities] == [(Collection.ACTIONS, "hello")]
    assert project.entities[0].body == {
        "exec": {"kind": "python:3.11", "code": HELLO_PY, "binary": False},
        "limits": DEFAULT_LIMITS, "annotations": [], "publish": False, "parameters": [],
    }
    assert project.managed is False


def test_inline_code_with_family_runtime_and_main() -> None:
    project = load("02_inline_code.yaml")

    assert entity(project, Collection.PACKAGES, "inline").body == {"publish": False, "parameters": [], "annotations": []}
    assert entity(project, Collection.ACTIONS, "inline/greet").body["exec"] == {
        "kind": "nodejs:20", "code": 'function greet(params) {\n  return { msg: "hi " + params.name };\n}\n',
        "binary": False, "main": "greet"}


def test_runtime_and_kind_keys_resolve_family_defaults() -> None:
    project = load("03_runtimes.yaml")

    kinds = {e.name: e.body["exec"]["kind"] for e in project.entities if e.collection is Collection.ACTIONS}
    assert kinds == {"kinds/by-kind": "python:3.11", "kinds/by-runtime": "nodejs:20", "kinds/inferred-js": "nodejs:20"}


def test_family_defaults_come_from_the_platform_when_it_lists_runtimes() -> None:
    hub = Runtimes.from_info({"runtimes": {"python": [{"kind": "python:3.11", "default": True}],
                                           "nodejs": [{"kind": "nodejs:20", "default": True}]}})

    project = load("03_runtimes.yaml", runtimes=hub)

    assert entity(project, Collection.ACTIONS, "kinds/by-kind").body["exec"]["kind"] == "python:3.11"


def test_web_values_set_the_wskdeploy_annotations() -> None:
    project = load("04_web.yaml")

    annotations = {e.name: e.body["annotations"] for e in project.entities if e.collection is Collection.ACTIONS}
    assert annotations == {
        "webby/public": WEB_ON,
        "webby/yes-web": WEB_ON,
        "webby/raw": [{"key": "web-export", "value": True}, {"key": "raw-http", "value": True},
                      {"key": "final", "value": True}],
        "webby/hidden": [{"key": "web-export", "value": False}, {"key": "raw-http", "value": False},
                         {"key": "final", "value": False}],
        "webby/alias": [{"key": "require-whisk-auth", "value": "s3cret"}, *WEB_ON],
    }


def test_limits_map_to_rest_names() -> None:
    project = load("05_limits.yaml")

    assert entity(project, Collection.ACTIONS, "limited/quick").body["limits"] == {
        "timeout": 2000, "memory": 128, "logs": 1, "concurrency": 1}


def test_single_line_inputs_keep_yaml_types_and_type_names_declare_zero_values() -> None:
    project = load("06_inputs_single_line.yaml")

    assert entity(project, Collection.ACTIONS, "single/typed").body["parameters"] == [
        {"key": "name", "value": "Ada"}, {"key": "count", "value": 3}, {"key": "ratio", "value": 0.5},
        {"key": "enabled", "value": True}, {"key": "tags", "value": ["a", "b"]},
        {"key": "settings", "value": {"depth": 2}}, {"key": "declared_string", "value": ""},
        {"key": "declared_integer", "value": 0}, {"key": "declared_float", "value": 0.0},
        {"key": "declared_boolean", "value": False}, {"key": "declared_json", "value": {}},
    ]


def test_multi_line_inputs_use_value_then_default_then_zero() -> None:
    project = load("07_inputs_multi_line.yaml")

    assert entity(project, Collection.PACKAGES, "multi").body["parameters"] == [{"key": "region", "value": "eu-west"}]
    assert entity(project, Collection.ACTIONS, "multi/typed").body["parameters"] == [
        {"key": "threshold", "value": 30}, {"key": "unit", "value": "celsius"}, {"key": "retries", "value": 0},
        {"key": "scale", "value": 2.0}, {"key": "options", "value": {"a": 1}},
    ]


def test_annotations_and_conductor() -> None:
    project = load("08_annotations.yaml")

    assert entity(project, Collection.PACKAGES, "annotated").body["annotations"] == [{"key": "owner", "value": "ops"}]
    assert entity(project, Collection.ACTIONS, "annotated/tagged").body["annotations"] == [
        {"key": "description", "value": "says hello"}, {"key": "sampleInput", "value": {"name": "Ada"}}]
    assert entity(project, Collection.ACTIONS, "annotated/conductor").body["annotations"] == [
        {"key": "conductor", "value": True}]


def test_sequences_resolve_components_to_fully_qualified_names_in_dependency_order() -> None:
    project = load("09_sequences.yaml")

    both = entity(project, Collection.ACTIONS, "pipeline/both")
    twice = entity(project, Collection.ACTIONS, "pipeline/twice")
    assert both.is_sequence and twice.is_sequence
    assert both.body == {"exec": {"kind": "sequence", "components": ["/guest/pipeline/first", "/guest/pipeline/second"]},
                         "annotations": [], "publish": False}
    assert twice.body["exec"]["components"] == ["/guest/pipeline/both", "/guest/pipeline/first"]
    assert twice.body["annotations"] == WEB_ON
    names = [e.name for e in project.entities]
    assert names.index("pipeline/both") < names.index("pipeline/twice")


def test_trigger_without_feed_keeps_inputs_as_parameters_and_rule_is_namespace_level() -> None:
    project = load("10_trigger_rule.yaml")

    assert entity(project, Collection.TRIGGERS, "bell").body == {
        "publish": False, "parameters": [{"key": "name", "value": "door"}],
        "annotations": [{"key": "description", "value": "someone rang"}]}
    assert entity(project, Collection.RULES, "ring").body == {
        "trigger": "/guest/bell", "action": "/guest/handle", "publish": False, "annotations": []}


def test_trigger_with_feed_sends_inputs_to_the_feed_not_the_trigger() -> None:
    project = load("11_feed_alarm.yaml")

    trigger = entity(project, Collection.TRIGGERS, "every-night")
    assert trigger.body == {"publish": False, "parameters": [],
                            "annotations": [{"key": "feed", "value": "/whisk.system/alarms/alarm"}]}
    assert trigger.feed == FeedSpec("/whisk.system/alarms/alarm", {"cron": "0 2 * * *",
                                                                   "trigger_payload": {"name": "night"}})
    assert trigger.feed.invoke_path == "/namespaces/whisk.system/actions/alarms/alarm"
    assert entity(project, Collection.RULES, "run-report").body["action"] == "/guest/nightly/report"


def test_dependencies_become_bindings_and_feeds_can_name_them() -> None:
    project = load("12_dependencies.yaml")

    assert entity(project, Collection.PACKAGES, "my-alarms").body == {
        "publish": False, "binding": {"namespace": "whisk.system", "name": "alarms"},
        "parameters": [{"key": "note", "value": "bound"}], "annotations": []}
    assert entity(project, Collection.TRIGGERS, "every-minute").feed == FeedSpec(
        "/guest/my-alarms/alarm", {"cron": "* * * * *"})


def test_environment_substitution_in_names_and_values() -> None:
    env = {"ENV_STAGE": "dev", "ENV_GREETING": "hi", "ENV_PORT": "8080"}

    project = load("13_env_vars.yaml", env=env)

    action = entity(project, Collection.ACTIONS, "env-dev/hello-dev")
    assert action.body["parameters"] == [
        {"key": "bare", "value": "hi"}, {"key": "braced", "value": "hi-x"}, {"key": "literal", "value": "${ENV_GREETING}"},
        {"key": "missing", "value": ""}, {"key": "port", "value": 8080}]


def test_named_project_is_managed_and_every_entity_carries_the_annotation() -> None:
    project = load("14_managed_project.yaml")

    assert project.managed is True and project.name == "managed-demo"
    tags = [next(a["value"] for a in e.body["annotations"] if a["key"] == "whisk-managed") for e in project.entities]
    assert len(tags) == 5
    assert {t["projectName"] for t in tags} == {"managed-demo"}
    assert {t["file"] for t in tags} == {project.file}
    assert project.file.endswith("tests/fixtures/manifests/14_managed_project.yaml")
    assert all(len(t["projectHash"]) == 40 and t["projectDeps"] == [] for t in tags)


def test_docker_and_native_actions_are_blackbox() -> None:
    project = load("15_docker.yaml")

    assert entity(project, Collection.ACTIONS, "boxes/custom").body["exec"] == {
        "kind": "blackbox", "image": "example/custom-action:1.0", "binary": False}
    assert entity(project, Collection.ACTIONS, "boxes/skeleton").body["exec"] == {
        "kind": "blackbox", "image": "openwhisk/dockerskeleton", "binary": False, "code": HELLO_PY}


def test_function_directory_is_zipped_and_stable() -> None:
    first = entity(load("16_function_dir.yaml"), Collection.ACTIONS, "zipped/from-dir")
    again = entity(load("16_function_dir.yaml"), Collection.ACTIONS, "zipped/from-dir")

    assert first.body["exec"]["kind"] == "python:3.11" and first.body["exec"]["binary"] is True
    assert first.body["exec"]["code"] == again.body["exec"]["code"]
    archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(first.body["exec"]["code"])))
    assert archive.namelist() == ["__main__.py"]


def test_precedence_cli_over_deployment_over_manifest() -> None:
    project = load("17_overlay.yaml", deployment=FIXTURES / "17_overlay.deployment.yaml",
                   params={"place": "cli-place", "visits": "9"})

    assert entity(project, Collection.PACKAGES, "hello_world_package").body["parameters"] == [
        {"key": "site", "value": "deployment-site"}]
    assert entity(project, Collection.ACTIONS, "hello_world_package/meet").body["parameters"] == [
        {"key": "name", "value": "Bernie"}, {"key": "place", "value": "cli-place"}, {"key": "visits", "value": 9}]
    assert entity(project, Collection.TRIGGERS, "meeting").body["parameters"] == [
        {"key": "room", "value": "deployment-room"}]


def test_deployment_value_is_converted_to_the_declared_type() -> None:
    project = load("17_overlay.yaml", deployment=FIXTURES / "17_overlay.deployment.yaml")

    params = entity(project, Collection.ACTIONS, "hello_world_package/meet").body["parameters"]
    assert {"key": "visits", "value": 7} in params


def test_public_package_publishes_and_ignores_version_and_license() -> None:
    project = load("18_public_package.yaml")

    assert entity(project, Collection.PACKAGES, "shared").body == {
        "publish": True, "parameters": [{"key": "color", "value": "blue"}], "annotations": []}


def test_unused_cli_param_is_a_warning() -> None:
    project = load("01_function_file.yaml", params={"nope": "1"})

    assert project.warnings == ("--param:1:1 nope: no input of that name in the manifest",)


def test_unsupported_but_harmless_keys_are_warnings(tmp_path: Path) -> None:
    (tmp_path / "hello.py").write_text(HELLO_PY)
    (tmp_path / "m.yaml").write_text("packages:\n  p:\n    actions:\n      a:\n        function: hello.py\n"
                                     "        limits: {concurrentActivations: 5}\n")

    project = load_project(tmp_path / "m.yaml", env={})

    where = f"{(tmp_path / 'm.yaml').as_posix()}:6:18 packages.p.actions.a.limits.concurrentActivations:"
    assert project.warnings == (f"{where} limits.concurrentActivations is not supported by OpenWhisk and is ignored",)


def test_keys_the_hub_cannot_honour_are_warned_about(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("project:\n  name: x\n  apiHost: https://elsewhere\n  packages:\n    p:\n"
                                     "      actions:\n        a: {code: 'x = 1', runtime: python, credential: k}\n"
                                     "      triggers:\n        t: {}\n      rules:\n"
                                     "        r: {trigger: t, action: a, rule: '.*'}\n")

    project = load_project(tmp_path / "m.yaml", env={})

    file = (tmp_path / "m.yaml").as_posix()
    who = ("the hub and the identity come from --apihost/--auth (or ~/.wskprops); a manifest cannot switch them, so "
           "this is ignored")
    assert project.warnings == (
        f"{file}:3:3 project.apiHost: 'apiHost' is not supported: {who}",
        f"{file}:7:45 project.packages.p.actions.a.credential: 'credential' is not supported: {who}",
        f"{file}:11:36 project.packages.p.rules.r.rule: 'rule' is not supported: wskdeploy's 'rule' pattern is "
        f"ignored; give the rule a 'filter:' (an event pattern) to match only some events")


def test_include_copies_files_folders_and_globs_into_the_zip_and_exclude_drops_paths(tmp_path: Path) -> None:
    for name, text in {"app/__main__.py": "import lib.util\n", "app/notes.md": "x", "shared/util.py": "u = 1\n",
                       "shared/deep/more.py": "m = 1\n", "conf/a.json": "{}", "conf/b.json": "{}",
                       "conf/c.txt": "no"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    (tmp_path / "m.yaml").write_text(
        "packages:\n  p:\n    actions:\n      a:\n        function: app.zip\n        runtime: python:3.11\n"
        "        include:\n          - [shared, lib]\n          - [conf/*.json, settings]\n"
        "        exclude: ['*.md']\n")

    action = entity(load_project(tmp_path / "m.yaml", env={}), Collection.ACTIONS, "p/a")

    archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(action.body["exec"]["code"])))
    assert (action.body["exec"]["kind"], action.body["exec"]["binary"]) == ("python:3.11", True)
    assert archive.namelist() == ["__main__.py", "lib/deep/more.py", "lib/util.py", "settings/a.json",
                                  "settings/b.json"]


def test_rule_retry_and_dead_letter_go_to_the_hub_and_bad_ones_point_at_their_line(tmp_path: Path) -> None:
    from triggerhub.errors import ManifestError
    from triggerhub.rules.match import compile_routing

    good = tmp_path / "good.yaml"
    good.write_text(
        "packages:\n  p:\n    actions:\n      a:\n        function: a.py\n        runtime: python:3.11\n"
        "    triggers:\n      t: {}\n      alerts: {}\n    rules:\n"
        "      r:\n        trigger: t\n        action: a\n"
        "        retry: {maxAttempts: 5, initialDelayMs: 100, on: [timeout]}\n"
        "        deadLetter: {trigger: alerts}\n")
    (tmp_path / "a.py").write_text("def main(args):\n    return args\n")
    rule = entity(load_project(good, env={}, check_routing=compile_routing), Collection.RULES, "r")
    assert rule.body["retry"] == {"maxAttempts": 5, "initialDelayMs": 100, "on": ["timeout"]}
    assert rule.body["deadLetter"] == {"trigger": "alerts"}

    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().replace("maxAttempts: 5", "maxAttempts: 0")
                   .replace("deadLetter: {trigger: alerts}", "deadLetter: {trigger: 5}"))
    with pytest.raises(ManifestError) as refused:
        load_project(bad, env={}, check_routing=compile_routing)
    assert [str(p) for p in refused.value.problems] == [
        f"{bad}:14:9 packages.p.rules.r.retry: retry.maxAttempts is 0; give a whole number from 1 to 100",
        f"{bad}:15:9 packages.p.rules.r.deadLetter: deadLetter must be an object "
        "{\"trigger\": \"/namespace/name\"}; got {'trigger': 5}",
    ]
