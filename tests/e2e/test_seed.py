"""The seed scenario through the REST API: create and invoke HelloAction in both languages."""

from __future__ import annotations

import re

JS_HELLO = "function main() { return {hello: 'world'}; }"
PY_HELLO = "def main(args):\n    return {'hello': 'world'}\n"


async def test_hello_action_nodejs_blocking_result(hub):
    status, body = await hub.call("PUT", "namespaces/_/actions/HelloAction", {"exec": {"kind": "nodejs:default", "code": JS_HELLO}})
    assert status == 200
    assert body["exec"]["kind"] == "nodejs:20"
    status, body = await hub.call("POST", "namespaces/_/actions/HelloAction", blocking=True, result=True)
    assert (status, body) == (200, {"hello": "world"})


async def test_hello_action_python_record_shape(hub):
    await hub.call("PUT", "namespaces/_/actions/HelloPy", {"exec": {"kind": "python:default", "code": PY_HELLO}})
    status, record = await hub.call("POST", "namespaces/_/actions/HelloPy", blocking=True)
    assert status == 200
    assert re.fullmatch(r"[0-9a-f]{32}", record["activationId"])
    status, stored = await hub.call("GET", f"namespaces/_/activations/{record['activationId']}")
    assert status == 200
    assert stored["response"] == {"status": "success", "success": True, "result": {"hello": "world"}, "size": 17}
    assert stored["namespace"] == "guest" and stored["name"] == "HelloPy" and stored["subject"] == "guest"
    assert stored["duration"] == stored["end"] - stored["start"]
    keys = [a["key"] for a in stored["annotations"]]
    assert keys[:5] == ["path", "kind", "limits", "timeout", "waitTime"]
    assert "initTime" in keys
    values = {a["key"]: a["value"] for a in stored["annotations"]}
    assert values["path"] == "guest/HelloPy" and values["kind"] == "python:3.11"
    assert values["limits"] == {"timeout": 60000, "memory": 256, "logs": 10, "concurrency": 1}
