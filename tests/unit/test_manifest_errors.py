"""Manifest validation errors: exact messages with file, line, column and YAML path, all at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.plugins.manifests import FIXTURES
from triggerhub.errors import ManifestError
from triggerhub.manifests.loader import load_project

ACTION_KEYS = ("annotations, code, conductor, credential, description, docker, exclude, function, include, inputs, "
               "kind, limits, location, main, namespace, native, outputs, runtime, version, web, web-export")


def problems(tmp_path: Path, manifest: str, deployment: str | None = None,
             params: dict[str, str] | None = None, strict: bool = False) -> list[str]:
    """Every problem as `line:column path: message` (the file is checked separately)."""
    (tmp_path / "hello.py").write_text("def main(args):\n    return args\n")
    path = tmp_path / "manifest.yaml"
    path.write_text(textwrap.dedent(manifest))
    overlay = None
    if deployment is not None:
        overlay = tmp_path / "deployment.yaml"
        overlay.write_text(textwrap.dedent(deployment))
    with pytest.raises(ManifestError) as caught:
        load_project(path, deployment=overlay, params=params, env={}, strict=strict)
    return [f"{p.line}:{p.column} {p.path}: {p.message}" for p in caught.value.problems]


def test_problem_names_the_file_as_given(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("packages:\n  p:\n    actions:\n      a: {functon: x.py}\n")

    with pytest.raises(ManifestError) as caught:
        load_project(tmp_path / "m.yaml", env={})

    assert str(caught.value) == (f"{(tmp_path / 'm.yaml').as_posix()}:4:11 packages.p.actions.a.functon: "
                                 f"unknown key 'functon'; allowed: {ACTION_KEYS}")


def test_bad_yaml_reports_the_parser_position(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        packages:
          p:
            actions:
              a:
                function: hello.py
                inputs: [unclosed
        """) == ["7:1 <root>: invalid YAML: expected ',' or ']', but got '<stream end>'"]


def test_duplicate_key_is_bad_yaml(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        packages:
          p:
            actions:
              a:
                function: hello.py
              a:
                function: hello.py
        """) == ["6:7 <root>: invalid YAML: duplicate key 'a'; each key may appear only once in a mapping"]


def test_unknown_key_lists_the_allowed_keys(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        packages:
          p:
            actions:
              a:
                functon: hello.py
        """) == [f"5:9 packages.p.actions.a.functon: unknown key 'functon'; allowed: {ACTION_KEYS}"]


def test_unknown_top_level_key(tmp_path: Path) -> None:
    assert problems(tmp_path, "package:\n  p: {}\n") == [
        "1:1 package: unknown key 'package'; allowed: packages, project",
        "1:1 <root>: the manifest declares no packages; add 'packages:' or 'project: packages:' (or 'project: "
        "name:' with --managed to delete everything a project owns)"]


def test_missing_required_field(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        packages:
          p:
            actions:
              a:
                function: hello.py
            triggers:
              t: {}
            rules:
              r:
                trigger: t
        """) == ["9:7 packages.p.rules.r: missing required key 'action'"]


def test_action_without_code(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        packages:
          p:
            actions:
              a:
                main: run
        """) == ["4:7 packages.p.actions.a: an action needs 'function' (a file, folder or .zip), inline 'code' "
                 "with 'runtime', or a 'docker' image"]


def test_rule_naming_a_missing_action(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        packages:
          iot:
            actions:
              notify:
                function: hello.py
              store:
                function: hello.py
            triggers:
              temp:
            rules:
              alert:
                trigger: temp
                action: notfy
        """) == ["13:9 packages.iot.rules.alert.action: unknown action 'notfy'; known: notify, store"]


def test_rule_naming_a_missing_trigger(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        packages:
          p:
            actions:
              a: {function: hello.py}
            triggers:
              t:
            rules:
              r: {trigger: nope, action: a}
        """) == ["8:11 packages.p.rules.r.trigger: unknown trigger 'nope'; known: t"]


