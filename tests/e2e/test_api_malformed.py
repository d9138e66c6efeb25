"""Careless and hostile input to a running hub (issue 10 items 3-7): webhook bodies of every size,
replays under new delivery ids, absurdly nested JSON, foreign Authorization schemes on public web
actions, out-of-range numbers and malformed fields. Each gets a precise 4xx, never a 500 or a
dropped connection, and nothing is stored for a refused request. Process runtime only: none of
this depends on where actions run."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json

from tests.plugins.hub import HubClient, put_action
from tests.plugins.waiting import wait_quiet

SECRET = "s3cret-for-tests"
ECHO = "def main(args):\n    return args\n"
WEB = [{"key": "web-export", "value": True}]
DEEP = b"[" * 100_000 + b"]" * 100_000
TOO_DEEP = "JSON nested deeper than 256 levels; send a flatter value"
NOT_HTTP = "Response is not valid 'message/http'."


async def webhook_trigger(hub: HubClient, name: str, **params: object) -> None:
    status, body = await hub.call("PUT", f"namespaces/_/triggers/{name}")
    assert status == 200, body
    status, body = await hub.call("POST", "namespaces/whisk.system/actions/webhook/webhook", {
        "lifecycleEvent": "CREATE", "triggerName": f"/_/{name}", "authKey": hub.auth, **params}, blocking=True)
    assert status == 200, body


async def deliver(hub: HubClient, trigger: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    data = io.BytesIO(body) if isinstance(body, bytes) else body  # large bodies without a warning
    async with hub.session.post(f"{hub.apihost}/hooks/guest/{trigger}", data=data, headers=headers) as response:
        answer = await response.json()
        if response.status >= 400:  # refusals are the API's errors: they carry the request id
            assert answer.pop("code") == response.headers["X-Request-ID"]
        return response.status, answer


def github_headers(body: bytes, delivery: str) -> dict[str, str]:
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": signature, "X-GitHub-Delivery": delivery, "X-GitHub-Event": "push",
            "Content-Type": "application/json"}


def json_of_size(size_bytes: int) -> bytes:
    head = b'{"pad": "'
    return head + b"x" * (size_bytes - len(head) - 2) + b'"}'


# ------------------------------------------------------------------------ item 3: webhook bodies


async def test_webhook_body_is_read_whole_up_to_the_feed_limit(embedded_hub: HubClient) -> None:
    hub = embedded_hub
    await webhook_trigger(hub, "push", verify="github", secret=SECRET)
    body = json_of_size(900 * 1024)  # arrives in many chunks: one read() returned only the first
    status, answer = await deliver(hub, "push", body, github_headers(body, "d-900k"))
    assert status == 202, answer
    assert answer == {"id": "webhook:/guest/push:sha256:" + hashlib.sha256(body).hexdigest()}

    too_big = json_of_size(1_048_577)
    status, answer = await deliver(hub, "push", too_big, github_headers(too_big, "d-big"))
    assert (status, answer) == (413, {"error": "webhook body of 1048577 bytes exceeds the limit of 1048576 bytes"})
    assert await hub.hub.engine.store.count_events("/guest/push") == 1


async def test_webhook_limit_above_one_megabyte_is_honoured(embedded_hub: HubClient) -> None:
    hub = embedded_hub
    await webhook_trigger(hub, "big", verify="github", secret=SECRET, maxBodyBytes=3_000_000)
    body = json_of_size(2_500_000)
    status, answer = await deliver(hub, "big", body, github_headers(body, "d-2500k"))
    assert status == 202, answer
    event = await hub.hub.engine.store.count_events("/guest/big")
    assert event == 1


async def test_chunked_webhook_body_past_the_limit_is_413(embedded_hub: HubClient) -> None:
    hub = embedded_hub
    await webhook_trigger(hub, "small", verify="none", maxBodyBytes=1000)

    async def chunks():  # no Content-Length: the limit is found while streaming
        for _ in range(20):
            yield b"y" * 100

    status, answer = await deliver(hub, "small", chunks(), {"Content-Type": "text/plain"})  # type: ignore[arg-type]
    assert (status, answer) == (413, {"error": "webhook body of more than 1000 bytes exceeds the limit of 1000 bytes"})
    assert await hub.hub.engine.store.count_events("/guest/small") == 0


# ------------------------------------------------------------------------ item 4: replay


async def test_github_replay_with_a_new_delivery_id_is_409_and_fires_once(embedded_hub: HubClient) -> None:
    hub = embedded_hub
    await put_action(hub, "echo", ECHO, "python:default")
    await webhook_trigger(hub, "push", verify="github", secret=SECRET)
    status, body = await hub.call("PUT", "namespaces/_/rules/on-push", {"trigger": "push", "action": "echo"})
    assert status == 200, body
    body = json.dumps({"ref": "refs/heads/main", "after": "abc"}).encode()
    key = "sha256:" + hashlib.sha256(body).hexdigest()
    assert (await deliver(hub, "push", body, github_headers(body, "d-1")))[0] == 202
    status, answer = await deliver(hub, "push", body, github_headers(body, "d-attacker-2"))
    assert (status, answer) == (409, {
        "error": f"delivery 'd-attacker-2' repeats the signed body of a delivery already accepted for trigger "
                 f"'/guest/push' ({key}); a replay is not fired again, whatever its delivery id"})
    async with asyncio.timeout(20):
        while not (await hub.call("GET", "namespaces/_/activations", name="echo"))[1]:
            await asyncio.sleep(0.05)
    # Quiescence: every accepted event dispatched, then no new activation for 1 s.
    store = hub.hub.engine.store

    async def observe() -> tuple[int, int]:
        _, listed = await hub.call("GET", "namespaces/_/activations", name="echo")
        return len(listed), len(await store.list_pending())

    assert await wait_quiet(observe, lambda seen: seen[1] == 0, quiet_s=1.0, timeout_s=20) == (1, 0)
    assert await store.count_events("/guest/push") == 1


# ------------------------------------------------------------------------ item 5: deep JSON


async def test_deeply_nested_json_is_400_everywhere(embedded_hub: HubClient) -> None:
    hub = embedded_hub
    await put_action(hub, "echo", ECHO, "python:default", annotations=WEB)
    status, body = await hub.call("PUT", "namespaces/_/actions/deep", raw=DEEP)
    assert (status, body["error"]) == (400, f"The request content was malformed:\n{TOO_DEEP}")
    status, body = await hub.call("POST", "namespaces/_/actions/echo", raw=DEEP, blocking=True)
    assert (status, body["error"]) == (400, f"The request content was malformed:\n{TOO_DEEP}")
    # 300 levels parse in Python but are still refused: deeper than anything stored or rendered
    status, body = await hub.call("PUT", "namespaces/_/triggers/t", raw=b'{"parameters": ' + b"[" * 300 + b"]" * 300 + b"}")
    assert (status, body["error"]) == (400, f"The request content was malformed:\n{TOO_DEEP}")

    async with hub.session.post(f"{hub.apihost}/api/v1/web/guest/default/echo.json", data=DEEP,
                                headers={"Content-Type": "application/json"}) as response:
        assert response.status == 400
        assert (await response.json())["error"] == f"The request content was malformed:\n{TOO_DEEP}"

    await webhook_trigger(hub, "hook", verify="none")
    status, answer = await deliver(hub, "hook", DEEP, {"Content-Type": "application/json"})
    assert (status, answer) == (400, {"error": f"webhook body is not valid JSON ({TOO_DEEP}); send "
                                               "application/json or change the Content-Type"})
    assert await hub.hub.engine.store.count_events("/guest/hook") == 0
    status, body = await hub.call("GET", "namespaces/_/actions/deep")
    assert status == 404


# ------------------------------------------------------------------------ item 6: web action auth


async def test_public_web_action_treats_a_foreign_authorization_as_anonymous(embedded_hub: HubClient) -> None:
    hub = embedded_hub
    await put_action(hub, "own-auth", ECHO, "python:default", annotations=WEB)
    await put_action(hub, "needs-auth", ECHO, "python:default",
                     annotations=[*WEB, {"key": "require-whisk-auth", "value": True}])
    for header in ("Bearer eyJhbGciOiJIUzI1NiJ9.e30.x", "Basic !!not-base64", "Token abc"):
        async with hub.session.get(f"{hub.apihost}/api/v1/web/guest/default/own-auth.json",
                                   headers={"Authorization": header}) as response:
            assert response.status == 200, await response.text()
            args = await response.json()
        assert args["__ow_headers"]["authorization"] == header
        assert "__ow_user" not in args
        async with hub.session.get(f"{hub.apihost}/api/v1/web/guest/default/needs-auth.json",
                                   headers={"Authorization": header}) as response:
            assert response.status == 401
            assert (await response.json())["error"] == "The supplied authentication is invalid"
    async with hub.session.get(f"{hub.apihost}/api/v1/web/guest/default/needs-auth.json",
                               headers=hub.headers()) as response:
        assert response.status == 200
        assert (await response.json())["__ow_user"] == "guest"
    # route management lives under /api/v1/web/ too, but always requires valid credentials
    async with hub.session.get(f"{hub.apihost}/api/v1/web/whisk.system/apimgmt/getApi",
                               headers={"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"}) as response:
        assert response.status == 401
        assert (await response.json())["error"] == "The supplied authentication is invalid"


# ------------------------------------------------------------------------ item 7: the rest


async def test_huge_numbers_in_query_parameters_are_400(embedded_hub: HubClient) -> None:
    hub = embedded_hub
    huge = str(10**23)
    status, body = await hub.call("GET", "namespaces/_/actions", skip=huge)
    assert (status, body["error"]) == (
        400, f"The value '{huge}' is not in the range of 0 to 2147483647 for actions (parameter 'skip').")
    status, body = await hub.call("GET", "namespaces/_/activations", skip=huge)
    assert (status, body["error"]) == (
        400, f"The value '{huge}' is not in the range of 0 to 2147483647 for activations (parameter 'skip').")
    for key in ("since", "upto"):
        status, body = await hub.call("GET", "namespaces/_/activations", **{key: huge})
        assert (status, body["error"]) == (400, f"Parameter is not a valid value for epoch seconds: {huge} "
                                                f"('{key}' is epoch milliseconds from 0 to 9007199254740991)")


async def test_malformed_fields_are_400_and_store_nothing(embedded_hub: HubClient) -> None:
    hub = embedded_hub
    status, body = await hub.call("PUT", "namespaces/_/actions/a", {
        "exec": {"kind": "python:default", "code": ECHO}, "delAnnotations": 5})
    assert (status, body["error"]) == (400, "delAnnotations malformed: expected an array of annotation keys "
                                            "(strings), got 5")
    status, body = await hub.call("PUT", "namespaces/_/actions/a", {
        "exec": {"kind": "python:default", "code": ECHO, "main": 5}})
    assert (status, body["error"]) == (400, "exec malformed: 'main' must be a string naming the entry point, got 5")
    status, body = await hub.call("PUT", "namespaces/_/actions/a", {  # found by the schemathesis run
        "exec": {"kind": "blackbox", "image": "acme/tool:1", "code": {"zip": 1}}})
    assert (status, body["error"]) == (400, "exec malformed: a blackbox action's 'code' must be a base64 zip as a "
                                            "string, got {\"zip\": 1}")
    status, body = await hub.call("GET", "namespaces/_/actions/a")
    assert status == 404
    status, body = await hub.call("PUT", "namespaces/_/triggers/t", {"delAnnotations": [1, 2]})
    assert (status, body["error"]) == (400, "delAnnotations malformed: expected an array of annotation keys "
                                            "(strings), got [1, 2]")


async def test_unsendable_web_action_results_are_400_not_a_dropped_connection(embedded_hub: HubClient) -> None:
    hub = embedded_hub
    results = {
        "crlf": {"headers": {"X-Evil": "a\r\nSet-Cookie: session=stolen"}, "body": "hi"},
        "lf-name": {"headers": {"X-Bad\nName": "v"}, "body": "hi"},
        "status-huge": {"statusCode": 99999, "body": "hi"},
        "status-low": {"statusCode": 42, "body": "hi"},
    }
    for name, result in results.items():
        await put_action(hub, name, f"def main(args):\n    return {result!r}\n", "python:default", annotations=WEB)
        async with hub.session.get(f"{hub.apihost}/api/v1/web/guest/default/{name}") as response:
            assert response.status == 400, name
            assert "Set-Cookie" not in response.headers
            assert (await response.json())["error"] == NOT_HTTP


async def test_blackbox_under_the_process_runtime_is_a_developer_error_naming_the_fix(embedded_hub: HubClient) -> None:
    hub = embedded_hub
    status, body = await hub.call("PUT", "namespaces/_/actions/bb", {"exec": {"kind": "blackbox", "image": "acme/tool:1"}})
    assert status == 200, body
    status, body = await hub.call("POST", "namespaces/_/actions/bb", {}, blocking=True)
    assert status == 502, body
    assert body["response"] == {
        "status": "action developer error", "success": False, "size": 194,
        "result": {"error": "the process runtime cannot run blackbox actions (image 'acme/tool:1'): start the hub "
                            "with a Docker engine (TRIGGERHUB_RUNTIME=docker) or rewrite the action in a python "
                            "or nodejs kind"}}
