"""What wskdeploy tolerates, deployed against a real hub: ignored overlay inputs, retired runtimes,
mistyped defaults, `location:`, `include:`, empty managed projects, and `--strict` refusing each.

Every test counts what the namespace holds before, after deploy and after undeploy.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.plugins.hub import HubClient
from tests.plugins.manifests import FIXTURES
from triggerhub import errors
from triggerhub.errors import ManifestError
from triggerhub.manifests.client import HttpWhiskClient
from triggerhub.manifests.commands import deploy as deploy_command
from triggerhub.manifests.commands import validate as validate_command
from triggerhub.manifests.deployer import deploy_manifest, undeploy_manifest
from triggerhub.manifests.loader import display_name

INVALID = FIXTURES / "invalid"  # manifests that must be refused (not loaded by the all-valid fixture tests)
KINDS = ("packages", "actions", "triggers", "rules")
NOTHING = {kind: 0 for kind in KINDS}


@pytest.fixture
async def client(hub: HubClient) -> AsyncIterator[HttpWhiskClient]:
    async with HttpWhiskClient(hub.apihost, hub.auth) as whisk:
        yield whisk


async def counts(hub: HubClient) -> dict[str, int]:
    """How many of each entity the guest namespace holds (actions inside packages included)."""
    out = {}
    for kind in KINDS:
        status, items = await hub.call("GET", f"namespaces/_/{kind}", limit=200)
        assert status == 200, items
        out[kind] = len(items)
    return out


async def invoke(hub: HubClient, action: str, **args: Any) -> Any:
    status, result = await hub.call("POST", f"namespaces/_/actions/{action}", args, blocking=True, result=True)
    assert status == 200, result
    return result


def as_map(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["key"]: item["value"] for item in items}


def strict_problems(name: str, deployment: Path | None = None) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        from triggerhub.manifests.deployer import validate_manifest

        validate_manifest(FIXTURES / name, deployment=deployment, env={}, strict=True)
    return [f"{p.line}:{p.column} {p.message}" for p in caught.value.problems]


async def test_deployment_inputs_for_undeclared_entities_are_ignored(hub: HubClient, client: HttpWhiskClient) -> None:
    overlay = FIXTURES / "20_overlay_unknown.deployment.yaml"
    assert await counts(hub) == NOTHING

    outcome = await deploy_manifest(client, FIXTURES / "20_overlay_unknown.yaml", deployment=overlay)

    assert [w.split(" ", 1)[1] for w in outcome.project.warnings] == [
        "packages.greetings.actions.goodbye: action 'goodbye' is not in package 'greetings' of the manifest, "
        "its inputs are ignored; known: hello",
        "packages.greetings.triggers.never-declared: trigger 'never-declared' is not in package 'greetings' of "
        "the manifest, its inputs are ignored; known: (none)",
        "packages.other-package: package 'other-package' is not in the manifest, its inputs are ignored; "
        "known: greetings"]
    assert await counts(hub) == {**NOTHING, "packages": 1, "actions": 1}
    assert await invoke(hub, "greetings/hello") == {"greeting": "Hello, Grace!"}

    await undeploy_manifest(client, FIXTURES / "20_overlay_unknown.yaml", deployment=overlay)

    assert await counts(hub) == NOTHING


async def test_strict_refuses_ignored_inputs_and_creates_nothing(hub: HubClient, client: HttpWhiskClient) -> None:
    with pytest.raises(ManifestError) as caught:
        await deploy_manifest(client, FIXTURES / "20_overlay_unknown.yaml",
                              deployment=FIXTURES / "20_overlay_unknown.deployment.yaml", strict=True)

    assert [(p.line, p.path) for p in caught.value.problems] == [
        (7, "packages.greetings.actions.goodbye"), (11, "packages.greetings.triggers.never-declared"),
        (14, "packages.other-package")]
    assert await counts(hub) == NOTHING


async def test_retired_runtimes_fall_back_to_the_default_for_the_extension(hub: HubClient,
                                                                           client: HttpWhiskClient) -> None:
    outcome = await deploy_manifest(client, FIXTURES / "21_retired_runtimes.yaml")

    assert len(outcome.project.warnings) == 7
    assert outcome.project.warnings[2].endswith(
        "packages.retired.actions.node-at-10.runtime: runtime 'nodejs@10' is not one this hub runs (it runs: "
        "nodejs:20, python:3.11); using nodejs:20, the default for '.js' files")
    assert await counts(hub) == {**NOTHING, "packages": 1, "actions": 7}
    kinds = {}
    for name in ("node8", "node10", "node-at-10", "py2", "py3", "swift-js", "go-py"):
        kinds[name] = (await hub.call("GET", f"namespaces/_/actions/retired/{name}"))[1]["exec"]["kind"]
    assert kinds == {"node8": "nodejs:20", "node10": "nodejs:20", "node-at-10": "nodejs:20", "py2": "python:3.11",
                     "py3": "python:3.11", "swift-js": "nodejs:20", "go-py": "python:3.11"}
    assert await invoke(hub, "retired/node10", name="Ada") == {"greeting": "Hello, Ada!"}
    assert await invoke(hub, "retired/go-py", name="Bo") == {"greeting": "Hello, Bo!"}

    await undeploy_manifest(client, FIXTURES / "21_retired_runtimes.yaml")

    assert await counts(hub) == NOTHING


async def test_strict_refuses_retired_runtimes(hub: HubClient, client: HttpWhiskClient) -> None:
    result = await asyncio.to_thread(lambda: CliRunner().invoke(deploy_command, [
        "-m", str(FIXTURES / "21_retired_runtimes.yaml"), "--strict", "--apihost", hub.apihost, "--auth", hub.auth]))

    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert len(lines) == 7 and lines[0].endswith(
        "packages.retired.actions.node8.runtime: runtime 'nodejs:8' is not one this hub runs (it runs: "
        "nodejs:20, python:3.11); using nodejs:20, the default for '.js' files")
    assert await counts(hub) == NOTHING


async def test_validate_and_deploy_agree_on_the_kinds_this_hub_runs(hub: HubClient) -> None:
    manifest = str(INVALID / "25_java_action.yaml")

    validated = await asyncio.to_thread(lambda: CliRunner().invoke(validate_command, ["-m", manifest]))
    deployed = await asyncio.to_thread(lambda: CliRunner().invoke(deploy_command, [
        "-m", manifest, "--apihost", hub.apihost, "--auth", hub.auth]))

    where = f"{display_name(INVALID / '25_java_action.yaml')}:7:9 packages.j.actions.hello.function:"
    assert validated.exit_code == deployed.exit_code == 1
    assert validated.output == deployed.output == (
        f"{where} '.java' files need the java runtime, which this hub does not run; it runs: nodejs:20, python:3.11 "
        f"(or a family: nodejs, python)\n")
    assert await counts(hub) == NOTHING


async def test_declared_types_are_coerced_with_warnings(hub: HubClient, client: HttpWhiskClient) -> None:
    outcome = await deploy_manifest(client, FIXTURES / "22_typed_defaults.yaml")

    assert [w.split(" ", 1)[1] for w in outcome.project.warnings] == [
        "packages.typed.actions.coerced.inputs.name: number 0 does not match 'type: string'; converted to \"0\"",
        "packages.typed.actions.coerced.inputs.flag: boolean true does not match 'type: string'; converted to "
        "\"true\"",
        "packages.typed.actions.coerced.inputs.count: number 3.0 does not match 'type: integer'; converted to 3"]
    action = (await hub.call("GET", "namespaces/_/actions/typed/coerced"))[1]
    assert as_map(action["parameters"]) == {"name": "0", "flag": "true", "count": 3, "ratio": 2.0}
    assert await invoke(hub, "typed/coerced") == {"greeting": "Hello, 0!"}
    assert strict_problems("22_typed_defaults.yaml") == [
        "8:11 number 0 does not match 'type: string'; converted to \"0\"",
        "11:11 boolean true does not match 'type: string'; converted to \"true\"",
        "14:11 number 3.0 does not match 'type: integer'; converted to 3"]

    await undeploy_manifest(client, FIXTURES / "22_typed_defaults.yaml")

    assert await counts(hub) == NOTHING


async def test_location_and_include_build_an_action_that_runs(hub: HubClient, client: HttpWhiskClient) -> None:
    outcome = await deploy_manifest(client, FIXTURES / "23_location_include.yaml")

    assert [w.split(" ", 1)[1] for w in outcome.project.warnings] == [
        "packages.bundled.actions.located.location: 'location' is deprecated; rename it to 'function'"]
    assert await counts(hub) == {**NOTHING, "packages": 1, "actions": 2}
    greeting = (await hub.call("GET", "namespaces/_/actions/bundled/greeting"))[1]
    archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(greeting["exec"]["code"])))
    assert archive.namelist() == ["actions/common/utils.js", "index.js", "package.json"]
    assert await invoke(hub, "bundled/greeting", name="Ada") == {"greeting": "Hello, Ada!", "helper": "common/utils"}
    assert await invoke(hub, "bundled/located", name="Lin") == {"greeting": "Hello, Lin!"}

    await undeploy_manifest(client, FIXTURES / "23_location_include.yaml")

    assert await counts(hub) == NOTHING


async def test_managed_project_without_packages_deletes_all_it_owns(hub: HubClient, client: HttpWhiskClient) -> None:
    await deploy_manifest(client, FIXTURES / "14_managed_project.yaml")
    await hub.call("PUT", "namespaces/_/actions/unmanaged", {"exec": {"kind": "python:3.11", "code": "x = 1"}})
    assert await counts(hub) == {"packages": 1, "actions": 3, "triggers": 1, "rules": 1}

    emptied = await deploy_manifest(client, FIXTURES / "24_managed_empty.yaml")

    assert emptied.applied == ("deleted rule poke-keep", "deleted trigger poke", "deleted action managed/drop",
                               "deleted action managed/keep", "deleted package managed")
    assert await counts(hub) == {**NOTHING, "actions": 1}
    assert (await hub.call("GET", "namespaces/_/actions/unmanaged"))[0] == 200


def test_require_whisk_auth_without_a_value_is_refused() -> None:
    manifest = INVALID / "26_require_whisk_auth_empty.yaml"

    result = CliRunner().invoke(validate_command, ["-m", str(manifest)])

    assert result.exit_code == 1
    assert result.output == (f"{display_name(manifest)}:9:11 packages.w.actions.a.annotations.require-whisk-auth: "
                             f"no value is not allowed; use true, false, a non-empty string or an integer "
                             f"1..9007199254740991\n")


async def gateway(hub: HubClient, method: str, path: str, **kwargs: Any) -> tuple[int, str, Any]:
    async with hub.session.request(method, f"{hub.apihost}/api/guest{path}", **kwargs) as response:
        body = await response.read()
        return response.status, response.content_type, body.decode()


async def route_keys(hub: HubClient) -> list[tuple[str, str, str]]:
    status, listed = await hub.call("GET", "web/whisk.system/apimgmt/getApi")
    assert status == 200, listed
    return [(doc["basePath"], rel, verb.upper()) for item in listed["apis"] for doc in [item["value"]["apidoc"]]
            for rel, operations in doc["paths"].items() for verb in operations]


async def test_manifest_apis_create_routes_that_answer_and_leave_with_the_project(
        hub: HubClient, client: HttpWhiskClient) -> None:
    assert (await counts(hub), await route_keys(hub)) == (NOTHING, [])

    outcome = await deploy_manifest(client, FIXTURES / "19_apis.yaml")

    assert [w.split(" ", 1)[1] for w in outcome.project.warnings] == [
        "project.packages.library.actions.shelf: 'shelf' is called by API 'books-api' but is not a web action; "
        "made it one (web: true), as wskdeploy does"]
    assert outcome.applied[-3:] == ("created route GET /books/{id} -> /guest/library/book",
                                    "created route POST /books/{id}/pages/{page} -> /guest/library/page",
                                    "created route PUT /books/shelf -> /guest/library/shelf")
    assert await counts(hub) == {**NOTHING, "packages": 1, "actions": 3}
    assert await route_keys(hub) == [("/books", "/shelf", "PUT"), ("/books", "/{id}", "GET"),
                                     ("/books", "/{id}/pages/{page}", "POST")]
    status, kind, body = await gateway(hub, "GET", "/books/42?shelf=top")
    assert (status, kind, json.loads(body)) == (200, "application/json", {"id": "42", "shelf": "top", "method": "get"})
    assert await gateway(hub, "POST", "/books/42/pages/7", json={}) == (201, "text/plain", "page 42/7")
    status, _, body = await gateway(hub, "PUT", "/books/shelf")
    assert (status, json.loads(body)) == (200, {"id": None, "shelf": "none", "method": "put"})
    assert (await deploy_manifest(client, FIXTURES / "19_apis.yaml", dry_run=True)).plan.empty

    gone = await undeploy_manifest(client, FIXTURES / "19_apis.yaml")

    assert gone.applied[:3] == ("deleted route PUT /books/shelf -> /guest/library/shelf",
                                "deleted route GET /books/{id} -> /guest/library/book",
                                "deleted route POST /books/{id}/pages/{page} -> /guest/library/page")
    assert (await counts(hub), await route_keys(hub)) == (NOTHING, [])
    assert (await gateway(hub, "GET", "/books/42"))[0] == 404


async def test_managed_deploy_drops_routes_the_manifest_no_longer_declares(tmp_path: Path, hub: HubClient,
                                                                           client: HttpWhiskClient) -> None:
    shutil.copytree(FIXTURES / "src", tmp_path / "src")
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text((FIXTURES / "19_apis.yaml").read_text())
    await deploy_manifest(client, manifest)
    manifest.write_text(manifest.read_text().replace("            shelf:\n              shelf: PUT\n", ""))

    again = await deploy_manifest(client, manifest)

    # no API calls `shelf` any more, so it is no longer made a web action
    assert again.applied == ("deleted route PUT /books/shelf -> /guest/library/shelf", "updated action library/shelf")
    assert [k[1] for k in await route_keys(hub)] == ["/{id}", "/{id}/pages/{page}"]
    await undeploy_manifest(client, manifest)
    assert (await counts(hub), await route_keys(hub)) == (NOTHING, [])


async def test_api_cli_creates_lists_gets_and_deletes_routes(hub: HubClient) -> None:
    from triggerhub.cli import main as cli

    await hub.call("PUT", "namespaces/_/actions/hello", {"exec": {"kind": "python:3.11", "code": (
        FIXTURES / "src" / "hello.py").read_text()}, "annotations": [{"key": "web-export", "value": True}]})

    def run(*args: str) -> Any:
        return CliRunner().invoke(cli, ["--apihost", hub.apihost, "--auth", hub.auth, "--json", "api", *args])

    created = await asyncio.to_thread(run, "create", "/greet", "/hello", "get", "hello", "--apiname", "greeter")
    listed = await asyncio.to_thread(run, "list")
    got = await asyncio.to_thread(run, "get", "greeter")
    status, _, body = await gateway(hub, "GET", "/greet/hello?name=Kim")
    deleted = await asyncio.to_thread(run, "delete", "/greet")

    assert created.exit_code == 0
    document = json.loads(created.output)  # under --json: the createApi answer, nothing else
    assert (document["gwApiUrl"], document["apidoc"]["basePath"]) == (f"{hub.apihost}/api/guest", "/greet")
    assert document["apidoc"]["paths"]["/hello"]["get"]["x-openwhisk"]["action"] == "hello"
    assert (listed.exit_code, json.loads(listed.output)) == (0, [{
        "action": "/guest/hello", "verb": "GET", "apiName": "greeter", "url": f"{hub.apihost}/api/guest/greet/hello"}])
    assert json.loads(got.output)["paths"]["/hello"]["get"]["x-openwhisk"]["action"] == "hello"
    assert (status, json.loads(body)) == (200, {"greeting": "Hello, Kim!"})
    assert (deleted.exit_code, json.loads(deleted.output)) == (
        0, {"ok": True, "basepath": "/greet", "relpath": None, "operation": None})
    plain = await asyncio.to_thread(CliRunner().invoke, cli, ["--apihost", hub.apihost, "--auth", hub.auth, "api",
                                                              "create", "/greet", "/hello", "get", "hello"])
    assert (plain.exit_code, plain.output) == (0, "ok: created API /greet/hello GET for action /guest/hello\n"
                                                  f"{hub.apihost}/api/guest/greet\n")
    await asyncio.to_thread(run, "delete", "/greet")
    assert await route_keys(hub) == []


async def test_a_refused_route_rolls_back_the_whole_deploy(tmp_path: Path, hub: HubClient,
                                                           client: HttpWhiskClient) -> None:
    shutil.copytree(FIXTURES / "src", tmp_path / "src")
    (tmp_path / "manifest.yaml").write_text(
        "packages:\n  shop:\n    actions:\n      book: {function: src/hello.py, web: true}\n    apis:\n"
        "      shop-api:\n        shop:\n          book: {book: GET}\n          echo: {/whisk.system/utils/echo: GET}\n")

    with pytest.raises(errors.BadRequest) as caught:
        await deploy_manifest(client, tmp_path / "manifest.yaml")

    assert caught.value.message == (
        "create route GET /shop/echo -> /whisk.system/utils/echo failed: action '/whisk.system/utils/echo' is not a "
        "web action; make it one with `wsk action update utils/echo --web true` (or 'web: true' in a manifest); "
        "nothing was changed (rolled back 3 step(s))")
    assert (await counts(hub), await route_keys(hub)) == (NOTHING, [])


async def test_deploy_and_validate_print_only_json_under_json(tmp_path: Path, hub: HubClient) -> None:
    from triggerhub.cli import main as cli

    shutil.copytree(FIXTURES / "src", tmp_path / "src")
    (tmp_path / "manifest.yaml").write_text("packages:\n  shop:\n    actions:\n      book: {function: src/hello.py}\n")

    def run(*args: str) -> Any:
        return CliRunner().invoke(cli, ["--apihost", hub.apihost, "--auth", hub.auth, *args], catch_exceptions=False)

    deployed = await asyncio.to_thread(run, "deploy", "-p", str(tmp_path), "--json")
    assert deployed.exit_code == 0, deployed.output
    assert json.loads(deployed.output) == {
        "plan": ["create  package  shop", "create  action   shop/book", "2 to create, 0 to update, 0 to delete, 0 unchanged"],
        "applied": ["created package shop", "created action shop/book"], "dryRun": False, "warnings": []}
    validated = await asyncio.to_thread(run, "--json", "validate", "-p", str(tmp_path))
    assert json.loads(validated.output) == {"file": str(tmp_path / "manifest.yaml"), "ok": True, "entities": 2,
                                            "routes": 0, "warnings": []}
    (tmp_path / "manifest.yaml").write_text("packages:\n  shop:\n    actions:\n      book: {function: src/nope.py}\n")
    broken = await asyncio.to_thread(run, "deploy", "-p", str(tmp_path), "--json")
    assert broken.exit_code == 1
    answer = json.loads(broken.stdout)
    assert answer["error"] == "the manifest has problems"
    assert len(answer["problems"]) == 1 and "src/nope.py" in answer["problems"][0]
