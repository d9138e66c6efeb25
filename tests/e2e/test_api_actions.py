"""Actions through the REST API: CRUD, invoke, and the reference's status codes and messages."""

from __future__ import annotations

import re

from tests.plugins.hub import NOOP_JS, put_action
from tests.plugins.waiting import wait_record

PY_ECHO = "def main(args):\n    return args\n"
PY_FAIL = "def main(args):\n    raise ValueError('boom')\n"
JS_THROW = "function main() { throw new Error('bad'); }"
PY_SLEEP = "import time\ndef main(args):\n    time.sleep(args.get('s', 1))\n    return {'slept': args.get('s', 1)}\n"


async def test_create_get_list_update_delete(hub):
    created = await put_action(hub, "a1", parameters=[{"key": "x", "value": 1}])
    assert created["version"] == "0.0.1"
    assert created["namespace"] == "guest" and created["name"] == "a1"
    assert created["exec"] == {"kind": "nodejs:20", "code": NOOP_JS, "binary": False}
    assert created["annotations"] == [{"key": "exec", "value": "nodejs:20"}, {"key": "provide-api-key", "value": False}]
    assert created["limits"] == {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}

    status, body = await hub.call("PUT", "namespaces/_/actions/a1", {"exec": {"kind": "nodejs:default", "code": NOOP_JS}})
    assert (status, body["error"]) == (409, "resource already exists")

    status, updated = await hub.call("PUT", "namespaces/_/actions/a1", {"limits": {"timeout": 1000}}, overwrite=True)
    assert status == 200
    assert updated["version"] == "0.0.2"
    assert updated["parameters"] == [{"key": "x", "value": 1}]  # kept: not sent
    assert updated["limits"]["timeout"] == 1000

    status, without_code = await hub.call("GET", "namespaces/_/actions/a1", code=False)
    assert status == 200 and "code" not in without_code["exec"]

    status, listing = await hub.call("GET", "namespaces/_/actions")
    assert status == 200
    assert [item["name"] for item in listing] == ["a1"]
    assert set(listing[0]) == {"namespace", "name", "version", "publish", "annotations", "updated", "limits", "exec"}
    assert listing[0]["exec"] == {"binary": False}
    status, count = await hub.call("GET", "namespaces/_/actions", count=True)
    assert (status, count) == (200, {"actions": 1})

    status, deleted = await hub.call("DELETE", "namespaces/_/actions/a1")
    assert status == 200 and deleted["name"] == "a1"
    status, body = await hub.call("GET", "namespaces/_/actions/a1")
    assert (status, body["error"]) == (404, "The requested resource does not exist.")
    assert re.fullmatch(r"[0-9a-f]{32}", body["code"])


async def test_bad_input_gets_reference_errors(hub):
    status, body = await hub.call("PUT", "namespaces/_/actions/bad", raw=b"{not json")
    assert status == 400 and body["error"].startswith("The request content was malformed:")
    status, body = await hub.call("PUT", "namespaces/_/actions/bad", {"exec": {"kind": "cobol:1", "code": "x"}})
    assert status == 400
    assert body["error"].startswith("The specified runtime 'cobol:1' is not supported by this platform. Valid values are: ")
    status, body = await hub.call("PUT", "namespaces/_/actions/bad", {})
    assert (status, body["error"]) == (400, "exec undefined")
    status, body = await hub.call("PUT", "namespaces/_/actions/-bad-", {"exec": {"kind": "nodejs:default", "code": NOOP_JS}})
    assert (status, body["error"]) == (400, "The name of the entity contains illegal characters.")
    status, body = await hub.call("PUT", "namespaces/_/actions/lim", {"exec": {"kind": "nodejs:default", "code": NOOP_JS},
                                                                     "limits": {"memory": 4096}})
    assert (status, body["error"]) == (400, "memory limit 4096 is not in the range of 128 to 512 MB.")
    await put_action(hub, "big")
    payload = {"blob": "x" * (1024 * 1024 + 10)}
    status, body = await hub.call("POST", "namespaces/_/actions/big", payload)
    assert status == 413 and body["error"].startswith("Request larger than allowed: ")
    status, body = await hub.call("POST", "namespaces/_/actions/big", [1, 2])
    assert status == 400
    status, body = await hub.call("POST", "namespaces/_/actions/big", blocking=True, timeout=70000)
    assert (status, body["error"]) == (400, "Timeout must be number of milliseconds up to 60000.")