def test_sequence_naming_itself(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        packages:
          p:
            actions:
              a:
                function: hello.py
            sequences:
              loop:
                actions: a, loop
        """) == ["8:9 packages.p.sequences.loop.actions: sequence 'loop' names itself; a sequence may not refer "
                 "to itself"]


def test_sequences_in_a_cycle(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        packages:
          p:
            sequences:
              one:
                actions: two
              two:
                actions: one
        """) == ["4:7 packages.p.sequences.one: sequences form a cycle: one -> two -> one"]


def test_wrong_parameter_type(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        packages:
          p:
            actions:
              a:
                function: hello.py
                inputs:
                  threshold:
                    type: integer
                    value: warm
                  mode:
                    type: colour
        """, strict=True) == [
        "7:11 packages.p.actions.a.inputs.threshold: expected integer, got string 'warm'; the value is passed on "
        "unchanged (wskdeploy does not check types)",
        "10:11 packages.p.actions.a.inputs.mode: unknown parameter type string 'colour'; allowed: "
        "string, integer, float, boolean, json, slice"]


def test_wrong_value_type_for_a_key(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        packages:
          p:
            public: sometimes
            actions:
              a:
                function: hello.py
                limits:
                  timeout: soon
        """) == ["3:5 packages.p.public: expected a boolean (true or false), got string 'sometimes'",
                 "8:11 packages.p.actions.a.limits.timeout: expected an integer, got string 'soon'"]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        packages:
          p:
            actions:
              a:
                function: hello.py
                web: maybe
              b:
                code: x = 1
              d:
                function: hello.py
                runtime: cobol
              e:
                function: hello.py
                limits: {memorySize: 4096}
                annotations: {require-whisk-auth: 0}
            triggers:
              t:
                feed: alarm
            rules:
              r:
                trigger: nope
                action: a
        """, strict=True) == [
        "6:9 packages.p.actions.a.web: string 'maybe' is not allowed; allowed: true, false, yes, no, raw",
        "8:9 packages.p.actions.b.code: inline 'code' needs 'runtime', one this hub runs: nodejs:20, python:3.11",
        "11:9 packages.p.actions.d.runtime: runtime 'cobol' is not one this hub runs (it runs: nodejs:20, "
        "python:3.11); using python:3.11, the default for '.py' files",
        "14:18 packages.p.actions.e.limits.memorySize: 4096 is out of range; allowed: 128..512",
        "15:23 packages.p.actions.e.annotations.require-whisk-auth: '0' is not allowed; use true, false, a "
        "non-empty string or an integer 1..9007199254740991",
        "18:9 packages.p.triggers.t.feed: feed 'alarm' is not a feed action name; use /namespace/package/feed "
        "(e.g. /whisk.system/alarms/alarm) or <dependency>/<feed>",
        "21:9 packages.p.rules.r.trigger: unknown trigger 'nope'; known: t",
    ]


def test_missing_function_file(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        packages:
          p:
            actions:
              a: {function: src/missing.py}
        """) == [f"4:11 packages.p.actions.a.function: file 'src/missing.py' does not exist in {tmp_path}; "
                 f"'function' is relative to the manifest's folder"]


def test_invalid_entity_name(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        packages:
          p:
            actions:
              "bad/name": {function: hello.py}
        """) == ["4:7 packages.p.actions.bad/name: 'bad/name' is not a valid name; use letters, digits, '_', '@', "
                 "'.', '&', '-' and inner spaces, at most 256 characters"]


def test_remote_dependency_is_refused(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        packages:
          p:
            dependencies:
              hello:
                location: github.com/apache/openwhisk-test/packages/helloworlds
        """) == ["5:9 packages.p.dependencies.hello.location: dependency location 'github.com/apache/openwhisk-test/"
                 "packages/helloworlds' is not supported; use a package path /namespace/package (remote manifests "
                 "are not fetched)"]


def test_deployment_naming_unknown_entities_and_bad_types_under_strict(tmp_path: Path) -> None:
    found = problems(tmp_path, """\
        packages:
          p:
            actions:
              a:
                function: hello.py
                inputs:
                  count: integer
        """, deployment="""\
        packages:
          p:
            actions:
              a:
                inputs:
                  count: many
              b:
                inputs: {x: 1}
          q: {}
        """, strict=True)

    assert found == [
        "6:11 packages.p.actions.a.inputs.count: expected integer, got string 'many'; the value is passed on "
        "unchanged (wskdeploy does not check types)",
        "7:7 packages.p.actions.b: action 'b' is not in package 'p' of the manifest, its inputs are ignored; "
        "known: a",
        "9:3 packages.q: package 'q' is not in the manifest, its inputs are ignored; known: p"]


