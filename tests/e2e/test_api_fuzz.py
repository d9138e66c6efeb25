"""Property-based fuzzing of the whole HTTP API: schemathesis, driven by the hub's own OpenAPI
document (GET /api/v1/api-docs), against a running hub over real HTTP on 127.0.0.1 with guest
credentials. No 5xx (a blocking invoke's 502 for a failed action excepted: that is the documented
answer), no response breaking its documented status, content type or body schema, no dropped
connection (schemathesis counts a network error as a failure).

Bounded: a fixed seed, at most EXAMPLES cases per operation, one worker, about 30 s here; path
names are drawn mostly from entities seeded first, so the fuzzer reaches the handlers' logic
rather than 404s.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from tests.plugins.hub import HubClient, put_action
from triggerhub.api.api_docs import document

EXAMPLES = 30
DEADLINE_S = 240  # a hard stop far above the usual run, for a machine under heavy load
SEED = 20261205
ECHO = "def main(args):\n    return args\n"
PAGE = "def main(args):\n    return {'statusCode': 201, 'headers': {'X-A': 'b'}, 'body': 'hi'}\n"
WEB = [{"key": "web-export", "value": True}]
METHODS = {"get", "put", "post", "delete", "patch"}
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance,status_code_conformance"
INVOKE_OPERATIONS = ("POST /api/v1/namespaces/{namespace}/actions/{action}",
                     "POST /api/v1/namespaces/{namespace}/actions/{package}/{action}")


def fuzz_config(activation_id: str) -> str:
    overrides = "\n".join(f"""
[[operations]]
include-name = "{name}"
checks.not_a_server_error.expected-statuses = ["1xx", "2xx", "3xx", "4xx", 502]
""" for name in INVOKE_OPERATIONS)
    return f"""
[parameters]
"path.namespace" = "guest"
"path.action" = {{ dictionary = "actions", probability = 0.8 }}
"path.package" = {{ dictionary = "packages", probability = 0.8 }}
"path.name" = {{ dictionary = "names", probability = 0.8 }}
"path.trigger" = {{ dictionary = "triggers", probability = 0.9 }}
"path.id" = {{ dictionary = "activations", probability = 0.8 }}

[dictionaries]
actions = {{ values = ["echo", "page"] }}
packages = {{ values = ["default", "pkg"] }}
names = {{ values = ["t", "r", "pkg", "echo"] }}
triggers = {{ values = ["hook"] }}
activations = {{ values = ["{activation_id}"] }}
{overrides}"""


async def seed(hub: HubClient) -> str:
    """Entities for the fuzzer to hit; returns the id of one finished activation."""
    await put_action(hub, "echo", ECHO, "python:default", annotations=WEB)
    await put_action(hub, "page", PAGE, "python:default", annotations=WEB)
    assert (await hub.call("PUT", "namespaces/_/packages/pkg"))[0] == 200
    await put_action(hub, "pkg/echo", ECHO, "python:default", annotations=WEB)
    assert (await hub.call("PUT", "namespaces/_/triggers/t"))[0] == 200
    assert (await hub.call("PUT", "namespaces/_/rules/r", {"trigger": "t", "action": "echo"}))[0] == 200
    assert (await hub.call("PUT", "namespaces/_/triggers/hook"))[0] == 200
    status, body = await hub.call("POST", "namespaces/whisk.system/actions/webhook/webhook", {
        "lifecycleEvent": "CREATE", "triggerName": "/_/hook", "authKey": hub.auth, "verify": "none"}, blocking=True)
    assert status == 200, body
    status, body = await hub.call("POST", "namespaces/_/actions/echo", {"a": 1}, blocking=True)
    assert status == 200, body
    return str(body["activationId"])


async def test_schemathesis_finds_no_server_error_schema_break_or_dropped_connection(
        embedded_hub: HubClient, tmp_path: Path) -> None:
    hub = embedded_hub
    config = tmp_path / "schemathesis.toml"
    config.write_text(fuzz_config(await seed(hub)))
    command = [str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(config), "run",
               f"{hub.apihost}/api/v1/api-docs", "--checks", CHECKS, "--max-examples", str(EXAMPLES),
               "--seed", str(SEED), "--workers", "1", "--auth", hub.auth, "--request-timeout", "30",
               "--phases", "examples,coverage,fuzzing", "--no-shrink", "--output-truncate", "false",
               "--max-failures", "5",
               # The dashboard's event stream never ends by design: a fuzzer would only time out on it.
               "--exclude-path", "/api/v1/namespaces/{namespace}/dashboard/stream"]
    process = await asyncio.create_subprocess_exec(
        *command, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""})
    try:
        async with asyncio.timeout(DEADLINE_S):
            output, _ = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"schemathesis ran past its {DEADLINE_S} s deadline (it takes about 30 s on an idle machine)")
    text = output.decode(errors="replace").replace(hub.auth, "<guest key>")
    assert process.returncode == 0, text[-12000:]
    summary = re.search(r"(\d+) generated, (\d+) passed", text)
    assert summary is not None, text[-4000:]
    generated, passed = (int(n) for n in summary.groups())
    assert generated == passed and generated >= 1000, text[-4000:]
    operations = sum(1 for item in document()["paths"].values() for key in item if key in METHODS)
    counts = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", text)
    assert counts is not None, text[-4000:]
    selected, total, tested = (int(n) for n in counts.groups())
    # every operation but GET /api/v1/api-docs, which schemathesis leaves out as the schema itself,
    # and the excluded dashboard stream
    assert (total, selected, tested) == (operations - 1, operations - 2, operations - 2), text[-4000:]


async def test_the_openapi_document_is_served_without_credentials(embedded_hub: HubClient) -> None:
    async with embedded_hub.session.get(f"{embedded_hub.apihost}/api/v1/api-docs") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/json")
        served = await response.json()
    assert served == document()
    assert served["openapi"] == "3.1.0" and "/api/v1/namespaces/{namespace}/actions/{action}" in served["paths"]