async def test_auth_failures(hub):
    status, body = await hub.call("GET", "namespaces/_/actions", auth="23bc46b1-71f6-4ed5-8c54-816aa4f8c502:wrong")
    assert (status, body["error"]) == (401, "The supplied authentication is invalid")
    async with hub.session.get(f"{hub.apihost}/api/v1/namespaces/_/actions") as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="OpenWhisk secure realm"'
        assert (await response.json())["error"] == "The resource requires authentication, which was not supplied with the request"


async def test_info_routes_and_headers(hub):
    async with hub.session.get(f"{hub.apihost}/api/v1", headers={"X-Request-ID": "abc123"}) as response:
        body = await response.json()
        assert body["api_version"] == "1.0.0" and body["api_version_path"] == "v1"
        assert response.headers["X-Request-ID"] == "abc123"
        assert response.headers["Access-Control-Allow-Origin"] == "*"
    async with hub.session.get(f"{hub.apihost}/ping") as response:
        assert await response.text() == "pong"
    async with hub.session.options(f"{hub.apihost}/api/v1/namespaces/_/actions/x") as response:
        assert response.status == 200
    status, body = await hub.call("GET", "namespaces")
    assert (status, body) == (200, ["guest"])


async def test_invoke_nonblocking_then_record(hub):
    await put_action(hub, "echo", PY_ECHO, "python:default", parameters=[{"key": "a", "value": 1}])
    status, body = await hub.call("POST", "namespaces/_/actions/echo", {"b": 2})
    assert status == 202 and re.fullmatch(r"[0-9a-f]{32}", body["activationId"])
    record = await wait_record(hub, body["activationId"])
    assert record["response"]["result"] == {"a": 1, "b": 2}
    status, result = await hub.call("GET", f"namespaces/_/activations/{body['activationId']}/result")
    assert (status, result) == (200, {"status": "success", "success": True, "result": {"a": 1, "b": 2}, "size": 13})


async def test_blocking_errors_map_to_502(hub):
    await put_action(hub, "pyfail", PY_FAIL, "python:default")
    status, body = await hub.call("POST", "namespaces/_/actions/pyfail", blocking=True)
    assert status == 502
    assert body["response"]["status"] == "application error"
    assert body["response"]["result"] == {"error": "boom"}
    await put_action(hub, "jsthrow", JS_THROW)
    status, body = await hub.call("POST", "namespaces/_/actions/jsthrow", blocking=True, result=True)
    assert status == 502
    assert body["error"].startswith("An error has occurred: ")


async def test_blocking_wait_expires_202_then_completes(hub):
    await put_action(hub, "slow", PY_SLEEP, "python:default")
    status, body = await hub.call("POST", "namespaces/_/actions/slow", {"s": 1.5}, blocking=True, timeout=200)
    assert status == 202
    record = await wait_record(hub, body["activationId"])
    assert record["response"]["result"] == {"slept": 1.5}


async def test_final_parameters_cannot_be_overridden(hub):
    await put_action(hub, "fixed", PY_ECHO, "python:default", parameters=[{"key": "k", "value": "v"}],
                     annotations=[{"key": "final", "value": True}])
    status, body = await hub.call("POST", "namespaces/_/actions/fixed", {"k": "other"}, blocking=True)
    assert (status, body["error"]) == (400, "Request defines parameters that are not allowed (e.g., reserved properties).")
    status, body = await hub.call("POST", "namespaces/_/actions/fixed", {"z": 1}, blocking=True, result=True)
    assert (status, body) == (200, {"k": "v", "z": 1})


async def test_logs_are_recorded(hub):
    code = "def main(args):\n    print('hello from python')\n    return {}\n"
    await put_action(hub, "logger", code, "python:default")
    status, record = await hub.call("POST", "namespaces/_/actions/logger", blocking=True)
    assert status == 200
    status, logs = await hub.call("GET", f"namespaces/_/activations/{record['activationId']}/logs")
    assert status == 200
    assert len(logs["logs"]) == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z\s+stdout: hello from python", logs["logs"][0])