def test_cli_param_of_the_wrong_type_under_strict(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        packages:
          p:
            actions:
              a:
                function: hello.py
                inputs:
                  count: integer
        """, params={"count": "lots"}, strict=True) == [
        "1:1 count: expected integer, got string 'lots'; the value is passed on unchanged (wskdeploy does not "
        "check types)"]


def test_cobol_file_extension_cannot_be_inferred(tmp_path: Path) -> None:
    (tmp_path / "job.cbl").write_text("IDENTIFICATION DIVISION.\n")

    assert problems(tmp_path, """\
        packages:
          p:
            actions:
              a: {function: job.cbl}
        """) == ["4:11 packages.p.actions.a.function: cannot infer the runtime from extension '.cbl'; set 'runtime' "
                 "to one this hub runs: nodejs:20, python:3.11"]


def test_fixture_manifests_are_all_valid() -> None:
    names = sorted(p.name for p in FIXTURES.glob("*.yaml") if "deployment" not in p.name)
    env = {"ENV_STAGE": "dev", "ENV_GREETING": "hi", "ENV_PORT": "8080"}

    loaded = [load_project(FIXTURES / name, env=env) for name in names]

    assert len(loaded) == 24


def test_include_and_location_problems_point_at_their_keys(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        packages:
          p:
            actions:
              a:
                function: hello.py
                runtime: python:3.11
                include: [[lib/missing.js]]
              b:
                location: hello.py
                function: other.py
              c:
                location: gone.py
              d:
                function: hello.py
                include: [[]]
        """) == [
        f"7:9 packages.p.actions.a.include: include 'lib/missing.js' matches nothing in {tmp_path}; include paths "
        f"are relative to the manifest's folder",
        "9:9 packages.p.actions.b.location: 'location: hello.py' and 'function: other.py' disagree; keep 'function' "
        "('location' is its deprecated alias)",
        f"12:9 packages.p.actions.c.location: file 'gone.py' does not exist in {tmp_path}; 'function' is relative "
        f"to the manifest's folder",
        "15:9 packages.p.actions.d.include: include[0] must be [source] or [source, destination], e.g. "
        "[actions/common/utils.js, lib/utils.js]"]


def test_require_whisk_auth_is_checked_on_sequences_too(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        packages:
          p:
            actions:
              a: {function: hello.py}
            sequences:
              s:
                actions: a, a
                web: true
                annotations:
                  require-whisk-auth: ""
        """) == ["10:11 packages.p.sequences.s.annotations.require-whisk-auth: '' is not allowed; use true, false, a "
                 "non-empty string or an integer 1..9007199254740991"]


def test_api_entries_with_bad_methods_unknown_actions_and_duplicates(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
        packages:
          p:
            actions:
              a: {function: hello.py, web: true}
            apis:
              shop:
                books:
                  "{id}":
                    a: {method: FETCH}
                    nope: GET
                  list:
                    a: {method: get, response: xml}
          q:
            apis:
              again:
                /books/:
                  /{id}:
                    p/a: GET
                  also:
                    p/a: GET
              twice:
                books:
                  also:
                    p/a: get
        """) == [
        "9:13 packages.p.apis.shop.books.{id}.a: string 'FETCH' is not an HTTP method; use one of GET, POST, PUT, "
        "DELETE, PATCH, HEAD, OPTIONS (as 'method: GET')",
        "10:13 packages.p.apis.shop.books.{id}.nope: unknown action 'nope'; known: a",
        "12:13 packages.p.apis.shop.books.list.a: string 'xml' is not a response type; use one of http, json, text, "
        "html, svg",
        f"24:13 packages.q.apis.twice.books.also.p/a: route GET /books/also is declared twice; also at "
        f"{(tmp_path / 'manifest.yaml').as_posix()}:20:13"]
