"""Feeds through the OpenWhisk feed lifecycle as clients use it, ending in action activations."""

from __future__ import annotations

import hashlib
import hmac
import json

from tests.plugins.hub import put_action
from tests.plugins.waiting import wait_records

ECHO = "def main(args):\n    return args\n"
SECRET = "s3cret-for-tests"


async def feed_call(hub, feed, body):
    namespace, package, action = feed.strip("/").split("/")
    return await hub.call("POST", f"namespaces/{namespace}/actions/{package}/{action}", body, blocking=True)


async def test_github_webhook_fires_rule_and_rejects_tampering(hub):
    await put_action(hub, "echo", ECHO, "python:default")
    await hub.call("PUT", "namespaces/_/triggers/push", {"annotations": [{"key": "feed", "value": "/whisk.system/webhook/webhook"}]})
    status, created = await feed_call(hub, "/whisk.system/webhook/webhook", {
        "lifecycleEvent": "CREATE", "triggerName": "/_/push", "authKey": hub.auth, "verify": "github", "secret": SECRET})
    assert status == 200, created
    assert created["response"]["result"] == {"triggerName": "/guest/push", "status": "active", "url": "/hooks/guest/push"}
    assert created["annotations"][1] == {"key": "kind", "value": "builtin"}
    assert "authKey" not in json.dumps(created) and hub.auth not in json.dumps(created)
    status, _ = await hub.call("PUT", "namespaces/_/rules/on-push", {"trigger": "push", "action": "echo"})
    assert status == 200

    body = json.dumps({"ref": "refs/heads/main"}).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {"X-Hub-Signature-256": signature, "X-GitHub-Delivery": "d-1", "Content-Type": "application/json"}
    async with hub.session.post(f"{hub.apihost}/hooks/guest/push", data=body, headers=headers) as response:
        assert response.status == 202, await response.text()
    async with hub.session.post(f"{hub.apihost}/hooks/guest/push", data=body, headers=headers) as response:
        assert response.status == 409  # the same delivery id again
    tampered = body.replace(b"main", b"evil")
    async with hub.session.post(f"{hub.apihost}/hooks/guest/push", data=tampered,
                                headers={**headers, "X-GitHub-Delivery": "d-2"}) as response:
        assert response.status == 401

    listing = await wait_records(hub, "echo", 1, 20, interval_s=0.05)
    assert len(listing) == 1
    assert listing[0]["response"]["result"]["ref"] == "refs/heads/main"
    assert await hub.hub.engine.store.count_events("/guest/push") == 1

    status, read = await feed_call(hub, "/whisk.system/webhook/webhook",
                                   {"lifecycleEvent": "READ", "triggerName": "/_/push", "authKey": hub.auth})
    result = read["response"]["result"]
    assert result["status"]["active"] is True
    assert result["config"]["secret"] != SECRET
    # Distributed: the controller took the three deliveries and READ is answered by a feeds
    # process; the counters are summed in the store, so both modes show the same.
    assert result["metrics"] == {"received": 3, "fired": 1, "rejected": 2}


async def test_alarm_feed_create_rejects_bad_cron(hub):
    status, record = await feed_call(hub, "/whisk.system/alarms/alarm", {
        "lifecycleEvent": "CREATE", "triggerName": "/_/nightly", "authKey": hub.auth, "cron": "61 * * * *"})
    assert status == 502
    assert record["response"]["status"] == "application error"
    assert record["response"]["result"] == {"error": "cron pattern '61 * * * *' is not valid"}


async def test_feed_actions_are_listed_as_feeds(hub):
    status, package = await hub.call("GET", "namespaces/whisk.system/packages/alarms")
    assert status == 200
    assert sorted(f["name"] for f in package["feeds"]) == ["alarm", "interval", "once"]
    assert package["actions"] == []
